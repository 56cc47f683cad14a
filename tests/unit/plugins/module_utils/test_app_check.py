"""app_check's validation, response matching and round loop, with fake probes and a fake clock."""
import pytest

from ansible_collections.hitless.deploy.plugins.module_utils._app_check import (
    CheckError,
    evaluate_command,
    evaluate_http,
    parse_checks,
    parse_settings,
    run_rounds,
    summary,
)

SETTINGS = {"deadline": 60, "interval": 1, "initial_delay": 0, "retries": None, "require_consecutive": 1}


class Clock(object):
    """Fake monotonic clock; sleeping and probing advance it."""

    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class Script(object):
    """A fake probe answering from a list (the last answer repeats), taking ``cost`` seconds."""

    def __init__(self, clock, answers, cost=0.0):
        self.clock = clock
        self.answers = list(answers)
        self.cost = cost
        self.calls = []

    def __call__(self, spec, timeout):
        self.calls.append((self.clock.now, timeout))
        self.clock.now += min(self.cost, timeout)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def settings(**kw):
    params = dict(SETTINGS)
    params.update(kw)
    return parse_settings(params)


def checks(*items, **params):
    params.setdefault("port", 8080)
    return parse_checks(dict(params, checks=list(items)))


def run(clock, check_list, probes, **kw):
    conf = settings(**kw)
    outcome = run_rounds(check_list, conf, probes=probes, clock=clock, sleep=clock.sleep)
    return outcome, summary(check_list, conf, outcome)


# ---- parsing ------------------------------------------------------------------------------------

def test_parse_defaults_and_targets():
    http, tcp, cmd = checks(
        {"name": "health", "http": {"path": "/health?full=1"}},
        {"tcp": {}},
        {"command": {"cmd": "pg_isready -h 'a b'"}},
        host="::1",
    )
    assert http.target == "GET http://[::1]:8080/health?full=1"
    assert http.spec["request_path"] == "/health?full=1"
    assert http.spec["status"] == (200,) and http.spec["timeout"] == 5.0
    assert tcp.spec == {"host": "::1", "port": 8080, "timeout": 5.0} and tcp.target == "[::1]:8080"
    assert cmd.spec["argv"] == ["pg_isready", "-h", "a b"] and cmd.spec["rc"] == 0
    assert cmd.target == "pg_isready -h 'a b'"
    assert http.label == "checks[0] 'health' (http GET http://[::1]:8080/health?full=1)"


def test_parse_url_status_list_and_tcp_override():
    http, tcp = checks({"http": {"url": "https://app.example:8443/ready", "status": ["200", 204],
                                 "method": "head"}},
                       {"tcp": {"host": "10.0.0.5", "port": "5432"}}, port=None)
    assert http.spec["host"] == "app.example" and http.spec["port"] == 8443
    assert http.spec["status"] == (200, 204) and http.spec["method"] == "HEAD"
    assert tcp.target == "10.0.0.5:5432"


