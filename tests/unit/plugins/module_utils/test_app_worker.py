"""app_worker's plan and refusals against a fake systemctl (the behaviour itself is tested on
real systemd in tests/integration/lab/test_workers.py)."""
import itertools
import os

import pytest

from ansible_collections.hitless.deploy.plugins.module_utils._app_instance import InstanceError
from ansible_collections.hitless.deploy.plugins.module_utils._app_worker import WorkerError, ensure
from ansible_collections.hitless.deploy.plugins.module_utils._pin import pinned_to


class FakeSystemd(object):
    """Units that start on the release their pin names, else on where current points; each
    start gets a new PID whose /proc/PID/cwd is that release. ``dies`` names units that fail
    at start."""

    def __init__(self, tmp_path, root, dies=()):
        self.root, self.proc, self.runtime = root, tmp_path / "proc", tmp_path / "run"
        self.proc.mkdir()
        self.units, self.calls, self.dies = {}, [], set(dies)
        self.pids = itertools.count(100)

    def call(self, *args):
        self.calls.append(" ".join(args))
        if args[0] in ("start", "restart"):
            unit = args[-1]
            if unit in self.dies:
                self.units[unit] = {"ActiveState": "failed", "SubState": "failed", "MainPID": "0"}
                return ""
            pin = self.runtime / (unit + ".d") / "hitless-pin.conf"
            release = pinned_to(pin.read_text()) if pin.exists() else os.path.realpath(str(self.root / "current"))
            pid = next(self.pids)
            (self.proc / str(pid)).mkdir()
            os.symlink(release, str(self.proc / str(pid) / "cwd"))
            self.units[unit] = {"ActiveState": "active", "SubState": "running", "MainPID": str(pid)}
        elif args[0] == "stop":
            self.units[args[-1]] = {"ActiveState": "inactive", "SubState": "dead", "MainPID": "0"}
        return ""

    def show(self, unit):
        props = dict(self.units.get(unit, {"ActiveState": "inactive", "SubState": "dead", "MainPID": "0"}))
        props.update(WorkingDirectory=str(self.root / "current"), NRestarts="0", Result="success")
        return props

    def template_exists(self, name):
        return name == "demo-worker"

    def journal(self, unit, lines=20):
        return "ModuleNotFoundError: No module named 'rq'"


def tree(tmp_path, current, *others):
    root = tmp_path / "srv" / "demo"
    for name in (current,) + others:
        (root / "releases" / name).mkdir(parents=True)
    os.symlink("releases/" + current, str(root / "current"))
    return root


def params(root, release, state, workers=("1", "2"), **kw):
    base = {"unit": "demo-worker", "workers": list(workers), "release_path": str(root / "releases" / release),
            "state": state, "environment_file": ".env", "settle": 0.0, "start_timeout": 5,
            "runtime_dir": None}
    base.update(kw)
    return base


def run(systemd, p, check_mode=False):
    p = dict(p, runtime_dir=str(systemd.runtime))
    return ensure(p, systemd, check_mode, proc=str(systemd.proc), sleep=lambda s: None)


def releases(result):
    return [(w["worker"], w["active_state"], w["running_release"], w["overlap"]["active_state"],
             w["overlap"]["running_release"]) for w in result["workers"]]


def test_a_deploy_overlaps_then_moves_each_worker_and_a_rerun_changes_nothing(tmp_path):
    root = tree(tmp_path, "v1", "v2")
    systemd = FakeSystemd(tmp_path, root)
    for worker in ("1", "2"):
        systemd.call("start", "--", "demo-worker@%s.service" % worker)
    os.unlink(str(root / "current"))
    os.symlink("releases/v2", str(root / "current"))

    overlapped = run(systemd, params(root, "v2", "overlapped"))
    assert overlapped["actions"] == ["start-overlap 1", "start-overlap 2"]
    assert releases(overlapped) == [("1", "active", "v1", "active", "v2"), ("2", "active", "v1", "active", "v2")]

    systemd.calls.clear()
    moved = run(systemd, params(root, "v2", "moved"))
    assert moved["actions"] == ["replace-original 1", "remove-overlap 1", "replace-original 2", "remove-overlap 2"]
    # Each old worker gets SIGTERM only while its overlap on the new release runs.
    assert systemd.calls[:2] == ["stop -- demo-worker@1.service", "start -- demo-worker@1.service"]
    assert releases(moved) == [("1", "active", "v2", "inactive", None), ("2", "active", "v2", "inactive", None)]
    assert not (systemd.runtime / "demo-worker@1-next.service.d" / "hitless-pin.conf").exists()

    again = run(systemd, params(root, "v2", "moved"))
    assert (again["changed"], again["actions"]) == (False, [])


def test_moved_without_an_overlap_starts_one_first(tmp_path):
    root = tree(tmp_path, "v2", "v1")
    systemd = FakeSystemd(tmp_path, root)
    result = run(systemd, params(root, "v2", "moved", workers=["1"]))
    assert result["actions"] == ["start-overlap 1", "replace-original 1", "remove-overlap 1"]
    assert systemd.calls.index("restart -- demo-worker@1-next.service") < systemd.calls.index(
        "stop -- demo-worker@1.service")


def test_check_mode_says_what_it_would_do_and_does_nothing(tmp_path):
    root = tree(tmp_path, "v2", "v1")
    systemd = FakeSystemd(tmp_path, root)
    result = run(systemd, params(root, "v2", "overlapped", workers=["1"]), check_mode=True)
    assert result["changed"] and result["actions"] == ["start-overlap 1"]
    assert systemd.calls == [] and not systemd.runtime.exists()
    assert result["diff"]["after"]["workers"][0]["overlap"]["running_release"] == "v2"


def test_a_worker_that_dies_at_start_fails_naming_it_with_its_log(tmp_path):
    root = tree(tmp_path, "v2", "v1")
    systemd = FakeSystemd(tmp_path, root, dies={"demo-worker@2-next.service"})
    with pytest.raises(WorkerError) as failed:
        run(systemd, params(root, "v2", "overlapped"))
    assert failed.value.worker == "2" and "did not stay up" in failed.value.msg
    assert "No module named 'rq'" in failed.value.msg
    # Nothing of the old release was stopped.
    assert not [c for c in systemd.calls if c.startswith("stop")]


@pytest.mark.parametrize("change, param, words", [
    ({"unit": "demo@worker"}, "unit", "template unit prefix"),
    ({"unit": "shop-worker"}, "unit", "does not exist"),
    ({"workers": []}, "workers", "at least one"),
    ({"workers": ["1", "1"]}, "workers", "twice"),
    ({"workers": ["1-next"]}, "workers", "overlap's suffix"),
    ({"settle": -1.0}, "settle", "settle"),
    ({"release_path": "/nowhere/releases/v9"}, "release_path", "does not exist"),
])
def test_bad_options_are_refused_naming_them_before_anything_runs(tmp_path, change, param, words):
    root = tree(tmp_path, "v2", "v1")
    systemd = FakeSystemd(tmp_path, root)
    with pytest.raises(InstanceError) as refused:
        run(systemd, dict(params(root, "v2", "overlapped"), **change))
    assert refused.value.param == param and words in refused.value.msg, refused.value.msg
    assert systemd.calls == []


def test_moved_refuses_a_release_current_does_not_point_at(tmp_path):
    root = tree(tmp_path, "v1", "v2")
    systemd = FakeSystemd(tmp_path, root)
    with pytest.raises(WorkerError) as refused:
        run(systemd, params(root, "v2", "moved"))
    assert refused.value.param == "release_path" and "point current there first" in refused.value.msg
    assert systemd.calls == []
