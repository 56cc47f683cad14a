"""The sample app and its release archives, run as real processes on loopback.

Every test starts its own app.py on a free 127.0.0.1 port and stops only that process.
"""
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SAMPLE = os.path.join(REPO, "tests", "sample_app")
APP = os.path.join(SAMPLE, "app.py")
BUILD = os.path.join(SAMPLE, "build_releases.py")
NAMES = ("v1", "v2", "v3", "broken", "crash", "flaky", "slow", "noworker")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


class App(object):
    """One app.py process started from a release directory."""

    def __init__(self, directory, port, env):
        self.port = port
        self.out = open(os.path.join(directory, "stdout.log"), "w+")
        self.err = open(os.path.join(directory, "stderr.log"), "w+")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(directory, "app.py")],
            cwd=directory, env=env, stdout=self.out, stderr=self.err,
        )

    def wait_listening(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "app exited: %s" % self.stderr()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return time.monotonic() - self.started
            except ConnectionRefusedError:
                time.sleep(0.02)
        raise AssertionError("app did not listen on %d within %ss" % (self.port, timeout))

    def get(self, path, timeout=5.0):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type"), resp.read()
        finally:
            conn.close()

    def stdout(self):
        self.out.seek(0)
        return self.out.read()

    def stderr(self):
        self.err.seek(0)
        return self.err.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.out.close()
        self.err.close()


@pytest.fixture
def start_app(tmp_path):
    """start_app(version=, mode=, wait=True, **env) -> a running App; stopped at teardown."""
    apps = []

    def start(version="v2", mode="ok", wait=True, directory=None, **env):
        if directory is None:
            directory = str(tmp_path / ("release-%d" % len(apps)))
            os.makedirs(directory)
            shutil.copy(APP, directory)
            with open(os.path.join(directory, "release.json"), "w") as f:
                json.dump({"version": version, "mode": mode}, f)
        full_env = {k: v for k, v in os.environ.items() if k not in ("APP_VERSION", "BIND")}
        full_env.update({"PORT": str(free_port()), "BIND": "127.0.0.1", "STARTUP_DELAY": "0"})
        full_env.update(env)
        app = App(directory, int(full_env["PORT"]), full_env)
        apps.append(app)
        if wait:
            app.wait_listening()
        return app

    yield start
    for app in apps:
        app.stop()


def test_root_reports_identity_over_keep_alive(start_app):
    app = start_app(version="v2")
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=5)
    try:
        bodies = []
        for _request in range(2):  # the second request reuses the connection: HTTP/1.1 keep-alive
            conn.request("GET", "/")
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.version == 11
            assert resp.getheader("Content-Type") == "application/json"
            body = resp.read()
            assert int(resp.getheader("Content-Length")) == len(body)
            bodies.append(json.loads(body))
        assert conn.sock is not None
    finally:
        conn.close()
    assert bodies[0] == bodies[1] == {
        "version": "v2", "host": socket.gethostname(), "port": app.port,
        "pid": app.proc.pid, "mode": "ok",
    }
    assert "listening" in app.stdout()


def test_app_version_env_overrides_release_json(start_app):
    app = start_app(version="v2", APP_VERSION="v9")
    assert json.loads(app.get("/")[2])["version"] == "v9"


def test_health_and_unknown_path(start_app):
    app = start_app()
    assert app.get("/health")[0::2] == (200, b"ok\n")
    assert app.get("/nope")[0] == 404


def test_startup_delay_keeps_port_closed_until_it_passes(start_app):
    app = start_app(wait=False, STARTUP_DELAY="1.2")
    time.sleep(0.4)
    assert app.proc.poll() is None
    assert refused(app.port)
    took = app.wait_listening()
    assert 1.1 <= took < 4
    assert app.get("/health")[0] == 200


def test_broken_release_never_passes_health(start_app):
    app = start_app(version="broken", mode="broken")
    for _request in range(3):
        assert app.get("/health")[0] == 503
        time.sleep(0.1)
    status, _ctype, body = app.get("/")
    assert status == 200 and json.loads(body)["mode"] == "broken"


def test_crash_release_exits_1_at_start(start_app):
    app = start_app(version="crash", mode="crash", wait=False, STARTUP_DELAY="5")
    assert app.proc.wait(3) == 1
    assert time.monotonic() - app.started < 3
    assert "crash" in app.stderr()
    assert refused(app.port)


@pytest.mark.parametrize("port", [None, "", "abc", "0", "70000"])
def test_bad_port_exits_2(tmp_path, port):
    env = {k: v for k, v in os.environ.items() if k != "PORT"}
    if port is not None:
        env["PORT"] = port
    res = subprocess.run([sys.executable, APP], env=env, capture_output=True, text=True, timeout=10,
                         check=False)
    assert res.returncode == 2
    assert "PORT" in res.stderr


def test_flaky_release_fails_its_share_of_root_and_passes_health(start_app):
    app = start_app(version="flaky", mode="flaky")
    statuses = []
    for _request in range(20):
        status, _ctype, body = app.get("/")
        statuses.append(status)
        # A failed answer still names who gave it.
        assert json.loads(body)["version"] == "flaky"
    assert statuses.count(500) == 4 and set(statuses) == {200, 500}
    assert all(app.get("/health")[0] == 200 for _request in range(10))


