"""The deploy lock shared by several runs of one rollout: the slices of a sliced AWX job template
share the deploy id (``awx-workflow-<id>``) but each is its own ansible-playbook process on its
own hosts. A slice that finishes or stops leaves with its own hosts only; the lock is free once
no run has a host left."""
import json
import os

import pytest

from ansible_collections.hitless.deploy.plugins.module_utils._deploy_lock import (
    LockError, ensure, lock_path, run_of)

SLICE1 = {"controller": "awx-job-101", "user": "runner", "pid": 20, "pid_start": "7",
          "release": "v3"}
SLICE2 = {"controller": "awx-job-102", "user": "runner", "pid": 20, "pid_start": "7",
          "release": "v3"}


def call(tmp_path, state, host, holder, hosts=(), deploy_id="awx-workflow-100"):
    return ensure({"backend": "demo", "state": state, "deploy_id": deploy_id, "host": host,
                   "hosts": list(hosts), "holder": dict(holder), "takeover_from": None,
                   "lock_dir": str(tmp_path)}, False)


def read(tmp_path):
    path = lock_path(str(tmp_path), "demo")
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def enter_both(tmp_path):
    """Stage of both slices: every host enters (AWX: slice k gets hosts i % 2 == k - 1)."""
    for host in ("app1", "app3"):
        call(tmp_path, "held", host, SLICE1, ["app1", "app3"])
    for host in ("app2", "app4"):
        call(tmp_path, "held", host, SLICE2, ["app2", "app4"])


def test_runs_are_told_apart_by_controller_and_process():
    assert run_of(SLICE1) != run_of(SLICE2)
    assert run_of(dict(SLICE1, release="v9", started=5)) == run_of(SLICE1)
    assert run_of({}) == run_of(None)


def test_a_second_slice_enters_with_all_its_hosts(tmp_path):
    call(tmp_path, "held", "app1", SLICE1, ["app1", "app3"])
    lock = call(tmp_path, "held", "app2", SLICE2, ["app2", "app4"])["lock"]
    assert lock["hosts"] == ["app1", "app3", "app2", "app4"]
    assert lock["entered_by"] == {"app1": run_of(SLICE1), "app3": run_of(SLICE1),
                                  "app2": run_of(SLICE2), "app4": run_of(SLICE2)}
    assert lock["holder"]["controller"] == "awx-job-101"
    assert not call(tmp_path, "held", "app4", SLICE2, ["app2", "app4"])["changed"]
    with pytest.raises(LockError):
        call(tmp_path, "held", "app1", SLICE1, ["app1"], deploy_id="another")


def test_the_slice_that_finishes_first_leaves_the_lock_to_the_other(tmp_path):
    enter_both(tmp_path)
    for host in ("app1", "app3"):
        call(tmp_path, "released", host, SLICE1)
    lock = read(tmp_path)
    assert lock["hosts"] == ["app2", "app4"]
    # The holder named in messages (and checked for being alive) is a run still at work.
    assert lock["holder"]["controller"] == "awx-job-102"
    assert list(lock["holders"]) == [run_of(SLICE2)]
    with pytest.raises(LockError):
        call(tmp_path, "held", "app1", SLICE1, ["app1"], deploy_id="another")
    call(tmp_path, "released", "app2", SLICE2)
    call(tmp_path, "released", "app4", SLICE2)
    assert read(tmp_path) is None


def test_a_slice_that_stops_takes_only_its_own_hosts_out(tmp_path):
    enter_both(tmp_path)
    call(tmp_path, "released", "app2", SLICE2)
    # app4 of slice 2 fails: slice 2 stops (absent); slice 1 still swaps app1 and app3.
    assert call(tmp_path, "absent", "app4", SLICE2)["changed"]
    assert read(tmp_path)["hosts"] == ["app1", "app3"]
    with pytest.raises(LockError) as err:
        call(tmp_path, "held", "app9", {"controller": "ci-7", "pid": 1}, ["app9"],
             deploy_id="another")
    assert "hosts not finished: app1, app3" in err.value.msg
    call(tmp_path, "released", "app1", SLICE1)
    call(tmp_path, "released", "app3", SLICE1)
    assert read(tmp_path) is None


