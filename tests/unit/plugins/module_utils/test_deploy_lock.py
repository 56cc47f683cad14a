import json
import multiprocessing
import os

import pytest

from ansible_collections.hitless.deploy.plugins.module_utils import _deploy_lock
from ansible_collections.hitless.deploy.plugins.module_utils._deploy_lock import (
    LockError, describe, ensure, lock_path)


def params(tmp_path, **kw):
    base = {"backend": "demo", "state": "held", "deploy_id": "d1", "host": "app1",
            "hosts": ["app1", "app2"], "holder": {"controller": "ctl", "user": "ci", "pid": 42,
                                                  "release": "v2"},
            "takeover_from": None, "lock_dir": str(tmp_path)}
    base.update(kw)
    return base


def read(tmp_path):
    path = lock_path(str(tmp_path), "demo")
    return json.load(open(path)) if os.path.exists(path) else None


def test_first_deploy_takes_the_lock_with_every_host(tmp_path):
    result = ensure(params(tmp_path), False, clock=lambda: 100.0)
    assert result["changed"]
    lock = read(tmp_path)
    assert (lock["deploy_id"], lock["hosts"], lock["since"]) == ("d1", ["app1", "app2"], 100.0)
    assert lock["holder"]["release"] == "v2"


def test_same_deploy_enters_again_without_change(tmp_path):
    ensure(params(tmp_path), False)
    assert not ensure(params(tmp_path), False)["changed"]
    assert ensure(params(tmp_path, host="app3"), False)["lock"]["hosts"] == ["app1", "app2", "app3"]


def test_another_deploy_is_refused_naming_the_holder(tmp_path):
    ensure(params(tmp_path), False)
    with pytest.raises(LockError) as err:
        ensure(params(tmp_path, deploy_id="d2"), False)
    assert err.value.param == "deploy_id"
    assert "locked by another rollout: deploy d1" in err.value.msg
    assert "release v2, controller ctl, user ci, pid 42" in err.value.msg
    assert err.value.lock["deploy_id"] == "d1"
    assert read(tmp_path)["deploy_id"] == "d1"


def test_takeover_keeps_the_unfinished_hosts(tmp_path):
    ensure(params(tmp_path, hosts=["app1", "app2"]), False)
    ensure(params(tmp_path, state="released", host="app1"), False)
    result = ensure(params(tmp_path, deploy_id="d2", host="app3", hosts=["app3"],
                           takeover_from="d1"), False)
    assert result["took_over_from"] == "d1"
    assert read(tmp_path)["hosts"] == ["app2", "app3"]
    assert read(tmp_path)["deploy_id"] == "d2"


def test_takeover_of_another_id_is_still_refused(tmp_path):
    ensure(params(tmp_path), False)
    with pytest.raises(LockError):
        ensure(params(tmp_path, deploy_id="d2", takeover_from="d9"), False)


def test_last_host_leaving_frees_the_lock(tmp_path):
    ensure(params(tmp_path), False)
    ensure(params(tmp_path, state="released", host="app1"), False)
    assert read(tmp_path)["hosts"] == ["app2"]
    ensure(params(tmp_path, state="released", host="app2"), False)
    assert read(tmp_path) is None


def test_release_and_absent_never_touch_another_deploys_lock(tmp_path):
    ensure(params(tmp_path), False)
    assert not ensure(params(tmp_path, deploy_id="d2", state="released"), False)["changed"]
    assert not ensure(params(tmp_path, deploy_id="d2", state="absent"), False)["changed"]
    assert ensure(params(tmp_path, state="absent"), False)["changed"]
    assert read(tmp_path) is None


def test_check_mode_writes_nothing(tmp_path):
    result = ensure(params(tmp_path), True)
    assert result["changed"] and read(tmp_path) is None


def test_reading_the_lock_changes_nothing(tmp_path):
    info = {"backend": "demo", "lock_dir": str(tmp_path)}
    assert _deploy_lock.read(info) == {"changed": False, "lock": None,
                                       "path": lock_path(str(tmp_path), "demo")}
    assert not os.listdir(str(tmp_path))
    ensure(params(tmp_path), False)
    assert _deploy_lock.read(info)["lock"] == read(tmp_path)
    with pytest.raises(LockError) as err:
        _deploy_lock.read(dict(info, backend="de mo"))
    assert err.value.param == "backend"


def test_bad_input_names_the_parameter(tmp_path):
    for kw, param in (({"backend": "de mo"}, "backend"), ({"deploy_id": ""}, "deploy_id"),
                      ({"host": None}, "host")):
        with pytest.raises(LockError) as err:
            ensure(params(tmp_path, **kw), False)
        assert err.value.param == param
    assert not os.listdir(str(tmp_path))


def test_an_unreadable_lock_file_is_held_by_nobody_known(tmp_path):
    with open(lock_path(str(tmp_path), "demo"), "w") as handle:
        handle.write("{half")
    with pytest.raises(LockError) as err:
        ensure(params(tmp_path), False)
    assert "unreadable lock file" in err.value.msg


def _contend(args):
    lock_dir, deploy_id = args
    try:
        ensure({"backend": "demo", "state": "held", "deploy_id": deploy_id, "host": "app1",
                "hosts": ["app1"], "holder": {}, "lock_dir": lock_dir}, False)
        return deploy_id
    except LockError:
        return None


def test_deploys_racing_in_real_processes_have_one_winner(tmp_path):
    with multiprocessing.Pool(8) as pool:
        winners = [w for w in pool.map(_contend, [(str(tmp_path), "d%d" % i) for i in range(16)]) if w]
    assert len(winners) == 1 and read(tmp_path)["deploy_id"] == winners[0]


def test_describe_mentions_unfinished_hosts():
    assert "hosts not finished: app2" in describe({"deploy_id": "d", "hosts": ["app2"], "since": 0})
