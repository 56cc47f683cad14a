#!/usr/bin/env python
"""Sample app for hitless.deploy tests and the demo: behaves like a real web app.

Python stdlib only, Python >= 3.9. The interface is documented in docs/development.md:
env ``PORT`` (required), ``STARTUP_DELAY`` (seconds before binding, default 2), ``APP_VERSION``
(overrides ``release.json``), ``BIND`` (default 0.0.0.0); ``release.json`` beside this file holds
``{"version": ..., "mode": "ok" | "broken" | "crash" | "flaky" | "slow"}``: ``broken`` fails
``/health``, ``crash`` exits at start; ``flaky`` answers a share of ``/`` with 500 and ``slow``
delays ``/`` (``error_share`` and ``latency_ms`` in ``release.json``) while ``/health`` passes,
as releases that only real traffic can judge do.

Endpoints: ``/`` (JSON identity), ``/health``, ``/slow?ms=N``, ``/events`` (server-sent events).
SIGTERM: the listening socket closes at once, in-flight requests finish (bounded), idle
keep-alive connections close, SSE streams end, exit 0.
"""
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ("ok", "broken", "crash", "flaky", "slow")
FLAKY_SHARE = 0.2
SLOW_LATENCY_MS = 1000
SLOW_MAX_MS = 60000
DRAIN_TIMEOUT = 30.0
# A connection that has not sent its first request yet may be about to: give it this long
# during shutdown before treating it as idle (the same idea as Go's http.Server.Shutdown).
NEW_CONN_GRACE = 1.0
# Bounds threads left behind by clients that keep a connection open and never speak.
SOCKET_TIMEOUT = 120.0


def log(event, **fields):
    parts = ["app:", event] + ["%s=%s" % (k, fields[k]) for k in sorted(fields)]
    print(" ".join(parts), flush=True)


def die(message, code):
    sys.stderr.write("app: error: %s\n" % message)
    sys.stderr.flush()
    sys.exit(code)


def load_config(environ):
    port_raw = environ.get("PORT", "")
    if not port_raw:
        die("PORT is required (1-65535)", 2)
    try:
        port = int(port_raw)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        die("PORT must be an integer in 1-65535, got %r" % port_raw, 2)

    delay_raw = environ.get("STARTUP_DELAY", "2")
    try:
        delay = float(delay_raw)
    except ValueError:
        delay = -1.0
    if not 0 <= delay <= 3600:
        die("STARTUP_DELAY must be a number of seconds in 0-3600, got %r" % delay_raw, 2)

    release = {}
    path = os.path.join(HERE, "release.json")
    if os.path.exists(path):
        try:
            with open(path) as f:
                release = json.load(f)
        except (OSError, ValueError) as e:
            die("cannot read %s: %s" % (path, e), 2)
        if not isinstance(release, dict):
            die("%s must hold a JSON object" % path, 2)
    mode = release.get("mode", "ok")
    if mode not in MODES:
        die("%s: mode must be one of %s, got %r" % (path, ", ".join(MODES), mode), 2)
    version = environ.get("APP_VERSION") or str(release.get("version", "dev"))
    share = release.get("error_share", FLAKY_SHARE)
    latency = release.get("latency_ms", SLOW_LATENCY_MS)
    if not (isinstance(share, (int, float)) and 0 < share <= 1):
        die("%s: error_share must be a number in (0, 1], got %r" % (path, share), 2)
    if not (isinstance(latency, int) and 0 <= latency <= SLOW_MAX_MS):
        die("%s: latency_ms must be an integer in 0-%d, got %r" % (path, SLOW_MAX_MS, latency), 2)
    return {
        # flaky: every Nth answer of / fails, so the share holds however few requests came.
        "fail_every": max(1, int(round(1 / share))) if mode == "flaky" else 0,
        "latency_ms": latency if mode == "slow" else 0,
        "port": port,
        "delay": delay,
        "bind": environ.get("BIND", "0.0.0.0"),
        "version": version,
        "mode": mode,
    }


