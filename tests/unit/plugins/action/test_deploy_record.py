import json
import os
import stat

import pytest

from ansible_collections.hitless.deploy.plugins.action.deploy_record import (
    build_record, mark_steps, write_record)

ARGS = {"release": "v2", "from_release": "v1", "outcome": "deployed", "repaired": "",
        "deploy_id": "d1", "failure": {}, "clone_lifetime": 6.25, "canary": {},
        "marks": [{"step": "clone", "at": 100.0}, {"step": "route_back", "at": "104.5"}]}


def test_each_step_lasts_until_the_next_mark_and_the_last_until_the_end():
    steps = mark_steps([{"step": "a", "at": 1.0}, {"step": "b", "at": 3.25}], 4.0)
    assert steps == [{"step": "a", "seconds": 2.25}, {"step": "b", "seconds": 0.75}]
    assert mark_steps([], 4.0) == []


def test_the_record_carries_the_marks_as_numbers_and_the_first_as_its_start():
    record = build_record("app1", ARGS, 106.0)
    assert record["host"] == "app1" and record["outcome"] == "deployed"
    assert record["started_at"] == 100.0 and record["marks"][1]["at"] == 104.5
    assert record["steps"] == [{"step": "clone", "seconds": 4.5},
                               {"step": "route_back", "seconds": 1.5}]
    assert record["clone_lifetime"] == 6.25


def test_a_record_without_marks_has_no_start_and_no_steps():
    record = build_record("app1", dict(ARGS, marks=[], clone_lifetime=None), 1.0)
    assert record["started_at"] is None and record["steps"] == [] and record["clone_lifetime"] is None


def test_a_mark_without_a_step_is_refused():
    with pytest.raises(ValueError, match="marks: item 0 has no step"):
        build_record("app1", dict(ARGS, marks=[{"at": 1.0}]), 2.0)


def test_the_record_is_written_whole_with_its_modes(tmp_path):
    dest = str(tmp_path / "records")
    record = build_record("app1", ARGS, 106.0)
    path = write_record(dest, "app1", record)
    assert path == os.path.join(dest, "app1.json")
    with open(path) as handle:
        text = handle.read()
    assert text.endswith("}\n") and json.loads(text) == record
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(dest).st_mode) & 0o755 == 0o755
    # Written again, the file is replaced and no temporary file is left beside it.
    write_record(dest, "app1", dict(record, outcome="failed"))
    assert os.listdir(dest) == ["app1.json"]
    with open(path) as handle:
        assert json.load(handle)["outcome"] == "failed"
