import os

from ansible_collections.hitless.deploy.plugins.action.deploy_lock import (
    controller_identity, holder_gone, lock_abandoned, process_start)


def test_this_process_is_alive_and_identified():
    me = controller_identity()
    assert me["pid"] == os.getppid() and me["pid_start"] == process_start(os.getppid())
    assert not holder_gone(dict(me), me)


def test_a_dead_or_recycled_pid_on_this_controller_is_gone(tmp_path):
    me = controller_identity()
    assert holder_gone({"controller": me["controller"], "pid": 2 ** 22 + 7, "pid_start": "1"}, me)
    assert holder_gone(dict(me, pid_start="0"), me)


def test_a_holder_on_another_controller_is_never_proven_gone():
    me = controller_identity()
    assert not holder_gone({"controller": "elsewhere", "pid": 2 ** 22 + 7}, me)
    assert not holder_gone({}, me)


def test_a_lock_of_slices_is_abandoned_only_when_every_slice_is_gone():
    me = controller_identity()
    dead = {"controller": me["controller"], "pid": 2 ** 22 + 7, "pid_start": "1"}
    alive = dict(me)
    assert lock_abandoned({"holder": dead}, me)
    assert lock_abandoned({"holder": dead, "holders": {"a": dead}}, me)
    assert not lock_abandoned({"holder": dead, "holders": {"a": dead, "b": alive}}, me)
    assert not lock_abandoned({"holder": alive, "holders": {"b": alive}}, me)
