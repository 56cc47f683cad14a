"""Latency of the sample app alone on one keep-alive connection (loopback, no HAProxy).

Starts tests/sample_app/app.py on a free loopback port, sends N sequential GET / on one
HTTP/1.1 connection and prints the median and 90th percentile. It is what showed the ~40 ms
per answer that Nagle and delayed ACKs cost (issue 8); the figures belong in notes, not tests.

  .venv/bin/python benchmarks/app_latency.py [--requests 200]
"""
import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import time

APP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   "tests", "sample_app", "app.py")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def connect(port, deadline):
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            conn.getresponse().read()
            return conn
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args(argv)
    port = free_port()
    env = dict(os.environ, PORT=str(port), STARTUP_DELAY="0", BIND="127.0.0.1")
    app = subprocess.Popen([sys.executable, APP], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        conn = connect(port, time.monotonic() + 10)
        latencies = []
        for _request in range(args.requests):
            start = time.perf_counter()
            conn.request("GET", "/")
            conn.getresponse().read()
            latencies.append((time.perf_counter() - start) * 1000)
        latencies.sort()
        print("requests %d, median %.2f ms, p90 %.2f ms, max %.2f ms" % (
            len(latencies), statistics.median(latencies),
            latencies[int(len(latencies) * 0.9) - 1], latencies[-1]))
    finally:
        app.terminate()
        app.wait(10)


if __name__ == "__main__":
    main()
