import json
import os

import pytest

from ansible_collections.hitless.deploy.plugins.module_utils import _journal
from ansible_collections.hitless.deploy.plugins.module_utils._journal import (
    JournalError, read, run)


def params(root, **kw):
    base = {"root": str(root), "name": "demo", "state": "step", "deploy_id": "d1",
            "step": "clone", "data": {"release": "v2", "serving_release": "v1"},
            "outcome": "done", "replace": False, "ports": []}
    base.update(kw)
    return base


def no_show(unit):
    raise AssertionError("systemctl must not be called")


def test_steps_accumulate_and_are_written_atomically(tmp_path):
    run(params(tmp_path), False, clock=lambda: 1.0)
    result = run(params(tmp_path, step="route_to_clone", data={}), False, clock=lambda: 2.0)
    journal = json.load(open(os.path.join(str(tmp_path), ".hitless", "journal.json")))
    assert journal == result["journal"]
    assert journal["step"] == "route_to_clone" and journal["release"] == "v2"
    assert [s["step"] for s in journal["steps"]] == ["clone", "route_to_clone"]
    assert not [n for n in os.listdir(os.path.join(str(tmp_path), ".hitless")) if ".tmp-" in n]


def test_another_deploys_open_journal_is_refused(tmp_path):
    run(params(tmp_path), False)
    with pytest.raises(JournalError) as err:
        run(params(tmp_path, deploy_id="d2"), False)
    assert err.value.param == "deploy_id" and "still open" in err.value.msg
    assert run(params(tmp_path, deploy_id="d2", replace=True), False)["journal"]["deploy_id"] == "d2"


def test_done_moves_the_journal_to_last(tmp_path):
    run(params(tmp_path), False)
    result = run(params(tmp_path, state="done", outcome="deployed"), False)
    assert result["journal"] is None and result["last"]["outcome"] == "deployed"
    assert not os.path.exists(os.path.join(str(tmp_path), ".hitless", "journal.json"))
    again = run(params(tmp_path, state="done"), False)
    assert not again["changed"]


def test_check_mode_writes_nothing(tmp_path):
    assert run(params(tmp_path), True)["changed"]
    assert not os.path.exists(os.path.join(str(tmp_path), ".hitless"))


def test_info_reports_links_and_instances(tmp_path, monkeypatch):
    root = tmp_path / "srv"
    (root / "releases" / "v1").mkdir(parents=True)
    os.symlink("releases/v1", str(root / "current"))
    monkeypatch.setattr(_journal, "listeners", lambda port, proc: [
        {"pid": 7, "cmdline": "python3 stray.py", "unit": "stray.service"}] if port == 8081 else [])
    monkeypatch.setattr(_journal, "process_cwd", lambda pid, proc, releases: str(root / "releases" / "v1"))
    shows = {"demo@8080.service": {"ActiveState": "active", "MainPID": "5",
                                   "TemporaryFileSystem": "%s:ro" % root,
                                   "BindReadOnlyPaths": "%s/current:%s/current:rbind" % (root, root)},
             "demo@8081.service": {"ActiveState": "inactive", "MainPID": "0"}}
    result = read(params(root, ports=[8080, 8081]), shows.__getitem__)
    host = result["host"]
    assert (host["current"], host["previous"], host["current_is_link"]) == ("v1", None, True)
    assert host["instances"]["8080"]["running_release"] == "v1"
    assert host["instances"]["8081"]["running_release"] is None
    assert host["instances"]["8080"]["fixed_view"] and not host["instances"]["8081"]["fixed_view"]
    assert host["instances"]["8081"]["foreign_listeners"] == ["pid 7 (python3 stray.py, unit stray.service)"]
    assert not result["changed"] and result["journal"] is None
    assert (host["releases"], host["bad"]) == (["v1"], {})


def test_a_torn_journal_is_an_error_not_an_empty_one(tmp_path):
    os.makedirs(os.path.join(str(tmp_path), ".hitless"))
    with open(os.path.join(str(tmp_path), ".hitless", "journal.json"), "w") as handle:
        handle.write("{")
    with pytest.raises(JournalError):
        read(params(tmp_path), no_show)


def test_read_reports_the_open_and_the_last_journal(tmp_path):
    run(params(tmp_path), False)
    read_open = read(params(tmp_path), no_show)
    assert read_open["journal"]["step"] == "clone" and read_open["last"] is None
    run(params(tmp_path, state="done", outcome="deployed"), False)
    read_closed = read(params(tmp_path), no_show)
    assert read_closed["journal"] is None and read_closed["last"]["outcome"] == "deployed"
    assert not read_closed["changed"]


def read_ports(tmp_path, monkeypatch, ports, data):
    """The ports ``read`` looked at (in order) with an open journal written with ``data``."""
    monkeypatch.setattr(_journal, "listeners", lambda port, proc: [])
    run(params(tmp_path, data=data), False)
    shown = []
    result = read(params(tmp_path, ports=ports),
                  lambda unit: shown.append(unit) or {"ActiveState": "inactive", "MainPID": "0"})
    assert list(result["host"]["instances"]) == [u.split("@")[1].split(".")[0] for u in shown]
    return [int(port) for port in result["host"]["instances"]]


def test_read_also_looks_at_the_ports_an_open_journal_recorded(tmp_path, monkeypatch):
    instances = [{"port": 8080, "clone_port": 8081, "server": "a-8080", "clone": "a-8080-clone"},
                 {"port": 8082, "clone_port": 8085, "server": "a-8082", "clone": "a-8082-clone"}]
    assert read_ports(tmp_path, monkeypatch, [8080, 8081], {"instances": instances}) == [8080, 8081, 8082, 8085]


def test_read_takes_the_port_of_a_journal_from_before_instances(tmp_path, monkeypatch):
    assert read_ports(tmp_path, monkeypatch, [8080, 8081], {"port": 9000, "clone_port": "9001"}) == [
        8080, 8081, 9000, 9001]


def test_read_of_a_journal_without_ports_looks_at_the_asked_ones_only(tmp_path, monkeypatch):
    assert read_ports(tmp_path, monkeypatch, [8080], {"release": "v2"}) == [8080]