@pytest.mark.parametrize("items, params, param, words", [
    ([{"grpc": {"port": 1}}], {}, "checks[0].grpc", "unknown check kind"),
    ([{"tcp": {}, "http": {"path": "/"}}], {}, "checks[0]", "2 kinds (http, tcp)"),
    ([{"name": "x"}], {}, "checks[0]", "no check kind"),
    ([{"http": {}}], {}, "checks[0].http.url", "or path with the module option port"),
    ([{"http": {"path": "/health"}}], {"port": None}, "port", "needs the module option port"),
    ([{"http": {"path": "health"}}], {}, "checks[0].http.path", "start with '/'"),
    ([{"http": {"url": "ftp://h/x"}}], {}, "checks[0].http.url", "http:// or https://"),
    ([{"http": {"url": "http://h:99999/"}}], {}, "checks[0].http.url", "bad port"),
    ([{"tcp": {}}], {"port": 70000}, "port", "1-65535"),
    ([{"tcp": {"port": 0}}], {}, "checks[0].tcp.port", "1-65535"),
    ([{"tcp": {}}], {"port": None}, "checks[0].tcp.port", "required"),
    ([{"tcp": {}}, {"http": {"path": "/", "body_regex": "(unclosed"}}], {}, "checks[1].http.body_regex",
     "not a valid regular expression"),
    ([{"http": {"path": "/", "headers": {"X-Version": "[v"}}}], {}, "checks[0].http.headers.X-Version",
     "not a valid regular expression"),
    ([{"http": {"path": "/", "status": 42}}], {}, "checks[0].http.status", "not an HTTP status"),
    ([{"http": {"path": "/", "status": "ok"}}], {}, "checks[0].http.status", "integer"),
    ([{"http": {"path": "/", "method": "DELETE"}}], {}, "checks[0].http.method", "one of"),
    ([{"http": {"path": "/", "timeout": 0}}], {}, "checks[0].http.timeout", "positive"),
    ([{"command": {}}], {}, "checks[0].command.argv", "is required"),
    ([{"command": {"argv": ["a"], "cmd": "a"}}], {}, "checks[0].command.argv", "mutually exclusive"),
    ([{"command": {"cmd": "echo 'open"}}], {}, "checks[0].command.cmd", "cannot be split"),
    ([{"command": {"argv": ["x"], "stdout_regex": "*"}}], {}, "checks[0].command.stdout_regex", "regular"),
    ([], {}, "checks", "non-empty"),
    (["tcp"], {}, "checks[0]", "must be a dict"),
])
def test_invalid_checks_name_the_parameter(items, params, param, words):
    with pytest.raises(CheckError) as info:
        checks(*items, **params)
    assert info.value.param == param
    assert words in info.value.msg and param in info.value.msg


def test_secrets_are_not_echoed_in_errors_or_targets():
    with pytest.raises(CheckError) as info:
        checks({"http": {"url": "http://user:hunter2@127.0.0.1/"}})
    assert "hunter2" not in info.value.msg and info.value.param == "checks[0].http.url"
    with pytest.raises(CheckError) as info:
        checks({"http": {"path": "/", "secret_headers": {"Authorization": "Bearer t0ken\r\nX: y"}}})
    assert "t0ken" not in info.value.msg and info.value.param == "checks[0].http.secret_headers"
    (check,) = checks({"http": {"path": "/", "request_headers": {"Host": "demo"},
                                "secret_headers": {"Authorization": "Bearer t0ken"}}})
    assert check.spec["request_headers"] == {"Host": "demo", "Authorization": "Bearer t0ken"}
    assert "t0ken" not in repr(check.result()) + check.label and "demo" not in repr(check.result())


def test_a_header_given_twice_is_refused():
    with pytest.raises(CheckError) as info:
        checks({"http": {"path": "/", "request_headers": {"authorization": "x"},
                         "secret_headers": {"Authorization": "Bearer t0ken"}}})
    assert info.value.param == "checks[0].http.secret_headers" and "t0ken" not in info.value.msg


@pytest.mark.parametrize("kw, param", [
    ({"deadline": 0}, "deadline"),
    ({"interval": -1}, "interval"),
    ({"deadline": 5, "initial_delay": 5}, "initial_delay"),
    ({"retries": -1}, "retries"),
    ({"require_consecutive": 0}, "require_consecutive"),
    ({"retries": 1, "require_consecutive": 3}, "require_consecutive"),
])
def test_invalid_settings_name_the_parameter(kw, param):
    with pytest.raises(CheckError) as info:
        settings(**kw)
    assert info.value.param == param


# ---- matching -----------------------------------------------------------------------------------

def http_spec(**kw):
    (check,) = checks({"http": dict({"path": "/"}, **kw)})
    return check.spec


def test_http_status_mismatch_reports_status_and_body():
    error = evaluate_http(http_spec(), 503, [], b"broken\n")
    assert error == "status 503, expected 200; body: 'broken\\n'"
    assert evaluate_http(http_spec(status=[200, 503]), 503, [], b"") is None
    long_error = evaluate_http(http_spec(), 500, [], b"x" * 5000)
    assert len(long_error) < 300 and long_error.endswith("...'")


def test_http_body_regex_matches_the_version():
    body = b'{"version": "v2", "host": "app1"}\n'
    assert evaluate_http(http_spec(body_regex='"version": "v2"'), 200, [], body) is None
    error = evaluate_http(http_spec(body_regex='"version": "v3"'), 200, [], body)
    assert error.startswith("body does not match '\"version\": \"v3\"'") and '"v2"' in error


