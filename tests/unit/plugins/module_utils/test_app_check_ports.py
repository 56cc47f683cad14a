"""app_check's several instances (ports): validation, side-by-side runs and the combined result."""
import threading

import pytest

from ansible_collections.hitless.deploy.plugins.module_utils._app_check import (
    CheckError,
    check_result,
    instances_result,
    parse_checks,
    parse_ports,
    parse_settings,
    run_rounds,
    run_side_by_side,
)

SETTINGS = parse_settings({"deadline": 60, "interval": 1, "initial_delay": 0, "retries": None,
                           "require_consecutive": 1})
HEALTH = [{"name": "health", "http": {"path": "/health"}}]


def check_list(port):
    return parse_checks({"port": port, "checks": HEALTH})


def outcome(passed, elapsed=1.0, rounds=1):
    return {"passed": passed, "rounds": rounds, "consecutive": 1 if passed else 0, "elapsed": elapsed,
            "reason": None if passed else "deadline", "cut_short": False}


def test_ports_are_parsed_in_order():
    assert parse_ports({"ports": [8080, 8082]}) == [8080, 8082]


def test_without_ports_the_single_port_is_the_one_instance():
    assert parse_ports({"port": 8080, "ports": None}) == [8080]
    assert parse_ports({}) == [None]


@pytest.mark.parametrize("params, param, text", [
    ({"ports": [8080, 8080]}, "ports[1]", "listed twice"),
    ({"ports": [8080, 70000]}, "ports[1]", "70000"),
    ({"ports": [8080], "port": 8080}, "ports", "mutually exclusive"),
])
def test_bad_ports_are_refused_naming_the_parameter(params, param, text):
    with pytest.raises(CheckError) as error:
        parse_ports(params)
    assert error.value.param == param
    assert text in error.value.msg


def test_instances_run_at_the_same_time():
    # Each run waits for the other at a barrier: run one after the other, the first would time
    # out there and its instance would fail.
    barrier = threading.Barrier(2, timeout=10)

    def run(checks, settings):
        barrier.wait()
        return outcome(True)

    outcomes = run_side_by_side([check_list(8080), check_list(8082)], SETTINGS, run=run)
    assert [each["passed"] for each in outcomes] == [True, True]


def test_a_run_that_raises_fails_its_instance_only():
    def run(checks, settings):
        if "8082" in checks[0].target:
            raise ValueError("boom")
        return outcome(True)

    outcomes = run_side_by_side([check_list(8080), check_list(8082)], SETTINGS, run=run)
    assert outcomes[0]["passed"] is True
    assert outcomes[1]["passed"] is False
    assert outcomes[1]["error"] == "ValueError: boom"


def test_one_instance_runs_without_a_thread():
    seen = []

    def run(checks, settings):
        seen.append(threading.current_thread())
        return outcome(True)

    run_side_by_side([check_list(8080)], SETTINGS, run=run)
    assert seen == [threading.main_thread()]


def test_one_port_returns_what_a_single_instance_always_returned():
    checks = check_list(8080)
    result = instances_result([8080], [checks], SETTINGS, [outcome(True)])
    assert result == dict(check_result(checks, SETTINGS, outcome(True)), passed=True)
    assert "instances" not in result


def test_several_ports_name_each_failing_instance_and_carry_every_check():
    lists = [check_list(8080), check_list(8082)]
    probes = {"http": lambda spec, timeout: None if "8080" in spec["url"] else "status 503"}
    clock = iter(range(1000)).__next__  # each read of the clock one second later
    outcomes = [run_rounds(checks, parse_settings({"deadline": 5, "interval": 0}), probes=probes,
                           clock=clock, sleep=lambda seconds: None) for checks in lists]
    result = instances_result([8080, 8082], lists, SETTINGS, outcomes)
    assert result["passed"] is False
    assert result["msg"].startswith("on 8082: post_start checks failed")
    assert "status 503" in result["msg"] and "on 8080" not in result["msg"]
    assert [(each["port"], each["passed"]) for each in result["instances"]] == [(8080, True), (8082, False)]
    assert [(each["port"], each["passed"]) for each in result["results"]] == [(8080, True), (8082, False)]
    assert result["rounds"] == max(each["rounds"] for each in outcomes)


def test_several_ports_all_passing_say_so_for_each():
    result = instances_result([8080, 8082], [check_list(8080), check_list(8082)], SETTINGS,
                              [outcome(True, 0.5), outcome(True, 1.5)])
    assert result["passed"] is True
    assert result["msg"].startswith("on 8080: all 1 check passed") and "; on 8082: all 1 check passed" in result["msg"]
    assert result["elapsed"] == 1.5


def test_an_instance_whose_run_raised_says_why():
    failing = {"passed": False, "rounds": 0, "consecutive": 0, "elapsed": 0.0,
               "reason": "error", "error": "ValueError: boom", "cut_short": False}
    result = instances_result([8080, 8082], [check_list(8080), check_list(8082)], SETTINGS,
                              [outcome(True), failing])
    assert result["msg"] == "on 8082: post_start checks failed: ValueError: boom"
