#!/usr/bin/env python
"""Bounded load probe: proves (or disproves) that a deploy dropped no request.

It sends a steady mix of requests to one URL while a deploy runs:
- keep-alive clients (one persistent connection each, re-opened only after an error);
- fresh-connection clients (a new TCP connection per request, ``Connection: close``);
- ``/slow`` requests that stay in flight across traffic switches;
- one server-sent-events client that reconnects when its stream ends.

Every request's outcome and the version/host that answered is recorded, and so is every SSE
event (``sse.log``: time, version, dependency, host, port and the number of the stream it came
on), so a test can see which releases a stream crossed and in what order.

The result is a JSON file.
An answer may also name the release of the libraries it ran on (``dependency``, as the real apps
of tests/real_apps do; the sample app does not): one whose dependency differs from its version
came from code of one release running on libraries of another, and is counted as ``mixed``.
A request fails when it gets no complete answer or an answer other than 200. An SSE stream that
ends is not a failure (deploys end long-lived connections by design); a reconnect that is refused
or answered with an error is.

The probe always stops by itself: at ``--duration`` seconds, after ``--max-requests`` requests,
or when SIGTERM/SIGINT arrives or the ``--stop-file`` appears.
"""
import argparse
import http.client
import json
import os
import signal
import statistics
import sys
import threading
import time
import urllib.parse

BUCKET_S = 0.1


class Recorder:
    """Thread-safe list of request outcomes."""

    def __init__(self, max_requests):
        self._lock = threading.Lock()
        self.records = []
        self.max_requests = max_requests

    def add(self, record):
        with self._lock:
            self.records.append(record)
            return len(self.records) < self.max_requests


class Probe:
    def __init__(self, url, duration, rate, max_requests, keepalive_clients, fresh_clients,
                 slow_clients, slow_ms, sse, timeout, stop_file=None, host_header=None):
        parsed = urllib.parse.urlsplit(url)
        # Sent as Host on every request: which app's backend HAProxy routes to.
        self.headers = {"Host": host_header} if host_header else {}
        self.host = parsed.hostname
        self.port = parsed.port or 80
        self.base_path = parsed.path.rstrip("/")
        self.duration = duration
        self.timeout = timeout
        self.stop_file = stop_file
        self.stop = threading.Event()
        self.recorder = Recorder(max_requests)
        self.t0 = None
        clients = keepalive_clients + fresh_clients
        # The steady clients share the rate; each keeps its own pace.
        self.interval = clients / float(rate) if rate > 0 else 0.0
        self.plan = ([("keepalive", i) for i in range(keepalive_clients)]
                     + [("fresh", i) for i in range(fresh_clients)]
                     + [("slow", i) for i in range(slow_clients)])
        self.slow_ms = slow_ms
        self.sse = sse
        self.sse_stats = {"connects": 0, "events": 0, "streams_ended": 0, "errors": 0,
                          "versions": {}, "mixed": 0, "log": []}

    # -- helpers ---------------------------------------------------------------------------
    def _now(self):
        return time.monotonic() - self.t0

    def _should_stop(self):
        if self.stop.is_set():
            return True
        if self._now() >= self.duration or (self.stop_file and os.path.exists(self.stop_file)):
            self.stop.set()
        return self.stop.is_set()

    def _record(self, kind, start, status, body, error):
        version = host = port = dependency = None
        # A 5xx of the app says who failed too (the sample app's flaky release does).
        if status is not None and body:
            try:
                doc = json.loads(body)
                version, host, port = doc.get("version"), doc.get("host"), doc.get("port")
                dependency = doc.get("dependency")
            except (ValueError, AttributeError):
                pass
        ok = status == 200 and error is None
        more = self.recorder.add({
            "kind": kind, "start": round(start, 4), "end": round(self._now(), 4),
            "status": status, "ok": ok, "version": version, "dependency": dependency,
            "host": host, "port": port, "error": error,
        })
        if not more:
            self.stop.set()

    def _request(self, conn, path, close):
        headers = dict(self.headers, Connection="close") if close else self.headers
        conn.request("GET", self.base_path + path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, body, resp.will_close

    # -- workers ---------------------------------------------------------------------------
    def _steady(self, kind, index):
        conn = None
        # Slow requests start one after another; a fast error answer must not turn them into a
        # tight loop, so they are paced like the rest, at one per slow_ms.
        interval = max(self.interval, self.slow_ms / 1000.0) if kind == "slow" else self.interval
        next_at = interval * index / max(1, len(self.plan))
        path = "/slow?ms=%d" % self.slow_ms if kind == "slow" else "/"
        while not self._should_stop():
            delay = next_at - self._now()
            if delay > 0:
                time.sleep(delay)
            next_at = max(next_at + interval, self._now())
            start = self._now()
            fresh = kind != "keepalive"
            try:
                if conn is None or fresh:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                status, body, will_close = self._request(conn, path, close=fresh)
                self._record(kind, start, status, body, None)
                if will_close or fresh:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                self._record(kind, start, None, None, "%s: %s" % (type(exc).__name__, exc))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _sse(self):
        stats = self.sse_stats
        while not self._should_stop():
            start = self._now()
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                conn.request("GET", self.base_path + "/events?interval_ms=200", headers=self.headers)
                resp = conn.getresponse()
                if resp.status != 200:
                    resp.read()
                    raise http.client.HTTPException("status %d" % resp.status)
                stats["connects"] += 1
                self._read_events(resp, stats["connects"])
                stats["streams_ended"] += 1
            except (OSError, http.client.HTTPException) as exc:
                stats["errors"] += 1
                self._record("sse", start, None, None, "%s: %s" % (type(exc).__name__, exc))
                time.sleep(0.2)
            finally:
                conn.close()

    def _read_events(self, resp, stream):
        while not self._should_stop():
            # The response's own readline: it ends with the body, also a chunked one whose
            # connection stays open (a browser's EventSource reconnects then, after ``retry``).
            line = resp.readline()
            if not line:
                return
            if line.startswith(b"data:"):
                self.sse_stats["events"] += 1
                try:
                    doc = json.loads(line[5:])
                    version, dependency = doc.get("version"), doc.get("dependency")
                    host, port = doc.get("host"), doc.get("port")
                except (ValueError, AttributeError):
                    version = dependency = host = port = None
                versions = self.sse_stats["versions"]
                versions[version] = versions.get(version, 0) + 1
                if is_mixed(version, dependency):
                    self.sse_stats["mixed"] += 1
                self.sse_stats["log"].append([round(self._now(), 4), version, dependency,
                                              host, port, stream])

    # -- run -------------------------------------------------------------------------------
    def run(self):
        self.t0 = time.monotonic()
        self.t0_epoch = time.time()
        threads = [threading.Thread(target=self._steady, args=item, daemon=True) for item in self.plan]
        if self.sse:
            threads.append(threading.Thread(target=self._sse, daemon=True))
        for thread in threads:
            thread.start()
        while not self._should_stop():
            time.sleep(0.05)
        # In-flight requests get their own timeout to finish; they are part of the result.
        for thread in threads:
            thread.join(self.timeout + 1)
        result = summarize(self.recorder.records, self.sse_stats, self._now())
        result["t0_epoch"] = self.t0_epoch
        return result


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))
    return ordered[index]


