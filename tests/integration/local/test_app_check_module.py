"""hitless.deploy.app_check through the real ansible CLI against real sample-app processes on
loopback ports: it passes on a healthy instance, waits through a slow start, and fails, naming
the check and the cause, on a broken one."""
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from _ansible import run_module
from ansible_collections.hitless.deploy.plugins.module_utils._app_check import command_probe, parse_checks

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
APP = os.path.join(REPO, "tests", "sample_app", "app.py")
SECRET = "Bearer s3cret-app-check-token"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "sample app exited with %s" % proc.returncode
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("sample app did not listen on %d within %ss" % (port, timeout))


@pytest.fixture
def start_app(tmp_path):
    """start_app(version, mode=None, delay=0, port=None, wait=True) -> port; stopped at teardown."""
    procs = []

    def start(version="v2", mode=None, delay=0, port=None, wait=True):
        port = port or free_port()
        script = APP
        if mode:
            # release.json sits beside app.py, so a broken release needs its own copy of the app.
            release = tmp_path / ("release-" + mode)
            release.mkdir(exist_ok=True)
            shutil.copy(APP, str(release / "app.py"))
            (release / "release.json").write_text(json.dumps({"version": version, "mode": mode}))
            script = str(release / "app.py")
        env = dict(os.environ, PORT=str(port), STARTUP_DELAY=str(delay), BIND="127.0.0.1",
                   APP_VERSION=version)
        proc = subprocess.Popen([sys.executable, script], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        procs.append(proc)
        if wait:
            wait_listening(port, proc)
        return port

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def auth_server():
    """URL of a loopback server answering 200 only to requests carrying both test headers."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.headers.get("Authorization") == SECRET and self.headers.get("X-Check") == "1"
            body = b"authorized\n" if ok else b"denied\n"
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield "http://127.0.0.1:%d/secure" % server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


def healthy_checks(port, auth_url):
    return [
        {"name": "health", "http": {"path": "/health", "body_regex": "^ok$",
                                    "headers": {"content-type": "^text/plain"}}},
        {"name": "auth", "http": {"url": auth_url, "body_regex": "^authorized$",
                                  "request_headers": {"X-Check": "1"},
                                  "secret_headers": {"Authorization": SECRET}}},
        {"name": "version", "http": {"url": "http://127.0.0.1:%d/" % port, "body_regex": '"version": "v2"'}},
        {"name": "listening", "tcp": {}},
        {"name": "exit 0", "command": {"argv": ["python3", "-c", "import sys; sys.exit(0)"]}},
        {"name": "stdout", "command": {"cmd": "python3 -c 'print(\"ready\")'", "stdout_regex": "^ready$"}},
    ]


@pytest.mark.parametrize("check_mode", [False, True], ids=["apply", "check_mode"])
def test_healthy_app_passes_and_changes_nothing(start_app, auth_server, check_mode):
    port = start_app("v2")
    result = run_module("app_check", {"port": port, "checks": healthy_checks(port, auth_server)},
                        check=check_mode)
    assert not result.failed, result.get("msg")
    assert not result.changed
    assert result["rounds"] == 1
    assert result["msg"] == "all 6 checks passed after 1 round in %gs" % result["elapsed"]
    # Check mode ran the real checks too: every one was attempted and passed.
    assert [(r["name"], r["passed"], r["attempts"], r["failures"]) for r in result["results"]] == [
        ("health", True, 1, 0), ("auth", True, 1, 0), ("version", True, 1, 0), ("listening", True, 1, 0),
        ("exit 0", True, 1, 0), ("stdout", True, 1, 0)]
    assert result["results"][0]["target"] == "GET http://127.0.0.1:%d/health" % port
    # The secret header's value is nowhere; the plain one ("1") masked nothing.
    assert "s3cret" not in json.dumps(result) and "********" not in json.dumps(result["results"])


def test_waits_through_the_startup_delay(start_app):
    port = free_port()
    args = {"port": port, "interval": 0.2, "deadline": 20,
            "checks": [{"name": "health", "http": {"path": "/health", "timeout": 2}}]}
    # A gate holds the port until the module's first probe arrives, and only then is the app
    # started, so the module itself must wait out the whole STARTUP_DELAY, whatever ansible's
    # own start-up costs.
    gate = socket.socket()
    gate.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    gate.bind(("127.0.0.1", port))
    gate.listen(8)
    holder = {}

    def run():
        try:
            holder["result"] = run_module("app_check", args)
        except BaseException as e:  # re-raised in the test's thread
            holder["error"] = e

    runner = threading.Thread(target=run)
    runner.start()
    try:
        probed, _writable, _failed = select.select([gate], [], [], 60)
    finally:
        gate.close()  # resets the first probe's connection: a failed attempt
    start_app("v2", delay=1.5, port=port, wait=False)
    runner.join(60)
    assert probed and not runner.is_alive()
    if "error" in holder:
        raise holder["error"]
    result = holder["result"]
    assert not result.failed, result.get("msg")
    health = result["results"][0]
    assert health["passed"] and health["failures"] >= 2 and result["rounds"] == health["failures"] + 1
    assert health["last_error"]  # reset or refused while the app was starting
    assert result["elapsed"] >= 1.4


def test_broken_app_fails_within_the_deadline(start_app):
    port = start_app("v9", mode="broken")
    result = run_module("app_check", {"port": port, "interval": 0.3, "deadline": 2.5,
                                      "checks": [{"name": "health", "http": {"path": "/health"}}]})
    assert result.failed and not result.changed
    assert result["msg"].startswith("post_start checks failed, deadline of 2.5s reached after")
    assert ("checks[0] 'health' (http GET http://127.0.0.1:%d/health): status 503, expected 200; "
            "body: 'broken\\n'" % port) in result["msg"]
    health = result["results"][0]
    assert not health["passed"] and health["attempts"] >= 3 and health["attempts"] == health["failures"]
    assert health["last_error"].startswith("status 503")
    # Attempts are cut to end by the deadline; the margin is the bookkeeping after the last one.
    assert 2.0 <= result["elapsed"] <= 2.6


def test_several_instances_are_checked_together_and_the_failing_one_is_named(start_app):
    healthy, broken = start_app("v2"), start_app("v9", mode="broken")
    result = run_module("app_check", {"ports": [healthy, broken], "interval": 0.3, "deadline": 2.5,
                                      "checks": [{"name": "health", "http": {"path": "/health"}}]})
    assert result.failed and not result.changed
    assert result["msg"].startswith("on %d: post_start checks failed, deadline of 2.5s reached after" % broken)
    assert "status 503" in result["msg"] and "on %d" % healthy not in result["msg"]
    assert [(each["port"], each["passed"]) for each in result["instances"]] == [(healthy, True), (broken, False)]
    assert [(each["port"], each["target"], each["passed"]) for each in result["results"]] == [
        (healthy, "GET http://127.0.0.1:%d/health" % healthy, True),
        (broken, "GET http://127.0.0.1:%d/health" % broken, False)]
    twice = run_module("app_check", {"ports": [healthy, healthy], "checks": [{"http": {"path": "/"}}]})
    assert twice.failed and twice["param"] == "ports[1]"
    assert twice["msg"] == "ports[1]: port %d is listed twice" % healthy


def test_each_failing_check_is_named_with_its_cause(start_app):
    # One run for several failure kinds: every ansible start costs seconds of CPU.
    port = start_app("v2")
    closed = free_port()
    result = run_module("app_check", {"port": port, "interval": 0.2, "retries": 2, "checks": [
        {"name": "is v2", "http": {"path": "/", "body_regex": '"version": "v2"'}},
        {"name": "is v3", "http": {"path": "/", "body_regex": '"version": "v3"'}},
        {"name": "closed", "tcp": {"port": closed}},
        {"name": "exit 0", "command": {"argv": ["python3", "-c", "import sys; sys.exit(0)"]}},
        {"name": "rc 3", "command": {"argv": ["python3", "-c",
                                              "import sys; sys.stderr.write('no db'); sys.exit(3)"]}},
    ]})
    assert result.failed and not result.changed
    msg = result["msg"]
    assert msg.startswith("post_start checks failed, retries exhausted (retries=2) after 3 rounds")
    assert ("checks[1] 'is v3' (http GET http://127.0.0.1:%d/): body does not match '\"version\": \"v3\"'; "
            "body: '{\"version\": \"v2\"" % port) in msg
    assert "checks[2] 'closed' (tcp 127.0.0.1:%d): connection refused" % closed in msg
    assert "checks[4] 'rc 3' (command python3 -c " in msg
    assert msg.endswith("rc 3, expected 0; stderr: 'no db'")
    assert "'is v2'" not in msg and "'exit 0'" not in msg
    assert [(r["name"], r["passed"], r["attempts"], r["failures"]) for r in result["results"]] == [
        ("is v2", True, 3, 0), ("is v3", False, 3, 3), ("closed", False, 3, 3),
        ("exit 0", True, 3, 0), ("rc 3", False, 3, 3)]


def test_invalid_input_fails_naming_the_parameter_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    result = run_module("app_check", {"port": 1, "checks": [
        {"command": {"argv": ["touch", str(marker)]}},
        {"http": {"path": "/", "body_regex": "(unclosed"}},
    ]})
    assert result.failed and result["param"] == "checks[1].http.body_regex"
    assert result["msg"].startswith("checks[1].http.body_regex is not a valid regular expression")
    assert not marker.exists()


def test_command_timeout_kills_the_command_quickly():
    (check,) = parse_checks({"checks": [{"command": {"argv": ["sleep", "30"]}}]})
    began = time.monotonic()
    assert command_probe(check.spec, 0.3) == "timed out after 0.3s (killed)"
    assert time.monotonic() - began < 3
