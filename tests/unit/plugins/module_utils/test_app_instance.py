"""Unit tests of app_instance logic: a fake systemctl answers, drop-ins go to a real tmp dir.

Listeners are read by the real _listeners code from a fake procfs tree (net/tcp, <pid>/fd, ...).
"""
import os
import shutil
import socket

import pytest

from ansible_collections.hitless.deploy.plugins.module_utils import _app_instance as A
from ansible_collections.hitless.deploy.plugins.module_utils import _pin as P

TCP_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
STRAY = "port 8081 is held by pid 999 (python3 -m http.server 8081, unit stray.service), not by " \
        "demo@8081.service; stop it or choose another clone port"


class FakeProc(object):
    """A procfs tree with LISTEN sockets in net/tcp6 and the processes holding them."""

    def __init__(self, root):
        self.root = root
        self.rows = {}  # inode -> port
        os.makedirs(os.path.join(root, "net"))
        self._write()

    def _write(self):
        rows = ["%4d: %s:%04X %s:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 %d 1 "
                "0000000000000000 100 0 0 10 0\n" % (i, "0" * 32, port, "0" * 32, inode)
                for i, (inode, port) in enumerate(sorted(self.rows.items()))]
        with open(os.path.join(self.root, "net", "tcp6"), "w") as f:
            f.write(TCP_HEADER + "".join(rows))

    def listen(self, pid, port, argv, cgroup, cwd=None):
        inode = 1000 + pid
        self.rows[inode] = port
        self._write()
        top = os.path.join(self.root, str(pid))
        os.makedirs(os.path.join(top, "fd"))
        os.symlink("socket:[%d]" % inode, os.path.join(top, "fd", "3"))
        with open(os.path.join(top, "cmdline"), "wb") as f:
            f.write(b"\0".join(a.encode() for a in argv) + b"\0")
        with open(os.path.join(top, "cgroup"), "w") as f:
            f.write("0::%s\n" % cgroup)
        if cwd:
            os.symlink(cwd, os.path.join(top, "cwd"))

    def stray(self, port=8081, cgroup="/system.slice/stray.service"):
        self.listen(999, port, ["python3", "-m", "http.server", str(port)], cgroup)

    def kill(self, pid):
        self.rows.pop(1000 + pid, None)
        self._write()
        shutil.rmtree(os.path.join(self.root, str(pid)), ignore_errors=True)


class FakeSystemd(object):
    """Just enough of systemctl/journalctl: unit states, loaded drop-ins, a call log.

    A started unit's main process (pid 4242) listens on its port in ``proc``, in the unit's
    cgroup, with the working directory the loaded pin (or ``workdir``) gives it.
    """

    def __init__(self, runtime_dir, templates=("demo",), proc=None, workdir=None):
        self.runtime_dir = runtime_dir
        self.templates = set(templates)
        self.units = {}
        self.loaded = {}  # unit -> drop-in paths seen at the last daemon-reload
        self.calls = []
        self.on_start = lambda unit: "active"
        self.proc = proc
        self.workdir = workdir
        self.binds = True  # the started process listens on its port

    @staticmethod
    def cgroup(unit):
        return "/system.slice/system-%s.slice/%s" % (unit.split("@")[0], unit)

    def _run_main(self, unit):
        if self.proc is None or not self.binds:
            return
        pins = self.loaded.get(unit, [])
        cwd = P.pinned_to(open(pins[0]).read()) if pins else self.workdir
        self.proc.listen(4242, int(unit.split("@")[1].split(".")[0]), ["/usr/bin/python3", "app.py"],
                         self.cgroup(unit), cwd)

    def state(self, unit):
        return self.units.setdefault(unit, {"ActiveState": "inactive", "SubState": "dead", "MainPID": "0",
                                            "Result": "success"})

    def _drop_ins(self, unit):
        path = os.path.join(self.runtime_dir, unit + ".d", A.DROP_IN)
        return [path] if os.path.exists(path) else []

    def __call__(self, argv):
        cmd = os.path.basename(argv[0])
        args = [a for a in argv[1:] if a != "--"]
        self.calls.append(" ".join([cmd] + args))
        if cmd == "journalctl":
            return 0, "boom: exit 1\n", ""
        verb = args[0]
        if verb == "cat":
            return (0, "[Service]\n", "") if args[1].split("@")[0] in self.templates else (1, "", "No files found")
        if verb == "daemon-reload":
            for unit in self.units:
                self.loaded[unit] = self._drop_ins(unit)
            return 0, "", ""
        unit = args[-1]
        st = self.state(unit)
        if verb == "show":
            loaded = self.loaded.get(unit, [])
            need = "yes" if loaded != self._drop_ins(unit) else "no"
            props = dict(st, Id=unit, LoadState="loaded", DropInPaths=" ".join(loaded), NeedDaemonReload=need)
            return 0, "".join("%s=%s\n" % kv for kv in sorted(props.items())), ""
        if verb in ("start", "restart"):
            if self.proc is not None:
                self.proc.kill(4242)
            active = self.on_start(unit)
            st.update(ActiveState=active, SubState="running" if active == "active" else "failed",
                      MainPID="4242" if active == "active" else "0",
                      ControlGroup=self.cgroup(unit) if active == "active" else "")
            if active == "active":
                self._run_main(unit)
        elif verb == "stop":
            st.update(ActiveState="inactive", SubState="dead", MainPID="0", ControlGroup="")
            if self.proc is not None:
                self.proc.kill(4242)
        elif verb == "reset-failed":
            st.update(ActiveState="inactive", SubState="dead", Result="success")
        return 0, "", ""

    def changing_calls(self):
        return [c for c in self.calls if not c.startswith(("systemctl show", "systemctl cat", "journalctl"))]