def test_one_run_that_stops_frees_the_lock_with_its_unreached_hosts(tmp_path):
    for host in ("app1", "app2"):
        call(tmp_path, "held", host, SLICE1, ["app1", "app2", "app3"])
    call(tmp_path, "absent", "app1", SLICE1)
    assert read(tmp_path) is None


def test_a_slice_starting_after_the_other_finished_takes_a_fresh_lock(tmp_path):
    call(tmp_path, "held", "app1", SLICE1, ["app1"])
    call(tmp_path, "released", "app1", SLICE1)
    assert read(tmp_path) is None
    call(tmp_path, "held", "app2", SLICE2, ["app2"])
    assert read(tmp_path)["entered_by"] == {"app2": run_of(SLICE2)}
    call(tmp_path, "released", "app2", SLICE2)
    assert read(tmp_path) is None


def test_a_takeover_answers_for_every_host_it_keeps_listed(tmp_path):
    call(tmp_path, "held", "app1", SLICE1, ["app1", "app2"])
    result = ensure({"backend": "demo", "state": "held", "deploy_id": "d2", "host": "app1",
                     "hosts": ["app1"], "holder": dict(SLICE2), "takeover_from": "awx-workflow-100",
                     "lock_dir": str(tmp_path)}, False)
    assert result["took_over_from"] == "awx-workflow-100"
    assert set(read(tmp_path)["entered_by"].values()) == {run_of(SLICE2)}
    call(tmp_path, "absent", "app1", SLICE2, deploy_id="d2")
    assert read(tmp_path) is None


def test_a_lock_written_before_runs_were_recorded_behaves_as_before(tmp_path):
    path = lock_path(str(tmp_path), "demo")
    with open(path, "w") as handle:
        json.dump({"deploy_id": "awx-workflow-100", "holder": SLICE1, "backend": "demo",
                   "hosts": ["app1"], "since": 1, "updated": 1}, handle)
    assert call(tmp_path, "held", "app2", SLICE2, ["app2"])["lock"]["hosts"] == ["app1", "app2"]
    call(tmp_path, "absent", "app2", SLICE2)
    assert read(tmp_path) is None


def test_a_batch_enters_and_leaves_in_one_call_per_haproxy_host(tmp_path):
    # The rolling role: one call for the hosts of a serial batch, not one per app host.
    hosts = ["app1", "app2", "app3", "app4"]
    entered = call(tmp_path, "held", ["app1", "app2"], SLICE1, hosts)
    assert entered["changed"] and entered["lock"]["hosts"] == hosts
    assert not call(tmp_path, "held", ["app3", "app4"], SLICE1, hosts)["changed"]
    left = call(tmp_path, "released", ["app1", "app2"], SLICE1)
    assert left["changed"] and left["lock"]["hosts"] == ["app3", "app4"]
    assert call(tmp_path, "released", ["app3", "app4"], SLICE1)["lock"] is None
    assert read(tmp_path) is None


def test_a_run_that_resumes_answers_for_its_whole_batch(tmp_path):
    # SLICE1's process is gone; a re-run with the same deploy id enters with its batch, so a
    # stop of this run (absent) takes every host of the batch out, not only the first.
    call(tmp_path, "held", ["app1", "app2"], SLICE1, ["app1", "app2", "app3"])
    resumed = call(tmp_path, "held", ["app1", "app2"], SLICE2, ["app1", "app2", "app3"])["lock"]
    assert resumed["entered_by"] == {"app1": run_of(SLICE2), "app2": run_of(SLICE2),
                                     "app3": run_of(SLICE1)}
    assert call(tmp_path, "absent", [], SLICE2)["lock"]["hosts"] == ["app3"]


def test_a_batch_without_hosts_is_refused_naming_host(tmp_path):
    for state in ("held", "released"):
        with pytest.raises(LockError) as refused:
            call(tmp_path, state, [], SLICE1, ["app1"])
        assert refused.value.param == "host"
    assert read(tmp_path) is None
