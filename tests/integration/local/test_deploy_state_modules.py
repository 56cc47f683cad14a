"""deploy_lock, deploy_lock_info, deploy_journal and deploy_journal_info run for real (ansible
CLI, local connection) against temp dirs: the writers in check mode, applied, checked again and
applied again; the readers see what the writers left and never change anything.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _ansible import run_module  # noqa: E402


def test_the_lock_is_read_as_it_was_taken_and_left(tmp_path):
    lock_dir = str(tmp_path / "locks")
    take = {"backend": "demo", "deploy_id": "d1", "host": "app1", "hosts": ["app1", "app2"],
            "lock_dir": lock_dir, "holder": {"release": "v2"}}
    info = {"backend": "demo", "lock_dir": lock_dir}

    free = run_module("deploy_lock_info", info)
    assert not free.failed and not free.changed and free["lock"] is None, free
    assert not os.path.exists(lock_dir)

    checked = run_module("deploy_lock", take, check=True, diff=True)
    assert checked.changed and not os.path.exists(lock_dir), checked
    taken = run_module("deploy_lock", take, diff=True)
    assert taken.changed and taken["lock"]["hosts"] == ["app1", "app2"], taken
    # Each ansible run is a run of its own: entering again with the same deploy id (a re-run
    # that resumes) makes that run answer for the host, with the same hosts listed.
    again = run_module("deploy_lock", take)
    assert not again.failed and again["lock"]["hosts"] == ["app1", "app2"], again
    assert again["lock"]["entered_by"]["app1"] != taken["lock"]["entered_by"]["app1"], again

    held = run_module("deploy_lock_info", info, check=True)
    assert not held.changed and held["lock"]["deploy_id"] == "d1", held
    assert held["lock"]["holder"]["release"] == "v2", held

    refused = run_module("deploy_lock", dict(take, deploy_id="d2"))
    assert refused.failed and refused["param"] == "deploy_id", refused
    assert "locked by another rollout" in refused["msg"], refused

    for host in ("app1", "app2"):
        left = run_module("deploy_lock", dict(take, host=host, state="released"))
        assert left.changed, left
    assert run_module("deploy_lock_info", info)["lock"] is None


def test_bad_input_to_the_readers_names_the_parameter(tmp_path):
    bad = run_module("deploy_lock_info", {"backend": "de mo", "lock_dir": str(tmp_path)})
    assert bad.failed and bad["param"] == "backend", bad
    gone = run_module("deploy_lock_info", {"backend": "demo", "state": "info"})
    assert gone.failed and "state" in gone["msg"], gone
    assert not os.listdir(str(tmp_path))


def test_the_journal_is_read_as_it_was_written(tmp_path):
    root = tmp_path / "srv"
    (root / "releases" / "v1").mkdir(parents=True)
    os.symlink("releases/v1", str(root / "current"))
    step = {"root": str(root), "state": "step", "step": "clone", "deploy_id": "d1",
            "data": {"release": "v2", "serving_release": "v1"}}
    read = {"root": str(root), "name": "demo", "ports": []}

    before = run_module("deploy_journal_info", read)
    assert not before.failed and not before.changed, before
    assert before["journal"] is None and before["host"]["current"] == "v1", before

    assert run_module("deploy_journal", step, check=True, diff=True).changed
    assert not (root / ".hitless").exists()
    written = run_module("deploy_journal", step, diff=True)
    assert written.changed and written["journal"]["step"] == "clone", written

    opened = run_module("deploy_journal_info", read, check=True)
    assert not opened.changed and opened["journal"]["deploy_id"] == "d1", opened
    assert opened["journal"]["release"] == "v2" and opened["last"] is None, opened

    done = {"root": str(root), "state": "done", "deploy_id": "d1", "outcome": "deployed"}
    assert run_module("deploy_journal", done, check=True).changed
    assert run_module("deploy_journal", done).changed
    assert not run_module("deploy_journal", done, check=True).changed
    assert not run_module("deploy_journal", done).changed

    closed = run_module("deploy_journal_info", read)
    assert closed["journal"] is None and closed["last"]["outcome"] == "deployed", closed

    # The writer no longer reads: state is required and info is not one of its states.
    for args in ({"root": str(root)}, dict(read, state="info")):
        refused = run_module("deploy_journal", args)
        assert refused.failed and "state" in refused["msg"], refused
