#!/usr/bin/env python3
"""Poll HAProxy's ``show stat`` every 50 ms and record how many servers of a backend are UP.

The deploy tests use it to prove capacity never dropped: the clone stands in for the original,
so the number of UP servers must never fall below the number of app hosts. A server counts as
UP when its status starts with ``UP`` (``UP``, ``UP 1/3`` while going down): HAProxy sends it
new traffic. ``DRAIN``, ``MAINT``, ``DOWN`` and ``NOLB`` do not count.

It talks to an admin socket over TCP (``host:port``) or a unix path, stops by itself after
``--duration`` seconds, on SIGTERM/SIGINT, or when ``--stop-file`` appears, and writes JSON.
"""
import argparse
import csv
import io
import json
import os
import signal
import socket
import sys
import time


def query(address, command, timeout=1.0):
    if ":" in address and not address.startswith("/"):
        host, port = address.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address)
    with sock:
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode()


def backend_servers(stat_csv, backend):
    """Map server name -> status for one backend from ``show stat`` CSV."""
    text = stat_csv.lstrip("# ")
    servers = {}
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND"):
            servers[row["svname"]] = row.get("status", "")
    return servers


def up_count(servers):
    return sum(1 for status in servers.values() if status.startswith("UP"))


def poll(address, backend, duration, interval, stop_file=None):
    stop = {"now": False}
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.update(now=True))
    samples, errors = [], 0
    t0 = time.monotonic()
    while not stop["now"] and time.monotonic() - t0 < duration:
        if stop_file and os.path.exists(stop_file):
            break
        started = time.monotonic()
        try:
            servers = backend_servers(query(address, "show stat"), backend)
            samples.append([round(started - t0, 3), up_count(servers), servers])
        except OSError:
            errors += 1
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
    counts = [s[1] for s in samples]
    return {
        "backend": backend,
        "samples": samples,
        "errors": errors,
        "min_up": min(counts) if counts else None,
        "max_up": max(counts) if counts else None,
        "servers_seen": sorted({name for s in samples for name in s[2]}),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin", required=True, help="admin socket: host:port or unix path")
    parser.add_argument("--backend", required=True)
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--stop-file")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 3600:
        parser.error("--duration must be in (0, 3600]")
    result = poll(args.admin, args.backend, args.duration, args.interval, args.stop_file)
    with open(args.out, "w") as handle:
        json.dump(result, handle)
    print("samples: %d, min UP: %s, max UP: %s, servers: %s" % (
        len(result["samples"]), result["min_up"], result["max_up"], result["servers_seen"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
