"""Reloads of a real master-worker HAProxy running the haproxy role's own configuration.

The configuration, the list of configured servers and the systemd drop-in are rendered from
the role's templates (tests/unit/roles/_haproxy_role.py), the state saver is laid out as the
role installs it (haproxy_state.py beside _haproxy_runtime.py), and the reload is what
systemd does: the drop-in's ExecReload lines in order (save, check, `kill -USR2 $MAINPID`).
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error

import pytest

from _ansible import run_module

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "unit", "roles"))
import _haproxy_role as role  # noqa: E402

HAPROXY = "/usr/sbin/haproxy"
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


class Setup(object):
    """The role's files for ``lab``: app1 with a clone slot (at a dead port), app2 without."""

    def __init__(self, lab, app2_port=None, **overrides):
        self.lab = lab
        self.lib = os.path.join(lab.dir, "lib")
        self.cli = role.install_tools(self.lib)
        self.servers_file = os.path.join(lab.dir, "hitless-servers.json")
        self.vars = dict(
            haproxy_backends=[{"name": "web", "servers": [
                {"name": "app1", "address": "127.0.0.1", "port": lab.apps["app1"].port,
                 "clone_port": lab.dead_port},
                {"name": "app2", "address": "127.0.0.1",
                 "port": app2_port or lab.apps["app2"].port}]}],
            haproxy_admin_socket=lab.sock, haproxy_server_state_file=lab.state_file,
            haproxy_frontend_address="127.0.0.1", haproxy_frontend_port=lab.web_port,
            haproxy_check_inter=lab.INTER_MS, haproxy_check_rise=lab.RISE,
            haproxy_check_fall=lab.FALL, haproxy_hard_stop_after="10s",
            _haproxy_lib_dir=self.lib, _haproxy_servers_file=self.servers_file)
        self.vars.update(overrides)

    def write(self):
        """haproxy.cfg and hitless-servers.json, as the role's tasks write them."""
        with open(self.lab.cfg, "w") as f:
            f.write(role.render("haproxy.cfg.j2", **self.vars))
        with open(self.servers_file, "w") as f:
            json.dump({"servers": role.servers(**self.vars)}, f, indent=4)
        return self

    def config(self):
        return role.render("haproxy.cfg.j2", **self.vars)

    def dropin(self):
        return role.render("hitless-save-state.conf.j2", **self.vars)

    def tool(self, *args):
        proc = subprocess.run([PYTHON, self.cli] + [str(a) for a in args], capture_output=True,
                              text=True, timeout=60, check=False)
        return proc.returncode, json.loads(proc.stdout)

    def systemd_reload(self):
        """`systemctl reload haproxy` with the drop-in: ExecReload as Debian's unit would run
        it once the drop-in resets and extends it (Environment= of Debian's unit)."""
        env = {"CONFIG": self.lab.cfg, "PIDFILE": os.path.join(self.lab.dir, "haproxy.pid"),
               "EXTRAOPTS": "-S %s" % self.lab.master_sock, "MAINPID": str(self.lab.master_pid)}
        return role.run_exec_reload(role.effective_exec_reload(self.dropin()), env)


def versions(lab, count):
    seen = set()
    for _request in range(count):
        seen.add(json.loads(lab.http_get(lab.web_url + "/")[1])["version"])
    return seen