def test_http_headers_match_case_insensitively():
    spec = http_spec(headers={"content-type": "^application/json", "X-Release": "^v2$"})
    headers = [("Content-Type", "application/json"), ("x-release", "v2")]
    assert evaluate_http(spec, 200, headers, b"{}") is None
    assert evaluate_http(spec, 200, headers[:1], b"{}") == "header X-Release missing"
    error = evaluate_http(spec, 200, [("Content-Type", "text/plain"), ("X-Release", "v2")], b"")
    assert error == "header content-type: 'text/plain' does not match '^application/json'"


def test_command_rc_and_stdout():
    (check,) = checks({"command": {"argv": ["x"], "stdout_regex": "^accepting"}})
    assert evaluate_command(check.spec, 0, b"accepting connections\n", b"") is None
    assert evaluate_command(check.spec, 2, b"", b"no response\n") == "rc 2, expected 0; stderr: 'no response'"
    error = evaluate_command(check.spec, 0, b"rejecting\n", b"")
    assert error == "stdout does not match '^accepting'; stdout: 'rejecting\\n'"


# ---- the round loop -----------------------------------------------------------------------------

def test_first_round_passes_without_sleeping():
    clock = Clock()
    outcome, msg = run(clock, checks({"tcp": {}}), {"tcp": Script(clock, [None])})
    assert outcome == {"passed": True, "rounds": 1, "consecutive": 1, "elapsed": 0, "reason": None,
                       "cut_short": False}
    assert clock.sleeps == [] and msg == "all 1 check passed after 1 round in 0s"


def test_passes_after_failures_and_keeps_the_last_error():
    clock = Clock()
    (check,) = checks({"tcp": {}})
    probe = Script(clock, ["connection refused"] * 3 + [None], cost=0.01)
    outcome, _msg = run(clock, [check], {"tcp": probe}, interval=0.5)
    assert outcome["passed"] and outcome["rounds"] == 4
    assert clock.sleeps == [0.5, 0.5, 0.5]
    assert check.result() == {"name": None, "kind": "tcp", "target": "127.0.0.1:8080", "passed": True,
                              "attempts": 4, "failures": 3, "last_error": "connection refused",
                              "elapsed": 0.04}


def test_retries_exhausted():
    clock = Clock()
    check_list = checks({"name": "health", "http": {"path": "/health"}}, {"tcp": {}})
    http = Script(clock, ["status 503, expected 200; body: 'broken'"])
    tcp = Script(clock, [None])
    outcome, msg = run(clock, check_list, {"http": http, "tcp": tcp}, retries=2)
    assert not outcome["passed"] and outcome["reason"] == "retries" and outcome["rounds"] == 3
    assert len(http.calls) == len(tcp.calls) == 3
    assert msg == ("post_start checks failed, retries exhausted (retries=2) after 3 rounds in 2s: "
                   "checks[0] 'health' (http GET http://127.0.0.1:8080/health): "
                   "status 503, expected 200; body: 'broken'")


def test_deadline_is_respected_even_by_hanging_probes():
    clock = Clock()
    start = clock.now
    (check,) = checks({"http": {"path": "/", "timeout": 4}})
    # Each attempt hangs until its timeout runs out.
    probe = Script(clock, ["timed out"], cost=1000)
    outcome, msg = run(clock, [check], {"http": probe}, deadline=10, interval=0.5)
    assert not outcome["passed"] and outcome["reason"] == "deadline"
    # Rounds start at 0, 4.5 and 9; the third only gets the second left before the deadline.
    assert [at - start for at, _timeout in probe.calls] == [0, 4.5, 9]
    assert [t for _at, t in probe.calls] == [4, 4, pytest.approx(1)]
    assert clock.now - start == pytest.approx(10) and outcome["elapsed"] == pytest.approx(10)
    assert msg.startswith("post_start checks failed, deadline of 10s reached after")
    assert "timed out" in msg


def test_deadline_stops_before_a_round_that_could_not_start():
    clock = Clock()
    probe = Script(clock, ["connection refused"], cost=0.1)
    outcome, _msg = run(clock, checks({"tcp": {}}), {"tcp": probe}, deadline=3, interval=1)
    # Rounds at 0, 1.1, 2.2; the next would start at 3.3 > 3.
    assert outcome["rounds"] == 3 and outcome["elapsed"] == pytest.approx(2.3)
    assert clock.sleeps == [1, 1]