class Tracker(object):
    """Knows every open connection and whether it is inside a request, for a graceful stop."""

    def __init__(self):
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.conns = {}  # handler -> [state, since]; state: new | idle | active | closed

    def add(self, handler):
        with self.lock:
            self.conns[handler] = ["new", time.monotonic()]

    def remove(self, handler):
        with self.lock:
            self.conns.pop(handler, None)

    def activate(self, handler):
        """Mark a request as started; False if shutdown already closed this connection."""
        with self.lock:
            entry = self.conns.get(handler)
            if entry is None or entry[0] == "closed":
                return False
            entry[0] = "active"
            return True

    def deactivate(self, handler):
        with self.lock:
            entry = self.conns.get(handler)
            if entry is not None and entry[0] == "active":
                entry[0] = "idle"
                entry[1] = time.monotonic()

    def active_count(self):
        with self.lock:
            return sum(1 for e in self.conns.values() if e[0] == "active")

    def pending_count(self):
        """Requests in flight plus fresh connections still within their grace period."""
        with self.lock:
            return sum(1 for e in self.conns.values() if e[0] in ("active", "new"))

    def close_idle(self, force=False):
        now = time.monotonic()
        with self.lock:
            for handler, entry in self.conns.items():
                state = entry[0]
                if state == "closed":
                    continue
                stale = state == "new" and now - entry[1] >= NEW_CONN_GRACE
                if force or state == "idle" or stale:
                    entry[0] = "closed"
                    try:
                        # Wakes the handler thread blocked in readline(); it then ends.
                        handler.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True  # in-flight work is tracked by Tracker, not by joining threads
    block_on_close = False
    request_queue_size = 128  # the default 5 drops connections under the tests' load loops

    def __init__(self, addr, config):
        self.config = config
        self.tracker = Tracker()
        self.root_count = 0
        self.count_lock = threading.Lock()
        ThreadingHTTPServer.__init__(self, addr, Handler)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, socket.timeout)):
            return  # client went away; not worth a traceback in the journal
        ThreadingHTTPServer.handle_error(self, request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT
    # The headers and the body leave in two writes; with Nagle the body waited for the ACK of
    # the headers, which the client delays: every keep-alive answer took ~40 ms (seen: median
    # 44 ms on loopback, 0.1-0.2 ms with this).
    disable_nagle_algorithm = True

    def version_string(self):
        return "hitless-sample-app"

    def setup(self):
        BaseHTTPRequestHandler.setup(self)
        self.server.tracker.add(self)

    def finish(self):
        try:
            BaseHTTPRequestHandler.finish(self)
        finally:
            self.server.tracker.remove(self)

    def log_message(self, format, *args):
        pass  # lifecycle lines only: an access log per request would flood the journal under load

    def handle_one_request(self):
        # Same steps as BaseHTTPRequestHandler.handle_one_request, with the request marked
        # active from its first line until its response is flushed.
        tracker = self.server.tracker
        try:
            line = self.rfile.readline(65537)
        except OSError:
            self.close_connection = True
            return
        if not line or not tracker.activate(self):
            self.close_connection = True
            return
        try:
            self.raw_requestline = line
            if len(line) > 65536:
                self.requestline = ""
                self.request_version = ""
                self.command = ""
                self.send_error(414)
                return
            if not self.parse_request():
                return
            method = getattr(self, "do_" + self.command, None)
            if method is None:
                self.send_error(501, "Unsupported method (%r)" % self.command)
                return
            method()
            self.wfile.flush()
        except (ConnectionError, socket.timeout):
            self.close_connection = True
        finally:
            tracker.deactivate(self)

    def reply(self, status, body, ctype="text/plain; charset=utf-8"):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if self.server.tracker.stopping.is_set():
            # Tells the client (or HAProxy) not to reuse this connection.
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def identity(self):
        cfg = self.server.config
        return {
            "version": cfg["version"],
            "host": socket.gethostname(),
            "port": cfg["port"],
            "pid": os.getpid(),
            "mode": cfg["mode"],
        }

    def do_GET(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        route = {
            "/": self.get_root,
            "/health": self.get_health,
            "/slow": self.get_slow,
            "/events": self.get_events,
        }.get(url.path)
        if route is None:
            self.reply(404, "not found\n")
            return
        route(query)

    do_HEAD = do_GET

    def get_root(self, query):
        cfg = self.server.config
        if cfg["latency_ms"]:
            time.sleep(cfg["latency_ms"] / 1000.0)
        status = 200
        if cfg["fail_every"]:
            with self.server.count_lock:
                self.server.root_count += 1
                status = 500 if self.server.root_count % cfg["fail_every"] == 0 else 200
        # The identity even in a 500: who failed is what a canary verdict is about.
        self.reply(status, json.dumps(self.identity()) + "\n", "application/json")

    def get_health(self, query):
        if self.server.config["mode"] == "broken":
            self.reply(503, "broken\n")
        elif self.server.tracker.stopping.is_set():
            self.reply(503, "stopping\n")
        else:
            self.reply(200, "ok\n")

    def int_param(self, query, name, default, low, high):
        """The integer query parameter clamped to high; None (after a 400) when invalid."""
        values = query.get(name)
        if not values:
            return default
        try:
            value = int(values[-1])
        except ValueError:
            value = -1
        if value < low:
            self.reply(400, "%s must be an integer >= %d\n" % (name, low))
            return None
        return min(value, high)

    def get_slow(self, query):
        ms = self.int_param(query, "ms", 1000, 0, SLOW_MAX_MS)
        if ms is None:
            return
        started = time.monotonic()
        # Deliberately not interrupted by SIGTERM: this is the in-flight request to finish.
        time.sleep(ms / 1000.0)
        body = dict(self.identity(), slept_ms=int((time.monotonic() - started) * 1000))
        self.reply(200, json.dumps(body) + "\n", "application/json")

    def get_events(self, query):
        interval = self.int_param(query, "interval_ms", 1000, 10, 60000)
        if interval is None:
            return
        if self.command == "HEAD":
            self.reply(200, b"", "text/event-stream")
            return
        stopping = self.server.tracker.stopping
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        # No length for an endless body: the connection's end marks the end of the stream.
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"retry: 500\n\n")
        seq = 0
        while not stopping.is_set():
            seq += 1
            data = json.dumps(dict(self.identity(), seq=seq))
            self.wfile.write(("id: %d\ndata: %s\n\n" % (seq, data)).encode("utf-8"))
            self.wfile.flush()
            stopping.wait(interval / 1000.0)


def main():
    config = load_config(os.environ)
    if config["mode"] == "crash":
        die("release %s is in crash mode: exiting at start" % config["version"], 1)

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    log("starting", version=config["version"], mode=config["mode"], port=config["port"],
        pid=os.getpid(), delay=config["delay"])
    if stop.wait(config["delay"]):
        log("stopped", reason="signal before listening")
        return 0

    family = socket.AF_INET6 if ":" in config["bind"] else socket.AF_INET
    Server.address_family = family
    try:
        httpd = Server((config["bind"], config["port"]), config)
    except OSError as e:
        die("cannot listen on %s:%d: %s" % (config["bind"], config["port"], e), 1)
    serving = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    serving.daemon = True
    serving.start()
    log("listening", address="%s:%d" % (config["bind"], config["port"]), version=config["version"])

    while not stop.wait(0.2):
        pass

    tracker = httpd.tracker
    log("stopping", in_flight=tracker.active_count())
    tracker.stopping.set()
    httpd.shutdown()
    httpd.socket.close()
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while True:
        tracker.close_idle()
        left = tracker.pending_count()
        if left == 0 or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if left:
        tracker.close_idle(force=True)
    log("stopped", abandoned=left)
    return 0


if __name__ == "__main__":
    sys.exit(main())
