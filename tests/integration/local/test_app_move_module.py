"""app_move through the real ansible CLI (local connection) on a temporary release tree: the
parts that need no systemd (journal, link, close) in check mode, applied, checked again and
applied again; bad options refused before any part runs. The instance part runs in the lab,
where the rolling role starts, restarts and removes instances through it."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _ansible import run_module  # noqa: E402


def release_tree(tmp_path):
    for name in ("v1", "v2"):
        (tmp_path / "releases" / name).mkdir(parents=True)
    return str(tmp_path)


def test_the_link_moves_in_check_mode_then_for_real_then_not_again(tmp_path):
    root = release_tree(tmp_path)
    args = {"link": {"root": root, "name": "v2", "keep": 5}}
    checked = run_module("hitless.deploy.app_move", args, check=True, diff=True)
    assert not checked.failed and checked.changed, checked
    assert not os.path.lexists(os.path.join(root, "current"))
    applied = run_module("hitless.deploy.app_move", args, diff=True)
    assert not applied.failed and applied.changed, applied
    assert os.readlink(os.path.join(root, "current")) == "releases/v2"
    for check in (True, False):
        again = run_module("hitless.deploy.app_move", args, check=check)
        assert not again.failed and not again.changed, again


def test_the_journal_opens_first_and_closes_last(tmp_path):
    root = release_tree(tmp_path)
    journal = os.path.join(root, ".hitless", "journal.json")
    opened = run_module("hitless.deploy.app_move", {
        "journal": {"root": root, "deploy_id": "d1", "step": "clone", "data": {"release": "v2"}},
        "link": {"root": root, "name": "v2"}})
    assert not opened.failed and os.path.exists(journal), opened
    assert list(opened["parts"]) == ["journal", "link"], opened
    closed = run_module("hitless.deploy.app_move", {
        "close": {"root": root, "deploy_id": "d1", "outcome": "deployed"}})
    assert not closed.failed and not os.path.exists(journal), closed
    assert closed["parts"]["close"]["last"]["outcome"] == "deployed", closed


def test_bad_options_name_the_part_and_change_nothing(tmp_path):
    root = release_tree(tmp_path)
    bad = run_module("hitless.deploy.app_move", {
        "link": {"root": root, "name": "v2"},
        "instance": {"name": "demo", "port": 8081, "colour": "red"}})
    assert bad.failed and bad["part"] == "instance" and "colour" in bad["msg"], bad
    assert not os.path.lexists(os.path.join(root, "current"))
    missing = run_module("hitless.deploy.app_move", {"link": {"root": root}})
    assert missing.failed and missing["part"] == "link" and "name" in missing["msg"], missing
    assert sorted(os.listdir(root)) == ["releases"]
