#!/usr/bin/env python
"""Poll HAProxy's ``show stat`` every 50 ms and record how many servers of a backend are UP.

The deploy tests use it to prove capacity never dropped: the clone stands in for the original,
so the number of UP servers must never fall below the number of app hosts. A server counts as
UP when its status starts with ``UP`` (``UP``, ``UP 1/3`` while going down): HAProxy sends it
new traffic. ``DRAIN``, ``MAINT``, ``DOWN`` and ``NOLB`` do not count.

It talks to an admin socket over TCP (``host:port``) or a unix path, stops by itself after
``--duration`` seconds, on SIGTERM/SIGINT, or when ``--stop-file`` appears, and writes JSON.
"""
import argparse
import json
import os
import signal
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, ".tmp", "collections"))

# The same client and parser the modules use, so the poller sees what they see.
from ansible_collections.hitless.deploy.plugins.module_utils._haproxy_runtime import (  # noqa: E402
    HAProxyRuntimeError, RuntimeClient)


def backend_servers(client, backend):
    """Map server name -> status for one backend."""
    return {row["svname"]: row.get("status") or ""
            for row in client.show_stat(backend)
            if row.get("svname") not in ("FRONTEND", "BACKEND")}


def up_count(servers):
    return sum(1 for status in servers.values() if status.startswith("UP"))


def poll(address, backend, duration, interval, stop_file=None):
    stop = {"now": False}
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.update(now=True))
    # A slow answer is still a sample: on a loaded 2-core machine a show stat has been seen to
    # take over a second. Only what fails or takes longer than this is an error.
    client = RuntimeClient(address, timeout=5.0)
    samples, errors, error_texts = [], 0, []
    t0 = time.monotonic()
    t0_epoch = time.time()
    while not stop["now"] and time.monotonic() - t0 < duration:
        if stop_file and os.path.exists(stop_file):
            break
        started = time.monotonic()
        try:
            servers = backend_servers(client, backend)
            samples.append([round(started - t0, 3), up_count(servers), servers])
        except (OSError, HAProxyRuntimeError) as error:
            errors += 1
            if len(error_texts) < 5:
                error_texts.append("%.3f s: %s" % (started - t0, error or type(error).__name__))
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
    counts = [s[1] for s in samples]
    return {
        "backend": backend,
        "t0_epoch": t0_epoch,
        "samples": samples,
        "errors": errors,
        "error_texts": error_texts,
        "min_up": min(counts) if counts else None,
        "max_up": max(counts) if counts else None,
        "servers_seen": sorted({name for s in samples for name in s[2]}),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
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