@pytest.fixture
def env(tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir()
    release = tmp_path / "srv" / "releases" / "v1"
    release.mkdir(parents=True)
    (tmp_path / "srv" / "releases" / "v2").mkdir()
    os.symlink("releases/v1", tmp_path / "srv" / "current")
    proc = FakeProc(str(tmp_path / "proc"))
    fake = FakeSystemd(str(runtime), proc=proc, workdir=str(tmp_path / "srv" / "current"))
    probes = []
    now = [0.0]  # a fake clock that only sleeps move

    def sleep(seconds):
        now[0] += seconds

    def run(check=False, probe=lambda host, port: probes.append((host, port)) or True, **params):
        p = {"name": "demo", "port": 8081, "state": "started", "release_path": None, "environment_file": ".env",
             "original_port": 8080, "wait": True, "wait_host": "127.0.0.1", "wait_timeout": 5,
             "runtime_dir": str(runtime)}
        p.update(params)
        return A.ensure(p, A.Systemctl(fake), check, probe=probe, sleep=sleep, clock=lambda: now[0],
                        proc=proc.root)

    run.fake, run.tmp, run.probes, run.proc, run.now = fake, tmp_path, probes, proc, now
    run.drop_in = runtime / "demo@8081.service.d" / A.DROP_IN
    return run


def _converge(env, **params):
    """check (changed) -> apply (changed) -> check, apply (not changed)."""
    calls = list(env.fake.changing_calls())
    checked = env(check=True, **params)
    assert env.fake.changing_calls() == calls
    applied = env(**params)
    assert checked["changed"] and applied["changed"]
    assert checked["actions"] == applied["actions"]
    assert checked["diff"]["after"]["pinned_to"] == applied["diff"]["after"]["pinned_to"]
    assert checked["active_state"] == applied["active_state"]
    for check in (True, False):
        again = env(check=check, **params)
        assert not again["changed"], again
    return applied


@pytest.mark.parametrize("params,param", [
    ({"port": 0}, "port"),
    ({"port": 65536}, "port"),
    ({"port": 8080, "original_port": 8080}, "port"),
    ({"name": "demo@x"}, "name"),
    ({"name": ""}, "name"),
    ({"environment_file": "/etc/env"}, "environment_file"),
    ({"environment_file": "../x"}, "environment_file"),
    ({"wait_timeout": 0}, "wait_timeout"),
    ({"release_path": "/nonexistent/release"}, "release_path"),
    ({"name": "nope"}, "name"),
])
def test_bad_input_names_param_and_changes_nothing(env, params, param):
    for check in (True, False):
        with pytest.raises(A.InstanceError) as err:
            env(check=check, **params)
        assert err.value.param == param
    assert env.fake.changing_calls() == []
    assert os.listdir(env.fake.runtime_dir) == []


def test_drop_in_content_escapes_and_replaces_the_view_and_environment_file():
    text = P.drop_in_content("/srv/100%/releases/v1", ".env")
    assert text.splitlines()[1:] == [
        "[Service]",
        "TemporaryFileSystem=",
        "TemporaryFileSystem=/srv/100%%:ro",
        "BindReadOnlyPaths=",
        "BindReadOnlyPaths=/srv/100%%/releases/v1:/srv/100%%/current",
        "BindPaths=-/srv/100%%/shared",
        "EnvironmentFile=",
        "EnvironmentFile=-/srv/100%%/releases/v1/.env",
        'Environment="HITLESS_RELEASE=v1"',
    ]
    assert P.pinned_to(text) == "/srv/100%/releases/v1"


def test_drop_in_binds_onto_the_root_the_unit_names():
    text = P.drop_in_content("/data/demo/releases/v1", ".env", root="/srv/demo")
    assert "BindReadOnlyPaths=/data/demo/releases/v1:/srv/demo/current" in text.splitlines()
    assert "TemporaryFileSystem=/srv/demo:ro" in text.splitlines()


@pytest.mark.parametrize("content,path", [
    (None, None),
    ("[Service]\nWorkingDirectory=-/srv/a\n", "/srv/a"),  # "-": a missing directory is tolerated
    ("[Service]\n  WorkingDirectory = /srv/a  \n", "/srv/a"),
    ("[Service]\nWorkingDirectory=/srv/a\nWorkingDirectory=\n", None),  # an empty assignment resets
    ("[Service]\nWorkingDirectory=/srv/a\nWorkingDirectory=/srv/b\n", "/srv/b"),
    ("[Service]\n# WorkingDirectory=/srv/a\n", None),
    ("[Unit]\nWorkingDirectory=/srv/a\n[Service]\n", None),  # only [Service] counts
    # The view: the source of the bind onto .../current wins over a working directory.
    ("[Service]\nBindReadOnlyPaths=/r/releases/v1:/r/current\nWorkingDirectory=/r/current\n", "/r/releases/v1"),
    ("[Service]\nBindReadOnlyPaths = -/r/releases/v1:/r/current:rbind\n", "/r/releases/v1"),
    ("[Service]\nBindReadOnlyPaths=/r/releases/v1:/r/current\nBindReadOnlyPaths=\n", None),
    ("[Service]\nBindReadOnlyPaths=/r/releases/v1:/r/current\nBindReadOnlyPaths=/r/releases/v2:/r/current\n",
     "/r/releases/v2"),
    ("[Service]\nBindReadOnlyPaths=/etc/ssl /r/releases/v1:/r/current\n", "/r/releases/v1"),
    ("[Service]\nBindReadOnlyPaths=/etc/ssl:/etc/ssl\n", None),  # no bind onto current: no pin
    ("[Service]\nBindReadOnlyPaths=/r/releases/v1:/r/current\nBindPaths=\n", None),  # one list
    ("[Service]\nBindReadOnlyPaths=/r/releases/100%%:/r/current\n", "/r/releases/100%"),
])
def test_pinned_to_reads_like_systemd(content, path):
    assert P.pinned_to(content) == path


def test_started_pinned_through_symlink_uses_real_path(env):
    res = _converge(env, release_path=str(env.tmp / "srv" / "current"))
    real = str(env.tmp / "srv" / "releases" / "v1")
    assert res["pinned_to"] == real and res["active_state"] == "active" and res["main_pid"] == 4242
    assert res["actions"] == ["write", "daemon-reload", "start"]
    assert "BindReadOnlyPaths=%s:%s/current\n" % (real, env.tmp / "srv") in env.drop_in.read_text()
    assert env.probes == [("127.0.0.1", 8081)]
    assert res["diff"]["before"]["pinned_to"] is None


def test_check_mode_touches_nothing(env):
    res = env(check=True, release_path=str(env.tmp / "srv" / "releases" / "v1"))
    assert res["changed"] and res["active_state"] == "active"
    assert not env.drop_in.exists() and env.fake.changing_calls() == [] and env.probes == []


def test_pin_change_restarts_and_unpinning_removes_drop_in(env):
    v1, v2 = (str(env.tmp / "srv" / "releases" / v) for v in ("v1", "v2"))
    env(release_path=v1)
    res = _converge(env, release_path=v2)
    assert res["actions"] == ["write", "daemon-reload", "restart"] and res["pinned_to"] == v2
    res = _converge(env)
    assert res["actions"] == ["remove", "daemon-reload", "restart"] and res["pinned_to"] is None
    assert not env.drop_in.parent.exists()


def test_drop_in_written_but_not_loaded_is_reloaded(env):
    v1 = str(env.tmp / "srv" / "releases" / "v1")
    env(release_path=v1)
    env.fake.loaded.clear()  # as if someone wrote the file without daemon-reload
    res = env(release_path=v1)
    assert res["changed"] and res["actions"] == ["daemon-reload", "restart"]


def test_stopped_restarted_absent(env):
    v1 = str(env.tmp / "srv" / "releases" / "v1")
    env(release_path=v1)
    res = _converge(env, state="stopped", release_path=v1)
    assert res["actions"] == ["stop"] and res["active_state"] == "inactive" and env.drop_in.exists()
    for check in (True, False):
        assert env(check=check, state="restarted", release_path=v1)["changed"]
    res = _converge(env, state="absent")
    assert res["actions"] == ["stop", "remove", "daemon-reload"]
    assert not env.drop_in.parent.exists() and res["active_state"] == "inactive"


def test_absent_clears_failed_state(env):
    env.fake.state("demo@8081.service").update(ActiveState="failed", SubState="failed", Result="exit-code")
    res = _converge(env, state="absent")
    assert res["actions"] == ["reset-failed"]
    assert "systemctl reset-failed demo@8081.service" in env.fake.calls


@pytest.mark.parametrize("state", ["started", "restarted"])
@pytest.mark.parametrize("sub_state", ["failed", "auto-restart", "running"])
def test_a_crash_looped_unit_has_its_start_limit_cleared_first(env, state, sub_state):
    active = {"failed": "failed", "auto-restart": "activating", "running": "active"}[sub_state]
    # "running": caught alive between two automatic restarts; only NRestarts tells.
    env.fake.state("demo@8081.service").update(ActiveState=active, SubState=sub_state,
                                               Result="exit-code", NRestarts="3")
    res = env(state=state)
    # systemd refuses a start after too many quick ones ("start request repeated too quickly")
    # until reset-failed: the start that rolls back must not be refused.
    calls = env.fake.changing_calls()
    if state == "started" and sub_state != "failed":
        # Running (or about to, by itself): nothing to start, so nothing to clear either.
        assert calls == [] and res["actions"] == [], calls
        return
    verb = "restart" if state == "restarted" else "start"
    assert res["actions"] == ["reset-failed", verb], res
    assert calls == ["systemctl reset-failed demo@8081.service",
                     "systemctl %s demo@8081.service" % verb], calls
    assert res["active_state"] == "active", res


def test_unit_dying_while_waiting_fails_with_journal(env):
    env.fake.on_start = lambda unit: "failed"
    with pytest.raises(A.InstanceError) as err:
        env(probe=lambda host, port: False)
    assert "died" in err.value.msg and "boom" in err.value.msg
    assert err.value.unit_state["ActiveState"] == "failed"
    assert env.now[0] == 0  # at the first look, not at the deadline


@pytest.mark.parametrize("stray", [False, True])
def test_unit_crash_looping_fails_at_once(env, stray):
    def crash_loop(unit):
        if stray:
            env.proc.stray()  # binds first; the unit exits on "address in use"
        return "activating"

    def run(argv):
        rc, out, err = env.fake(argv)
        if "show" in argv:  # systemd has scheduled the next attempt
            out = out.replace("SubState=failed", "SubState=auto-restart")
        return rc, out, err

    env.fake.on_start = crash_loop
    params = {"name": "demo", "port": 8081, "state": "started", "environment_file": ".env",
              "runtime_dir": env.fake.runtime_dir, "wait_timeout": 5}
    with pytest.raises(A.InstanceError) as err:
        A.ensure(params, A.Systemctl(run), False, probe=lambda h, p: True, sleep=pytest.fail,
                 clock=lambda: 0.0, proc=env.proc.root)
    assert err.value.unit_state["SubState"] == "auto-restart"
    if stray:
        assert err.value.msg == STRAY  # the cause, rather than the symptom
    else:
        assert "died" in err.value.msg and "boom" in err.value.msg


def test_foreign_listener_before_start_refused_and_nothing_changed(env):
    env.proc.stray()
    v1 = str(env.tmp / "srv" / "releases" / "v1")
    for check in (True, False):
        with pytest.raises(A.InstanceError) as err:
            env(check=check, release_path=v1)
        assert err.value.msg == STRAY and err.value.param == "port"
    assert env.fake.changing_calls() == [] and not env.drop_in.exists() and env.probes == []


def test_foreign_listener_with_the_same_unit_name_elsewhere_is_refused(env):
    # A user manager's demo@8081.service: same unit name, another cgroup.
    env.proc.stray(cgroup="/user.slice/user-1000.slice/user@1000.service/app.slice/demo@8081.service")
    with pytest.raises(A.InstanceError) as err:
        env()
    assert "held by pid 999 (python3 -m http.server 8081, unit demo@8081.service)" in err.value.msg
    assert env.fake.changing_calls() == []


def test_unidentified_listener_before_start_refused(env):
    env.proc.stray()
    shutil.rmtree(os.path.join(env.proc.root, "999"))  # its /proc entry cannot be read
    with pytest.raises(A.InstanceError, match="cannot be read") as err:
        env()
    assert err.value.param == "port" and env.fake.changing_calls() == []


def test_foreign_listener_during_wait_fails_at_once(env):
    def stray_wins(unit):
        env.proc.stray()
        return "active"

    env.fake.on_start = stray_wins
    env.fake.binds = False  # the unit's own process never gets the port
    with pytest.raises(A.InstanceError) as err:
        env()
    assert err.value.msg == STRAY
    assert env.now[0] == 0  # no sleep, let alone to the 5 s deadline
    assert "systemctl start demo@8081.service" in env.fake.calls


def test_foreign_listener_beside_own_fails(env):
    def both(unit):
        env.proc.stray()  # SO_REUSEPORT: both processes hold a listener on the port
        return "active"

    env.fake.on_start = both
    with pytest.raises(A.InstanceError) as err:
        env()
    assert err.value.msg == STRAY and env.now[0] == 0


def test_own_listener_is_ready_and_reported(env):
    v1 = str(env.tmp / "srv" / "releases" / "v1")
    res = env(release_path=v1)
    assert res["listeners"] == [{"pid": 4242, "cmdline": "/usr/bin/python3 app.py", "unit": "demo@8081.service"}]
    assert res["running_release_path"] == v1 and res["running_release"] == "v1"
    assert env.now[0] == 0


def test_running_release_follows_the_process_not_the_pin(env):
    v1, v2 = (str(env.tmp / "srv" / "releases" / v) for v in ("v1", "v2"))
    env(release_path=v1)
    res = env(check=True, release_path=v2)  # check mode: the process running now
    assert res["actions"] == ["write", "daemon-reload", "restart"]
    assert res["pinned_to"] == v2 and res["running_release"] == "v1"
    assert env(release_path=v2)["running_release"] == "v2"
    res = env(state="absent")
    assert res["running_release"] is None and res["running_release_path"] is None and res["listeners"] == []


def test_unpinned_instance_runs_the_release_current_points_to(env):
    res = env()
    assert res["pinned_to"] is None and res["running_release"] == "v1"


def test_waits_while_own_process_has_not_bound_even_if_port_accepts(env):
    env.fake.binds = False
    polls = []

    def probe(host, port):
        polls.append(port)
        if len(polls) == 3:  # the unit's process binds late
            env.fake.binds = True
            env.fake._run_main("demo@8081.service")
        return True  # something accepts from the start: not enough

    res = env(probe=probe)
    assert res["listeners"][0]["pid"] == 4242 and len(polls) == 3
    assert env.now[0] == pytest.approx(2 * A.POLL_INTERVAL)


def test_accepting_without_own_listener_times_out(env):
    env.fake.binds = False
    with pytest.raises(A.InstanceError) as err:
        env()
    assert err.value.param == "wait_timeout"
    assert "no process of demo@8081.service listens on port 8081" in err.value.msg
    assert env.now[0] == pytest.approx(5)  # the last sleep ends at the deadline, not past it


def test_already_running_checks_ownership_when_waiting(env):
    v1 = str(env.tmp / "srv" / "releases" / "v1")
    env(release_path=v1)
    calls = list(env.fake.changing_calls())
    env.proc.stray()
    with pytest.raises(A.InstanceError) as err:
        env(release_path=v1)
    assert err.value.msg == STRAY and env.fake.changing_calls() == calls
    res = env(release_path=v1, wait=False)  # not asked to look
    assert not res["changed"] and [e["pid"] for e in res["listeners"]] == [999, 4242]


def test_restart_of_running_unit_is_not_refused_by_its_own_listener(env):
    env()
    res = env(state="restarted")
    assert res["actions"] == ["restart"] and [e["pid"] for e in res["listeners"]] == [4242]


def test_own_listener_in_a_delegated_sub_cgroup_counts(env):
    def worker(unit):
        env.proc.listen(5000, 8081, ["worker"], FakeSystemd.cgroup(unit) + "/worker")
        return "active"

    env.fake.on_start = worker
    env.fake.binds = False
    res = env()
    assert [e["pid"] for e in res["listeners"]] == [5000]


def test_wait_times_out_naming_wait_timeout(env):
    now = [0.0]

    def clock():
        now[0] += 1.0
        return now[0]

    sysd = A.Systemctl(env.fake)
    env.fake.state("demo@8081.service").update(ActiveState="active", SubState="running")
    with pytest.raises(A.InstanceError) as err:
        A.wait_ready(sysd, "demo@8081.service", "127.0.0.1", 8081, 5, probe=lambda h, p: False,
                     sleep=lambda s: None, clock=clock, proc=env.proc.root)
    assert err.value.param == "wait_timeout"
    assert 4 <= now[0] <= 8


def test_wait_polls_at_poll_and_stops_at_the_deadline(env):
    now, sleeps = [0.0], []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    env.fake.state("demo@8081.service").update(ActiveState="activating", SubState="start")
    with pytest.raises(A.InstanceError) as err:
        A.wait_ready(A.Systemctl(env.fake), "demo@8081.service", "127.0.0.1", 8081, 0.1,
                     probe=lambda h, p: False, sleep=sleep, clock=lambda: now[0], proc=env.proc.root,
                     poll=0.04)
    assert sleeps == [0.04, 0.04, pytest.approx(0.02)]  # the last one cut at the deadline
    assert err.value.msg == ("demo@8081.service not ready within 0.1 s (wait_timeout): demo@8081.service is "
                             "not running yet (ActiveState=activating, SubState=start)")
    assert err.value.unit_state["SubState"] == "start"


def test_port_open_against_a_real_listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        assert A.port_open("127.0.0.1", port)
    finally:
        server.close()
    assert not A.port_open("127.0.0.1", port, timeout=0.5)


def test_parse_show_and_systemctl_errors():
    assert A.parse_show("ActiveState=active\nDropInPaths=/a /b\nExecStart={ path=/x ; argv[]=a=b }\n") == {
        "ActiveState": "active", "DropInPaths": "/a /b", "ExecStart": "{ path=/x ; argv[]=a=b }"}
    sysd = A.Systemctl(lambda argv: (5, "", "Unit demo@1.service not found."))
    with pytest.raises(A.InstanceError, match="not found"):
        sysd.call("start", "demo@1.service")


def test_release_path_must_be_a_release_directory_with_a_plain_path(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(A.InstanceError, match="not a release directory ROOT/releases/NAME") as err:
        A.resolve_release(str(tmp_path / "elsewhere"))
    assert err.value.param == "release_path"
    odd = tmp_path / "a:b" / "releases" / "v1"
    odd.mkdir(parents=True)
    with pytest.raises(A.InstanceError, match="mount settings") as err:
        A.resolve_release(str(odd))
    assert err.value.param == "release_path"
    good = tmp_path / "srv" / "releases" / "v1"
    good.mkdir(parents=True)
    assert A.resolve_release(str(good)) == (str(tmp_path / "srv"), os.path.realpath(str(good)))


def test_releases_of_follows_the_working_directory():
    assert A.releases_of({}) is None
    assert A.releases_of({"WorkingDirectory": "relative"}) is None
    assert A.releases_of({"WorkingDirectory": "-/"}) == "/"