def test_slow_release_delays_root_only(start_app):
    app = start_app(version="slow", mode="slow")
    t0 = time.monotonic()
    assert app.get("/")[0] == 200
    assert time.monotonic() - t0 >= 1.0
    t0 = time.monotonic()
    assert app.get("/health")[0] == 200
    assert time.monotonic() - t0 < 0.25


def test_bad_flaky_share_exits_2(tmp_path):
    directory = tmp_path / "release"
    directory.mkdir()
    shutil.copy(APP, str(directory))
    (directory / "release.json").write_text(json.dumps({"mode": "flaky", "error_share": 2}))
    env = dict(os.environ, PORT=str(free_port()), STARTUP_DELAY="0")
    res = subprocess.run([sys.executable, str(directory / "app.py")], env=env, capture_output=True,
                         text=True, timeout=10, check=False)
    assert res.returncode == 2 and "error_share" in res.stderr


def test_slow_answers_after_the_delay(start_app):
    app = start_app()
    t0 = time.monotonic()
    status, _ctype, body = app.get("/slow?ms=400")
    took = time.monotonic() - t0
    assert status == 200 and 0.4 <= took < 2.5
    assert json.loads(body)["slept_ms"] >= 400
    for bad in ("x", "-1", "1.5"):
        assert app.get("/slow?ms=" + bad)[0] == 400


def test_events_stream(start_app):
    app = start_app(version="v3")
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=5)
    try:
        conn.request("GET", "/events?interval_ms=100")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "text/event-stream"
        assert resp.fp.readline() == b"retry: 500\n"
        events = []
        deadline = time.monotonic() + 5
        while len(events) < 3 and time.monotonic() < deadline:
            line = resp.fp.readline()
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
    finally:
        conn.close()
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert all(e["version"] == "v3" and e["pid"] == app.proc.pid for e in events)


def test_sigterm_finishes_in_flight_request_then_exits_0(start_app):
    app = start_app()
    idle = http.client.HTTPConnection("127.0.0.1", app.port, timeout=5)
    idle.request("GET", "/health")
    idle.getresponse().read()  # leaves an idle keep-alive connection open
    result = {}

    def slow():
        try:
            result["answer"] = app.get("/slow?ms=1500")
        except Exception as e:  # reported by the assertion below
            result["error"] = e

    worker = threading.Thread(target=slow)
    worker.start()
    time.sleep(0.3)  # the request is in flight
    app.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert refused(app.port), "new connections must be refused once SIGTERM arrived"
    assert app.proc.poll() is None, "app exited with a request in flight"
    worker.join(10)
    assert result.get("answer", result)[0] == 200
    assert app.proc.wait(5) == 0
    assert idle.sock.recv(1) == b"", "idle keep-alive connection must be closed"
    idle.close()
    out = app.stdout()
    assert [w for w in ("starting", "listening", "stopping", "stopped") if "app: " + w in out] == [
        "starting", "listening", "stopping", "stopped"]


def test_sigterm_ends_event_streams(start_app):
    app = start_app()
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=5)
    try:
        conn.request("GET", "/events?interval_ms=200")
        resp = conn.getresponse()
        assert resp.fp.readline() == b"retry: 500\n"
        app.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        resp.read()  # returns at the end of the stream, raises on the 5 s timeout
        assert time.monotonic() - t0 < 2
    finally:
        conn.close()
    assert app.proc.wait(5) == 0


def build(directory):
    res = subprocess.run([sys.executable, BUILD, str(directory)], capture_output=True, text=True,
                         timeout=30, check=True)
    return res.stdout.split()


def digests(directory):
    out = {}
    for name in NAMES:
        with open(os.path.join(str(directory), name + ".tar.gz"), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_build_releases_is_reproducible(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    paths = build(first)
    assert paths == [str(first / (n + ".tar.gz")) for n in NAMES]
    with open(APP, "rb") as f:
        app_source = f.read()
    for name in NAMES:
        with tarfile.open(str(first / (name + ".tar.gz"))) as tar:
            members = tar.getmembers()
            assert [m.name for m in members] == ["app.py", "release.json", "worker.py"]
            assert all(m.isfile() and m.mode == 0o644 and m.uid == m.gid == 0 for m in members)
            assert len({m.mtime for m in members}) == 1
            assert tar.extractfile("app.py").read() == app_source
            release = json.loads(tar.extractfile("release.json").read())
        mode = name if name in ("broken", "crash", "flaky", "slow") else "ok"
        assert release == dict({"version": name, "mode": mode}, **({"worker": "crash"} if name == "noworker" else {}))
    time.sleep(1.1)  # a timestamp that leaked into an archive would now differ
    build(second)
    assert digests(first) == digests(second)
    assert len(set(digests(first).values())) == len(NAMES)

    # An unchanged archive is left alone; a damaged one is rebuilt.
    v1 = str(first / "v1.tar.gz")
    os.utime(v1, (1000000000, 1000000000))
    with open(str(first / "v2.tar.gz"), "ab") as f:
        f.write(b"junk")
    build(first)
    assert os.stat(v1).st_mtime == 1000000000
    assert digests(first) == digests(second)


def test_release_archive_runs(tmp_path, start_app):
    build(tmp_path / "rel")
    directory = tmp_path / "v3"
    with tarfile.open(str(tmp_path / "rel" / "v3.tar.gz")) as tar:
        tar.extractall(str(directory))
    app = start_app(directory=str(directory))
    assert json.loads(app.get("/")[2])["version"] == "v3"