def is_mixed(version, dependency):
    """An answer whose libraries (``dependency``) are of another release than its code."""
    return dependency is not None and dependency != version


def summarize(records, sse_stats, elapsed):
    failed = [r for r in records if not r["ok"]]
    mixed = [r for r in records if r["ok"] and is_mixed(r["version"], r.get("dependency"))]
    latencies = [r["end"] - r["start"] for r in records if r["ok"] and r["kind"] != "slow"]
    by_version, by_host, by_instance, timeline = {}, {}, {}, {}
    for rec in records:
        if rec["ok"]:
            by_version[rec["version"]] = by_version.get(rec["version"], 0) + 1
            by_host[rec["host"]] = by_host.get(rec["host"], 0) + 1
            instance = "%s:%s" % (rec["host"], rec["port"])
            by_instance[instance] = by_instance.get(instance, 0) + 1
        bucket = timeline.setdefault(int(rec["end"] / BUCKET_S), [0, 0])
        bucket[0 if rec["ok"] else 1] += 1
    return {
        "elapsed": round(elapsed, 3),
        "requests": len(records),
        "failed": len(failed),
        "failures": failed[:50],
        "mixed": len(mixed),
        "mixed_answers": mixed[:50],
        "by_version": by_version,
        "by_host": by_host,
        "by_instance": by_instance,
        "latency_ms": {
            "p50": _ms(percentile(latencies, 0.5)),
            "p99": _ms(percentile(latencies, 0.99)),
            "max": _ms(max(latencies) if latencies else None),
            "mean": _ms(statistics.mean(latencies) if latencies else None),
        },
        "sse": sse_stats,
        "bucket_s": BUCKET_S,
        "timeline": [[round(k * BUCKET_S, 1), v[0], v[1]] for k, v in sorted(timeline.items())],
        "records": records,
    }


def _ms(seconds):
    return None if seconds is None else round(seconds * 1000.0, 2)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--url", required=True, help="base URL, e.g. http://10.213.0.10:80")
    parser.add_argument("--duration", type=float, default=60.0, help="hard stop after N seconds")
    parser.add_argument("--max-requests", type=int, default=200000, help="hard stop after N requests")
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s over steady clients")
    parser.add_argument("--keepalive-clients", type=int, default=4)
    parser.add_argument("--fresh-clients", type=int, default=2)
    parser.add_argument("--slow-clients", type=int, default=2)
    parser.add_argument("--slow-ms", type=int, default=1500)
    parser.add_argument("--no-sse", dest="sse", action="store_false")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, s")
    parser.add_argument("--stop-file", help="stop as soon as this file exists")
    parser.add_argument("--host-header", help="Host header of every request (the app's backend)")
    parser.add_argument("--out", help="write the JSON result here (default: stdout summary only)")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.duration > 3600:
        parser.error("--duration must be in (0, 3600]")
    if args.max_requests <= 0:
        parser.error("--max-requests must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    probe = Probe(args.url, args.duration, args.rate, args.max_requests, args.keepalive_clients,
                  args.fresh_clients, args.slow_clients, args.slow_ms, args.sse, args.timeout,
                  args.stop_file, args.host_header)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: probe.stop.set())
    result = probe.run()
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle)
    print("requests: %d, failed: %d, versions: %s, p50 %s ms, p99 %s ms, sse events %d" % (
        result["requests"], result["failed"], result["by_version"], result["latency_ms"]["p50"],
        result["latency_ms"]["p99"], result["sse"]["events"]))
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
