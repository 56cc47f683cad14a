import re

import pytest

from ansible_collections.hitless.deploy.plugins.module_utils import _canary as canary


class Server(object):
    """HAProxy's counters of one server, kept as HAProxy keeps them (integer swrate_add)."""

    def __init__(self):
        self.responses = self.errors = self.selected = self.failed_checks = 0
        self.sum = 0

    def answer(self, ms, status=200, n=1):
        for _answer in range(n):
            self.selected += 1
            self.responses += 1
            self.errors += status >= 500
            self.sum = self.sum - (self.sum + canary.SAMPLES - 1) // canary.SAMPLES + ms
        return self

    def read(self):
        window = min(self.selected, canary.SAMPLES) or 1
        return {"responses": self.responses, "errors": self.errors, "selected": self.selected,
                "rtime": (self.sum + window - 1) // window, "ttime": 0,
                "failed_checks": self.failed_checks}


def test_window_mean_from_haproxys_moving_average():
    server = Server().answer(2, n=5000)
    before = server.read()
    server.answer(300, n=120)
    mean = canary.window_mean_rtime(before, server.read(), 120)
    # HAProxy's rtime alone says about 60 ms (the old answers weigh in); the window was 300.
    assert server.read()["rtime"] < 80
    assert 285 <= mean <= 315


def test_window_of_a_young_server_and_of_nothing():
    server = Server().answer(10, n=40)
    before = server.read()
    server.answer(10, n=60)
    assert 5 <= canary.window_mean_rtime(before, server.read(), 60) <= 15
    assert canary.window_mean_rtime(before, before, 0) is None


def test_counters_that_went_down_count_from_zero():
    old = Server().answer(5, n=1000).read()
    new = Server().answer(5, status=500, n=10).read()
    window = canary.server_window(old, new)
    assert (window["responses"], window["errors"]) == (10, 10)


def reads(**servers):
    return {"lb1": {name: server.read() for name, server in servers.items()}}


def bake(canary_ms=2, canary_status=lambda i: 200, n=400, peers_ms=2):
    app1, app2, app3 = Server().answer(2, n=2000), Server().answer(2, n=2000), Server().answer(2, n=2000)
    start = reads(app1=app1, app2=app2, app3=app3)
    for i in range(n):
        app1.answer(canary_ms, canary_status(i))
        app2.answer(peers_ms)
        app3.answer(peers_ms)
    return start, reads(app1=app1, app2=app2, app3=app3)


def test_a_good_canary_passes():
    start, end = bake()
    result = canary.judge(start, end, "app1", ["app2", "app3"])
    assert result["verdict"] == "pass", result
    assert result["reference_kind"] == "peers" and result["reference"]["responses"] == 800
    assert result["message"].startswith("app1 passed: 5xx 0.0 % of 400 responses")


def test_a_flaky_canary_fails_naming_its_figures():
    start, end = bake(canary_status=lambda i: 500 if i % 5 == 4 else 200, n=1830)
    result = canary.judge(start, end, "app1", ["app2", "app3"])
    assert result["verdict"] == "fail"
    assert result["message"] == "5xx 20.0 % of 1,830 responses on app1, peers 0.0 %, limit 1.0 %"


def test_a_slow_canary_fails_on_response_time():
    start, end = bake(canary_ms=300, n=200)
    result = canary.judge(start, end, "app1", ["app2", "app3"])
    assert result["verdict"] == "fail"
    (reason,) = result["reasons"]
    assert re.match(r"response time (29\d|30\d) ms on app1, peers 2 ms, limit 52 ms$", reason), reason


def test_the_limit_follows_the_peers():
    # A dependency failing for everyone is not the canary's fault.
    start, end = bake(canary_status=lambda i: 500 if i % 10 == 0 else 200, n=500)
    for name in ("app2", "app3"):
        end["lb1"][name]["errors"] += 50
    assert canary.judge(start, end, "app1", ["app2", "app3"])["verdict"] == "pass"


def test_failed_checks_fail_the_canary():
    start, end = bake()
    end["lb1"]["app1"]["failed_checks"] += 2
    result = canary.judge(start, end, "app1", ["app2", "app3"])
    assert result["reasons"] == ["2 failed health checks on app1, limit 0"]


def test_too_few_responses_is_said_plainly():
    start, end = bake(n=10)
    result = canary.judge(start, end, "app1", ["app2", "app3"])
    assert result["verdict"] == "too_few"
    assert result["message"] == ("too few responses for a verdict: 10 on app1 during the bake, "
                                 "at least 50 needed (rolling_bake_min_responses)")


def test_alone_the_canary_is_judged_against_itself_before_the_deploy():
    app1 = Server().answer(2, n=3000)
    before = reads(app1=app1)
    start = reads(app1=app1.answer(2, n=5))
    end = reads(app1=app1.answer(300, n=200))
    result = canary.judge(start, end, "app1", [], before=before)
    assert result["reference_kind"] == "before"
    assert result["verdict"] == "fail" and "before the deploy 2 ms" in result["message"]
    nothing = canary.judge(start, end, "app1", [], before={})
    assert nothing["reference_kind"] == "none" and nothing["verdict"] == "pass"
    assert "judged against the limits alone" in nothing["message"]


def test_two_haproxy_hosts_are_summed():
    a1, b1 = Server().answer(2, n=1000), Server().answer(2, n=1000)
    a2, b2 = Server().answer(2, n=1000), Server().answer(2, n=1000)
    start = {"lb1": {"app1": a1.read(), "app2": a2.read()}, "lb2": {"app1": b1.read(), "app2": b2.read()}}
    a1.answer(2, 500, n=40).answer(2, n=60)
    b1.answer(2, n=100)
    a2.answer(2, n=100)
    b2.answer(2, n=100)
    end = {"lb1": {"app1": a1.read(), "app2": a2.read()}, "lb2": {"app1": b1.read(), "app2": b2.read()}}
    result = canary.judge(start, end, "app1", ["app2"])
    assert result["canary"]["responses"] == 200 and result["canary"]["errors"] == 40
    assert result["reasons"][0].startswith("5xx 20.0 % of 200 responses on app1")


@pytest.mark.parametrize("limit, verdict", [(25.0, "pass"), (1.0, "fail")])
def test_limits_are_variables(limit, verdict):
    start, end = bake(canary_status=lambda i: 500 if i % 5 == 4 else 200)
    assert canary.judge(start, end, "app1", ["app2"], limits={"max_5xx_excess": limit})["verdict"] == verdict
