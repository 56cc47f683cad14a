"""Unit tests of app_instance logic: a fake systemctl answers, drop-ins go to a real tmp dir."""
import os
import socket

import pytest

from ansible_collections.hitless.deploy.plugins.module_utils import _app_instance as A


class FakeSystemd(object):
    """Just enough of systemctl/journalctl: unit states, loaded drop-ins, a call log."""

    def __init__(self, runtime_dir, templates=("demo",)):
        self.runtime_dir = runtime_dir
        self.templates = set(templates)
        self.units = {}
        self.loaded = {}  # unit -> drop-in paths seen at the last daemon-reload
        self.calls = []
        self.on_start = lambda unit: "active"

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
            active = self.on_start(unit)
            st.update(ActiveState=active, SubState="running" if active == "active" else "failed",
                      MainPID="4242" if active == "active" else "0")
        elif verb == "stop":
            st.update(ActiveState="inactive", SubState="dead", MainPID="0")
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
    fake = FakeSystemd(str(runtime))
    probes = []

    def run(check=False, probe=lambda host, port: probes.append((host, port)) or True, **params):
        p = {"name": "demo", "port": 8081, "state": "started", "release_path": None, "environment_file": ".env",
             "original_port": 8080, "wait": True, "wait_host": "127.0.0.1", "wait_timeout": 5,
             "runtime_dir": str(runtime)}
        p.update(params)
        return A.ensure(p, A.Systemctl(fake), check, probe=probe, sleep=lambda s: None)

    run.fake, run.tmp, run.probes = fake, tmp_path, probes
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


def test_drop_in_content_escapes_and_resets_environment_file():
    text = A.drop_in_content("/srv/100%/releases/v1", ".env")
    assert text.splitlines()[1:] == [
        "[Service]",
        "WorkingDirectory=/srv/100%%/releases/v1",
        "EnvironmentFile=",
        "EnvironmentFile=-/srv/100%%/releases/v1/.env",
        'Environment="HITLESS_RELEASE=v1"',
    ]
    assert A.pinned_to(text) == "/srv/100%/releases/v1"


def test_started_pinned_through_symlink_uses_real_path(env):
    res = _converge(env, release_path=str(env.tmp / "srv" / "current"))
    real = str(env.tmp / "srv" / "releases" / "v1")
    assert res["pinned_to"] == real and res["active_state"] == "active" and res["main_pid"] == 4242
    assert res["actions"] == ["write", "daemon-reload", "start"]
    assert "WorkingDirectory=%s\n" % real in env.drop_in.read_text()
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


def test_unit_dying_while_waiting_fails_with_journal(env):
    env.fake.on_start = lambda unit: "failed"
    with pytest.raises(A.InstanceError) as err:
        env(probe=lambda host, port: False)
    assert "died" in err.value.msg and "boom" in err.value.msg
    assert err.value.unit_state["ActiveState"] == "failed"


def test_wait_times_out_naming_wait_timeout(env):
    now = [0.0]

    def clock():
        now[0] += 1.0
        return now[0]

    sysd = A.Systemctl(env.fake)
    env.fake.state("demo@8081.service").update(ActiveState="active")
    with pytest.raises(A.InstanceError) as err:
        A.wait_ready(sysd, "demo@8081.service", "127.0.0.1", 8081, 5, probe=lambda h, p: False,
                     sleep=lambda s: None, clock=clock)
    assert err.value.param == "wait_timeout"
    assert 4 <= now[0] <= 8


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
