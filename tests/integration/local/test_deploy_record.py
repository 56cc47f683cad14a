"""deploy_record runs for real (ansible CLI, local connection): the record is returned, published
as a custom stat and written where dest says, the same in check mode, and bad input names the
parameter and writes nothing."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _ansible import run_module  # noqa: E402

MARKS = [{"step": "clone", "at": 1764700000.0}, {"step": "route_back", "at": 1764700004.5}]


def test_the_record_is_returned_and_written_in_check_mode_too(tmp_path):
    dest = tmp_path / "records"
    args = {"release": "v2", "from_release": "v1", "outcome": "deployed", "marks": MARKS,
            "clone_lifetime": 6.5, "dest": str(dest)}
    for check in (True, False):
        result = run_module("deploy_record", args, check=check)
        assert not result.failed and not result.changed, result
        record = result["record"]
        assert record["host"] == "localhost" and record["release"] == "v2", record
        assert [s["step"] for s in record["steps"]] == ["clone", "route_back"], record
        assert record["steps"][0]["seconds"] == 4.5, record
        assert result["ansible_stats"]["data"]["hitless_rolling"]["localhost"] == record, result
        with open(result["path"]) as handle:
            assert json.load(handle) == record
    assert os.listdir(str(dest)) == ["localhost.json"]


def test_bad_input_names_the_parameter_and_writes_nothing(tmp_path):
    dest = tmp_path / "records"
    bad = run_module("deploy_record", {"release": "v2", "outcome": "fine", "dest": str(dest)})
    assert bad.failed and "outcome" in bad["msg"], bad
    no_step = run_module("deploy_record", {"release": "v2", "outcome": "deployed",
                                           "marks": [{"at": 1.0}], "dest": str(dest)})
    assert no_step.failed and "marks: item 0 has no step" in no_step["msg"], no_step
    assert not dest.exists()
