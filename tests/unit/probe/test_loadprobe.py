"""The load probe against a real sample-app process on loopback: it must see failures when there
are some, and stop by itself."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
APP = os.path.join(REPO, "tests", "sample_app", "app.py")
PROBE = os.path.join(REPO, "tests", "probe", "loadprobe.py")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def app():
    port = free_port()
    env = dict(os.environ, PORT=str(port), STARTUP_DELAY="0", BIND="127.0.0.1", APP_VERSION="v9")
    proc = subprocess.Popen([sys.executable, APP], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield proc, "http://127.0.0.1:%d" % port
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def run_probe(url, out, *extra):
    return subprocess.run([sys.executable, PROBE, "--url", url, "--out", str(out), "--slow-ms", "300",
                           *extra], capture_output=True, text=True, timeout=60, check=False)


def test_healthy_app_no_failure_and_versions_recorded(app, tmp_path):
    _proc, url = app
    started = time.monotonic()
    proc = run_probe(url, tmp_path / "r.json", "--duration", "2")
    result = json.loads((tmp_path / "r.json").read_text())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.monotonic() - started < 15
    assert result["failed"] == 0
    assert result["requests"] > 50
    assert result["by_version"] == {"v9": result["requests"]}
    assert sum(result["by_instance"].values()) == result["requests"]
    assert {r["kind"] for r in result["records"]} == {"keepalive", "fresh", "slow"}
    assert result["sse"]["events"] >= 3
    assert "requests: %d, failed: 0" % result["requests"] in proc.stdout


def test_dead_app_is_counted_as_failures(app, tmp_path):
    proc_app, url = app
    probe = subprocess.Popen([sys.executable, PROBE, "--url", url, "--out", str(tmp_path / "r.json"),
                              "--duration", "3", "--timeout", "2", "--slow-ms", "300"],
                             stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    proc_app.send_signal(signal.SIGKILL)
    probe.communicate(timeout=60)
    result = json.loads((tmp_path / "r.json").read_text())
    assert probe.returncode == 1
    assert result["failed"] > 0
    assert result["by_version"].get("v9", 0) > 0
    assert all(r["error"] for r in result["failures"])


def test_max_requests_stops_the_probe(app, tmp_path):
    _proc, url = app
    started = time.monotonic()
    proc = run_probe(url, tmp_path / "r.json", "--duration", "30", "--max-requests", "20", "--no-sse")
    result = json.loads((tmp_path / "r.json").read_text())
    assert proc.returncode == 0
    assert time.monotonic() - started < 10
    assert 20 <= result["requests"] <= 30


def test_stop_file_ends_the_probe(app, tmp_path):
    _proc, url = app
    stop = tmp_path / "stop"
    probe = subprocess.Popen([sys.executable, PROBE, "--url", url, "--out", str(tmp_path / "r.json"),
                              "--duration", "30", "--stop-file", str(stop), "--slow-ms", "300"],
                             stdout=subprocess.DEVNULL)
    time.sleep(1.0)
    stop.write_text("")
    assert probe.wait(timeout=15) == 0