def test_timeout_is_cut_to_the_time_left():
    clock = Clock()
    (check,) = checks({"tcp": {"timeout": 5}})
    probe = Script(clock, ["refused"], cost=0.5)
    run(clock, [check], {"tcp": probe}, deadline=7, interval=2)
    timeouts = [t for _at, t in probe.calls]
    assert timeouts == [5, pytest.approx(4.5), pytest.approx(2.0)]


def test_initial_delay_counts_against_the_deadline():
    clock = Clock()
    start = clock.now
    probe = Script(clock, [None])
    outcome, _msg = run(clock, checks({"tcp": {}}), {"tcp": probe}, initial_delay=2.5, deadline=5)
    assert probe.calls[0] == (start + 2.5, 2.5) and outcome["elapsed"] == 2.5


def test_consecutive_passes_are_required():
    clock = Clock()
    probe = Script(clock, [None, "flap", None, None, None, "never reached"])
    outcome, _msg = run(clock, checks({"tcp": {}}), {"tcp": probe}, require_consecutive=3, interval=0.2)
    assert outcome["passed"] and outcome["rounds"] == 5 and outcome["consecutive"] == 3


def test_too_few_consecutive_passes_before_the_deadline():
    clock = Clock()
    (check,) = checks({"tcp": {}})
    probe = Script(clock, ["flap", None], cost=0.1)
    outcome, msg = run(clock, [check], {"tcp": probe}, require_consecutive=5, deadline=2, interval=0.5)
    assert not outcome["passed"] and outcome["consecutive"] == 3
    assert msg.endswith("the last round passed, but 5 consecutive passing round(s) are required, got 3")
    assert check.result()["last_error"] == "flap" and check.result()["passed"]


def test_only_failing_checks_are_named():
    clock = Clock()
    check_list = checks({"name": "ok", "tcp": {}}, {"name": "bad", "command": {"argv": ["false"]}})
    probes = {"tcp": Script(clock, [None]), "command": Script(clock, ["rc 1, expected 0; stderr: ''"])}
    _outcome, msg = run(clock, check_list, probes, retries=0)
    assert "checks[1] 'bad' (command false): rc 1, expected 0" in msg and "'ok'" not in msg


def test_a_probe_that_raises_fails_its_check():
    clock = Clock()

    def broken(spec, timeout):
        raise ValueError("boom")

    (check,) = checks({"tcp": {}})
    outcome, msg = run(clock, [check], {"tcp": broken}, retries=0)
    assert not outcome["passed"] and check.last_error == "probe error: ValueError: boom"
    assert "probe error: ValueError: boom" in msg


def test_a_round_cut_short_by_the_deadline_names_the_checks_left_out():
    clock = Clock()
    check_list = checks({"name": "slow", "http": {"path": "/", "timeout": 30}}, {"name": "port", "tcp": {}})
    probes = {"http": Script(clock, ["timed out after 5s"], cost=1000), "tcp": Script(clock, [None])}
    outcome, msg = run(clock, check_list, probes, deadline=5)
    assert outcome == {"passed": False, "rounds": 1, "consecutive": 0, "elapsed": 5, "reason": "deadline",
                       "cut_short": True}
    assert probes["tcp"].calls == []
    assert msg == ("post_start checks failed, deadline of 5s reached after 1 round in 5s: round 1 was cut "
                   "short by the deadline | checks[0] 'slow' (http GET http://127.0.0.1:8080/): timed out "
                   "after 5s | checks[1] 'port' (tcp 127.0.0.1:8080): not attempted before the deadline")


@pytest.mark.parametrize("interval,cost,starts,sleeps", [(1, 0.5, [0, 1.5], [1]), (0, 1, [0, 1, 2], [0, 0])])
def test_no_round_starts_at_the_deadline(interval, cost, starts, sleeps):
    # The next round would start at 3 s, the deadline, with no time left to probe.
    clock = Clock()
    probe = Script(clock, ["connection refused"], cost=cost)
    outcome, _msg = run(clock, checks({"tcp": {}}), {"tcp": probe}, deadline=3, interval=interval)
    assert [at - 100 for at, _timeout in probe.calls] == starts and clock.sleeps == sleeps
    assert outcome["reason"] == "deadline" and not outcome["cut_short"]