class Traffic(object):
    """Requests in a loop (bounded in count and time) while a reload happens."""

    def __init__(self, lab, limit=400, seconds=30.0):
        self.lab, self.limit, self.seconds = lab, limit, seconds
        self.ok, self.failed = 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.daemon = True

    def _run(self):
        start = time.monotonic()
        while (not self._stop.is_set() and self.ok + len(self.failed) < self.limit
               and time.monotonic() - start < self.seconds):
            try:
                status = self.lab.http_get(self.lab.web_url + "/", timeout=5)[0]
                if status == 200:
                    self.ok += 1
                else:
                    self.failed.append(status)
            except (OSError, urllib.error.URLError) as e:
                self.failed.append(repr(e))
            time.sleep(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


def deploy_half_way(lab):
    """Where the rolling deploy stands when the operator reloads: the clone in the slot
    (moved to the clone instance's port) serving, the original drained, and a dynamic server
    added the old way."""
    app3 = lab.apps["app3"]
    base = {"socket": lab.sock, "backend": "web", "wait_timeout": 15}
    present = run_module("haproxy_server", dict(base, server="app1-clone", state="present",
                                                address="127.0.0.1", port=app3.port))
    assert not present.failed and present["commands"] == [
        "set server web/app1-clone addr 127.0.0.1 port %d" % app3.port], present
    ready = run_module("haproxy_server", dict(base, server="app1-clone", state="ready"))
    assert not ready.failed and ready["after"]["ready"], ready
    drain = run_module("haproxy_server", dict(base, server="app1", state="drain"))
    assert not drain.failed and drain["after"]["admin_state"] == "drain", drain
    dyn = run_module("haproxy_server", dict(base, server="dyn", state="present",
                                            address="127.0.0.1", port=lab.dead_port))
    assert not dyn.failed and dyn["dynamic"] is True, dyn
    assert versions(lab, 8) == {"app2", "app3"}


@pytest.mark.parametrize("how", ["cli", "dropin", "unsaved"])
def test_reload_keeps_the_slot_and_the_drain(haproxy_mw, how):
    """cli: the saver, then SIGUSR2 to the master; dropin: the drop-in's ExecReload lines;
    unsaved: the reload alone, which is what went wrong before (an old or no state file)."""
    lab = haproxy_mw
    setup = Setup(lab).write()
    lab.start(config=setup.config(), up=[("web", "app1"), ("web", "app2")])
    deploy_half_way(lab)
    rc, before = setup.tool("pid", lab.sock)
    assert rc == 0 and before["pid"] == lab.worker_pid()
    with Traffic(lab) as traffic:
        time.sleep(0.3)
        if how == "cli":
            rc, saved = setup.tool("save", lab.sock, lab.state_file, setup.servers_file)
            assert rc == 0 and saved["saved"] and saved["filtered"], saved
            assert saved["kept"] == ["web/app1", "web/app1-clone", "web/app2"], saved
            assert saved["dropped"] == ["web/dyn"], saved
            lab.reload()
        elif how == "dropin":
            ran = setup.systemd_reload()
            assert [r[1] for r in ran] == [0, 0, 0], ran
            assert json.loads(ran[0][3])["kept"] == ["web/app1", "web/app1-clone", "web/app2"]
        else:
            lab.reload()
        rc, waited = setup.tool("wait", lab.sock, before["pid"], 20)
        assert rc == 0 and waited["pid"] != before["pid"], waited
        time.sleep(0.5)
    assert traffic.ok > 10 and traffic.failed == [], (traffic.ok, traffic.failed)
    app1, clone = lab.server("web", "app1"), lab.server("web", "app1-clone")
    # Dynamic servers never survive a reload; that is why the clone has a slot.
    assert lab.server("web", "dyn") is None
    if how == "unsaved":
        # The bug: the drained original back in traffic, the clone out of it.
        assert app1["status"].startswith("UP") and app1["srv_admin_state"] == "0", app1
        assert clone["status"] == "MAINT" and clone["srv_port"] == str(lab.dead_port), clone
        return
    assert app1["status"] == "DRAIN" and app1["srv_admin_state"] == "8", app1
    # Still ready (only the configuration's `disabled` mark, 0x04), at the port it was moved
    # to, serving, with its check result kept.
    assert clone["srv_admin_state"] == "4" and clone["status"] == "UP", clone
    assert clone["srv_port"] == str(lab.apps["app3"].port), clone
    assert versions(lab, 8) == {"app2", "app3"}
    info = run_module("haproxy_info", {"socket": lab.sock, "backend": "web"})
    assert info["backends"]["web"]["servers"]["app1-clone"]["ready"] is True, info
    assert info["backends"]["web"]["servers"]["app1-clone"]["dynamic"] is False


def test_reload_with_a_changed_port_takes_the_new_port(haproxy_mw):
    """The saved line of a server whose port the new configuration changes is dropped, or
    HAProxy would keep the old port; the slot's moved port is kept."""
    lab = haproxy_mw
    setup = Setup(lab).write()
    lab.start(config=setup.config(), up=[("web", "app1"), ("web", "app2")])
    deploy_half_way(lab)
    old = lab.worker_pid()
    # The new configuration moves app2 to app1's port (any live instance will do).
    Setup(lab, app2_port=lab.apps["app1"].port).write()
    ran = setup.systemd_reload()
    assert json.loads(ran[0][3])["dropped"] == ["web/app2", "web/dyn"], ran[0]
    lab.wait_new_worker(old)
    assert lab.server("web", "app2")["srv_port"] == str(lab.apps["app1"].port)
    assert lab.server("web", "app1-clone")["srv_port"] == str(lab.apps["app3"].port)
    assert lab.server("web", "app1")["srv_admin_state"] == "8"


def test_a_failing_or_hanging_save_never_blocks_the_reload(haproxy_mw, tmp_path):
    lab = haproxy_mw
    setup = Setup(lab).write()
    lab.start(config=setup.config(), up=[("web", "app1"), ("web", "app2")])
    # The state file's directory does not exist: the save fails, the reload goes on.
    broken = Setup(lab, haproxy_server_state_file=str(tmp_path / "no" / "state"))
    old = lab.worker_pid()
    ran = broken.systemd_reload()
    assert ran[0][1] == 1 and json.loads(ran[0][3])["failed"], ran[0]
    assert [r[1] for r in ran[1:]] == [0, 0]
    lab.wait_new_worker(old)
    # A runtime API that accepts and never answers: the save is cut short, the reload goes on.
    hung = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hung.bind(str(tmp_path / "hung.sock"))
    hung.listen(8)
    try:
        stuck = Setup(lab, haproxy_admin_socket=str(tmp_path / "hung.sock"),
                      haproxy_state_save_timeout=2)
        old = lab.worker_pid()
        ran = stuck.systemd_reload()
    finally:
        hung.close()
    assert ran[0][1] != 0 and ran[0][2] < 2 + 2 + 1, ran[0]
    assert [r[1] for r in ran[1:]] == [0, 0]
    lab.wait_new_worker(old)


def test_role_config_with_slots_passes_haproxy_check(tmp_path):
    """The role's haproxy.cfg with clone_port set (its defaults otherwise), checked by
    `haproxy -c` as the role's template task validates it."""
    if not os.access(HAPROXY, os.X_OK):
        pytest.fail("%s is required for these tests" % HAPROXY)
    backends = [
        {"name": "demo", "clone_port": 8081, "hosts": ["demo.example"], "servers": [
            {"name": "app1", "address": "10.0.0.11", "port": 8080},
            {"name": "app2", "address": "10.0.0.12", "port": 8080, "clone_port": 9081},
            {"name": "app3", "address": "10.0.0.13", "port": 8080, "clone_port": 0}]},
        {"name": "sticky", "balance": "leastconn", "servers": [
            {"name": "app1", "address": "10.0.0.11", "port": 7000, "clone_port": 7001}]},
    ]
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(role.render("haproxy.cfg.j2", haproxy_backends=backends,
                               haproxy_admin_socket=str(tmp_path / "admin.sock"),
                               haproxy_server_state_file=str(tmp_path / "state")))
    proc = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = cfg.read_text()
    for slot in ("app1-clone 10.0.0.11:8081 disabled", "app2-clone 10.0.0.12:9081 disabled",
                 "app1-clone 10.0.0.11:7001 disabled"):
        assert "    server %s\n" % slot in text
    assert "app3-clone" not in text
