"""The state saver the role installs (haproxy_state.py beside _haproxy_runtime.py), run as the
drop-in and the handlers run it, against a unix socket that answers like HAProxy 2.6."""
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

import _haproxy_role as role

STATE_HEADER = (
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
    "srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health "
    "srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord "
    "srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port")


def line(server, port, admin, address="10.0.0.11"):
    return "3 demo 1 %s %s 2 %d 1 1 5 15 3 3 6 0 0 0 - %d - 0 0 - - 0" % (
        server, address, admin, port)


STATE = "\n".join(["1", STATE_HEADER,
                   line("app1", 8080, 8),            # drained original: kept
                   line("app1-clone", 9999, 4),      # ready slot moved elsewhere: kept
                   line("app2", 8080, 0, "10.0.0.12"),  # port changed in the config: dropped
                   line("dyn", 8082, 0)]) + "\n\n"   # dynamic server: dropped


class FakeHAProxy(object):
    """Answers `show info` / `show servers state` on a unix socket; ``pids`` in turn."""

    def __init__(self, path, pids=(4242,), state=STATE, hang=False):
        self.path, self.pids, self.state, self.hang = path, list(pids), state, hang
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve)
        self.thread.daemon = True
        self.thread.start()

    def serve(self):
        while not self.stop.is_set():
            try:
                conn, _addr = self.sock.accept()
            except socket.timeout:
                continue
            with conn:
                command = conn.recv(1000).decode().strip()
                if self.hang:
                    self.stop.wait(30)
                    continue
                if command == "show info":
                    pid = self.pids.pop(0) if len(self.pids) > 1 else self.pids[0]
                    conn.sendall(("Name: HAProxy\nVersion: 2.6.12\nPid: %d\n\n" % pid).encode())
                elif command == "show servers state":
                    conn.sendall(self.state.encode())
                else:
                    conn.sendall(b"Unknown command.\n")

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def tools(tmp_path):
    return role.install_tools(str(tmp_path / "lib"))


def cli(tools, *args, timeout=30):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, tools] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=timeout, check=False)
    out = json.loads(proc.stdout)
    out["_rc"], out["_seconds"] = proc.returncode, time.monotonic() - start
    return out


def write_servers(path, servers):
    with open(path, "w") as f:
        json.dump({"servers": servers}, f)
    return path


SERVERS = [
    {"backend": "demo", "server": "app1", "address": "10.0.0.11", "port": 8080, "slot": False},
    {"backend": "demo", "server": "app1-clone", "address": "10.0.0.11", "port": 8081,
     "slot": True, "clone_of": "app1"},
    {"backend": "demo", "server": "app2", "address": "10.0.0.12", "port": 8090, "slot": False},
]


def test_save_keeps_configured_servers_and_slots(tools, tmp_path):
    fake = FakeHAProxy(str(tmp_path / "admin.sock"))
    state_file = tmp_path / "server-state"
    try:
        out = cli(tools, "save", tmp_path / "admin.sock", state_file,
                  write_servers(str(tmp_path / "servers.json"), SERVERS))
    finally:
        fake.close()
    assert out["_rc"] == 0 and out["saved"] is True and out["filtered"] is True, out
    assert out["pid"] == 4242 and out["servers"] == 2
    assert out["kept"] == ["demo/app1", "demo/app1-clone"]
    assert out["dropped"] == ["demo/app2", "demo/dyn"]
    assert state_file.read_text() == "\n".join(
        ["1", STATE_HEADER, line("app1", 8080, 8), line("app1-clone", 9999, 4)]) + "\n"
    assert stat.S_IMODE(os.stat(str(state_file)).st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".server-state")] == []


def test_save_with_the_role_servers_file(tools, tmp_path):
    """The list exactly as the role renders it, for a backend with a clone_port."""
    servers = role.servers(haproxy_backends=[{"name": "demo", "clone_port": 8081, "servers": [
        {"name": "app1", "address": "10.0.0.11", "port": 8080},
        {"name": "app2", "address": "10.0.0.12", "port": 8090}]}])
    fake = FakeHAProxy(str(tmp_path / "admin.sock"))
    try:
        out = cli(tools, "save", tmp_path / "admin.sock", tmp_path / "state",
                  write_servers(str(tmp_path / "servers.json"), servers))
    finally:
        fake.close()
    assert out["kept"] == ["demo/app1", "demo/app1-clone"], out


def test_save_without_a_servers_file_saves_everything(tools, tmp_path):
    fake = FakeHAProxy(str(tmp_path / "admin.sock"))
    try:
        out = cli(tools, "save", tmp_path / "admin.sock", tmp_path / "state",
                  tmp_path / "missing.json")
    finally:
        fake.close()
    assert out["_rc"] == 0 and out["saved"] and out["filtered"] is False
    assert "unfiltered" in out["warning"] and out["servers"] == 4
    assert (tmp_path / "state").read_text() == STATE.strip() + "\n"


def test_save_when_haproxy_is_not_running_changes_nothing(tools, tmp_path):
    state_file = tmp_path / "state"
    state_file.write_text("old\n")
    out = cli(tools, "save", tmp_path / "admin.sock", state_file, tmp_path / "servers.json")
    assert out["_rc"] == 0 and out["saved"] is False and "not running" in out["msg"]
    assert state_file.read_text() == "old\n"


def test_save_refuses_an_unexpected_answer(tools, tmp_path):
    fake = FakeHAProxy(str(tmp_path / "admin.sock"), state="Permission denied\n")
    state_file = tmp_path / "state"
    state_file.write_text("old\n")
    try:
        out = cli(tools, "save", tmp_path / "admin.sock", state_file,
                  write_servers(str(tmp_path / "servers.json"), SERVERS))
    finally:
        fake.close()
    assert out["_rc"] == 1 and out["failed"] and "show servers state" in out["msg"]
    assert state_file.read_text() == "old\n"


def test_save_is_bounded_when_haproxy_does_not_answer(tools, tmp_path):
    fake = FakeHAProxy(str(tmp_path / "admin.sock"), hang=True)
    try:
        out = cli(tools, "save", "--timeout", "0.5", tmp_path / "admin.sock", tmp_path / "state",
                  tmp_path / "servers.json")
    finally:
        fake.close()
    assert out["_rc"] == 1 and "did not answer" in out["msg"], out
    assert out["_seconds"] < 10
    assert not (tmp_path / "state").exists()


def test_pid_and_wait(tools, tmp_path):
    fake = FakeHAProxy(str(tmp_path / "admin.sock"), pids=(100, 100, 100, 200))
    try:
        assert cli(tools, "pid", tmp_path / "admin.sock")["pid"] == 100
        out = cli(tools, "wait", tmp_path / "admin.sock", 100, 10)
        assert out["_rc"] == 0 and out["pid"] == 200, out
        out = cli(tools, "wait", tmp_path / "admin.sock", 200, 0.5)
        assert out["_rc"] == 1 and "still answers" in out["msg"]
        assert cli(tools, "wait", tmp_path / "admin.sock", "None", 1)["pid"] == 200
    finally:
        fake.close()
    out = cli(tools, "wait", tmp_path / "gone.sock", 200, 0.5)
    assert out["_rc"] == 1 and "not complete" in out["msg"]
