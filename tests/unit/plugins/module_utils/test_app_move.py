"""app_move runs the parts of one move in order and names the part that failed. The journal,
link and close parts work on real files in a temporary root; the instance part gets a fake
systemctl, since only the order and the failure's attribution are under test here (the lab's
rolling tests run it for real)."""
import os

import pytest

from ansible_collections.hitless.deploy.plugins.module_utils._app_instance import Systemctl
from ansible_collections.hitless.deploy.plugins.module_utils._app_move import (
    MoveError, plan, run)


def no_systemctl(argv):
    raise AssertionError("systemctl must not be called: %s" % argv)


def no_template(argv):
    # The unit is unknown (`show` answers, inactive) and `cat demo@.service` finds no template.
    if argv[1] == "show":
        return (0, "ActiveState=inactive\nSubState=dead\n", "")
    return (1, "", "No files found for demo@.service.")


def tree(tmp_path, *releases):
    for name in releases:
        (tmp_path / "releases" / name).mkdir(parents=True)
    return str(tmp_path)


def journal(root):
    return os.path.join(root, ".hitless", "journal.json")


def test_journal_link_and_close_run_in_order_in_one_call(tmp_path):
    root = tree(tmp_path, "v1", "v2")
    result = run({"journal": {"root": root, "deploy_id": "d1", "step": "clone",
                              "data": {"release": "v2"}},
                  "link": {"root": root, "name": "v2"},
                  "close": {"root": root, "deploy_id": "d1", "outcome": "deployed"}},
                 Systemctl(no_systemctl), False)
    assert result["changed"] and list(result["parts"]) == ["journal", "link", "close"]
    assert os.readlink(os.path.join(root, "current")) == "releases/v2"
    assert not os.path.exists(journal(root))
    assert result["parts"]["close"]["last"]["outcome"] == "deployed"


def test_a_failing_instance_names_its_part_after_the_journal_was_written(tmp_path):
    root = tree(tmp_path, "v1")
    with pytest.raises(MoveError) as failed:
        run({"journal": {"root": root, "deploy_id": "d1", "step": "clone"},
             "instance": {"name": "demo", "port": 8081, "original_port": 8080},
             "close": {"root": root, "deploy_id": "d1"}},
            Systemctl(no_template), False)
    error = failed.value
    assert error.part == "instance" and error.param == "name", error.msg
    # Part, then parameter, as app_instance names its parameter.
    assert error.msg.startswith("instance: name: ") and "does not exist" in error.msg
    assert set(error.result) >= {"active_state", "sub_state"}
    # Written before the instance was touched, and not closed: a repair will find it.
    assert os.path.exists(journal(root)) and list(error.result["parts"]) == ["journal"]


def test_check_mode_changes_nothing_and_runs_no_check(tmp_path):
    root = tree(tmp_path, "v1", "v2")
    result = run({"journal": {"root": root, "deploy_id": "d1", "step": "clone"},
                  "link": {"root": root, "name": "v2"},
                  "checks": {"checks": [{"tcp": {"port": 1}}], "port": 1}},
                 Systemctl(no_systemctl), True)
    assert result["changed"] and result["parts"]["checks"]["skipped"]
    assert not os.path.exists(journal(root)) and not os.path.lexists(os.path.join(root, "current"))


@pytest.mark.parametrize("params, part, words", [
    ({"link": {"root": "/srv/demo"}}, "link", "name"),
    ({"instance": {"name": "demo", "port": 8081, "colour": "red"}}, "instance", "colour"),
    ({"journal": "clone"}, "journal", "dictionary"),
    ({"checks": {"checks": [{"http": {"path": "/"}}], "deadline": "soon"}}, "checks", "deadline"),
    ({}, "move", "at least one"),
])
def test_bad_options_are_refused_naming_the_part_before_anything_runs(tmp_path, params, part, words):
    with pytest.raises(MoveError) as refused:
        plan(dict({p: None for p in ("journal", "link", "instance", "checks", "close")}, **params))
    assert refused.value.part == part and words in refused.value.msg, refused.value.msg


def test_checks_default_to_the_instance_port():
    parts = dict(plan({"journal": None, "link": None, "close": None,
                       "instance": {"name": "demo", "port": 8081},
                       "checks": {"checks": [{"http": {"path": "/health"}}]}}))
    assert parts["checks"]["port"] == 8081 and parts["instance"]["state"] == "started"
