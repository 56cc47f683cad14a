"""The stat poller the deploy tests rely on, against a real HAProxy: it must count UP servers
right, see a drained server leave the count, and stop by itself."""
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
POLLER = os.path.join(REPO, "tests", "probe", "statpoller.py")


def test_poller_counts_up_servers_and_sees_drain(haproxy, tmp_path):
    out = tmp_path / "poll.json"
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, POLLER, "--admin", haproxy.tcp_socket, "--backend", "web",
                             "--duration", "3", "--out", str(out)], stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    haproxy.cmd("set server web/app2 state drain")
    time.sleep(1.0)
    haproxy.cmd("set server web/app2 state ready")
    stdout, _stderr = proc.communicate(timeout=30)
    result = json.loads(out.read_text())
    assert proc.returncode == 0
    assert time.monotonic() - started < 15
    assert {"app1", "app2"} <= set(result["servers_seen"])
    assert result["max_up"] >= 2
    assert result["min_up"] == result["max_up"] - 1
    drained = [s for s in result["samples"] if s[2].get("app2") == "DRAIN"]
    assert drained and all(s[1] == result["max_up"] - 1 for s in drained)
    assert len(result["samples"]) > 20
    assert "min UP: %d" % result["min_up"] in stdout


def test_poller_over_the_unix_socket_stops_on_stop_file(haproxy, tmp_path):
    stop = tmp_path / "stop"
    out = tmp_path / "poll.json"
    proc = subprocess.Popen([sys.executable, POLLER, "--admin", haproxy.sock, "--backend", "web",
                             "--duration", "60", "--stop-file", str(stop), "--out", str(out)],
                            stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    stop.write_text("")
    assert proc.wait(timeout=10) == 0
    assert json.loads(out.read_text())["errors"] == 0
