# -*- coding: utf-8 -*-
# Copyright: hitless.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""post_start checks of an app instance: HTTP, TCP and command probes run in rounds until every
check passes ``require_consecutive`` rounds in a row, or the retries or the deadline run out.

Stdlib only; runs on the target (Python >= 3.9). :func:`run_rounds` takes the probes, the clock
and the sleep as arguments, so unit tests drive it without a network and without real time.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import http.client
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import threading
import time
from urllib.parse import urlsplit

from ansible_collections.hitless.deploy.plugins.module_utils._deadline import (
    Deadline,
    Retry,
    TimedOut,
    retry_until,
)

KINDS = ("http", "tcp", "command")
HTTP_METHODS = ("GET", "HEAD", "OPTIONS", "POST")
DEFAULT_TIMEOUT = {"http": 5.0, "tcp": 5.0, "command": 30.0}
# A health page is small; the cap keeps a misrouted check (a download, an endless stream) bounded.
MAX_BODY = 1024 * 1024
SNIPPET = 200
# After killing a timed-out command's process group, how long to wait for its pipes to close.
KILL_GRACE = 5.0
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class CheckError(Exception):
    """Invalid input; ``param`` names the option at fault, e.g. ``checks[1].http.body_regex``."""

    def __init__(self, msg, param=None):
        super(CheckError, self).__init__(msg)
        self.msg = msg
        self.param = param


def snippet(text, limit=SNIPPET):
    text = text if len(text) <= limit else text[:limit] + "..."
    return repr(text)


def _text(data):
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else (data or "")


def _number(value, param, positive=True):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CheckError("%s must be a number of seconds, got %r" % (param, value), param)
    if number < 0 or (positive and number == 0):
        raise CheckError("%s must be %s, got %r" % (param, "positive" if positive else ">= 0", value), param)
    return number


def _integer(value, param):
    if isinstance(value, bool):
        raise CheckError("%s must be an integer, got %r" % (param, value), param)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CheckError("%s must be an integer, got %r" % (param, value), param)


def _port(value, param):
    port = _integer(value, param)
    if not 1 <= port <= 65535:
        raise CheckError("%s must be in 1-65535, got %d" % (param, port), param)
    return port


def _regex(value, param):
    if value is None:
        return None
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise CheckError("%s must be a regular expression string" % param, param)
    try:
        return re.compile(str(value))
    except re.error as e:
        raise CheckError("%s is not a valid regular expression (%r): %s" % (param, str(value), e), param)


def _host_port(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


class Check(object):
    """One configured check and what its attempts found."""

    def __init__(self, index, kind, name, spec, target):
        self.index = index
        self.kind = kind
        self.name = name
        self.spec = spec
        self.target = target
        self.attempts = 0
        self.failures = 0
        self.passed = False
        self.last_error = None
        self.last_attempt_error = None
        self.elapsed = 0.0

    @property
    def timeout(self):
        return self.spec["timeout"]

    @property
    def label(self):
        name = " %r" % self.name if self.name else ""
        return "checks[%d]%s (%s %s)" % (self.index, name, self.kind, self.target)

    def record(self, error, duration):
        self.attempts += 1
        self.elapsed += duration
        self.passed = error is None
        self.last_attempt_error = error
        if error is not None:
            self.failures += 1
            self.last_error = error

    def result(self):
        return {
            "name": self.name,
            "kind": self.kind,
            "target": self.target,
            "passed": self.passed,
            "attempts": self.attempts,
            "failures": self.failures,
            "last_error": self.last_error,
            "elapsed": round(self.elapsed, 3),
        }


# ---- validation ---------------------------------------------------------------------------------

def parse_settings(params):
    """The round loop's settings from the module-level options."""
    deadline = _number(params.get("deadline", 60), "deadline")
    interval = _number(params.get("interval", 1), "interval", positive=False)
    initial_delay = _number(params.get("initial_delay") or 0, "initial_delay", positive=False)
    if initial_delay >= deadline:
        raise CheckError("initial_delay (%g s) must be shorter than deadline (%g s)"
                         % (initial_delay, deadline), "initial_delay")
    retries = params.get("retries")
    if retries is not None:
        retries = _integer(retries, "retries")
        if retries < 0:
            raise CheckError("retries must be >= 0, got %d" % retries, "retries")
    consecutive = _integer(params.get("require_consecutive", 1), "require_consecutive")
    if consecutive < 1:
        raise CheckError("require_consecutive must be >= 1, got %d" % consecutive, "require_consecutive")
    if retries is not None and consecutive > retries + 1:
        raise CheckError("require_consecutive (%d) can never be met in %d round(s) (retries + 1)"
                         % (consecutive, retries + 1), "require_consecutive")
    return {"deadline": deadline, "interval": interval, "initial_delay": initial_delay,
            "retries": retries, "require_consecutive": consecutive}


def parse_checks(params):
    """Validated :class:`Check` objects for ``params['checks']``; raises :class:`CheckError`."""
    host = params.get("host") or "127.0.0.1"
    port = params.get("port")
    if port is not None:
        port = _port(port, "port")
    checks = params.get("checks")
    if not isinstance(checks, list) or not checks:
        raise CheckError("checks must be a non-empty list", "checks")
    parsed = []
    for index, check in enumerate(checks):
        prefix = "checks[%d]" % index
        if not isinstance(check, dict):
            raise CheckError("%s must be a dict with one of %s" % (prefix, ", ".join(KINDS)), prefix)
        unknown = sorted(k for k in check if k != "name" and k not in KINDS)
        if unknown:
            param = "%s.%s" % (prefix, unknown[0])
            raise CheckError("%s: unknown check kind or key; a check has an optional name and exactly one "
                             "of %s" % (param, ", ".join(KINDS)), param)
        kinds = [k for k in KINDS if check.get(k) is not None]
        if not kinds:
            raise CheckError("%s: no check kind; give one of %s" % (prefix, ", ".join(KINDS)), prefix)
        if len(kinds) > 1:
            raise CheckError("%s: has %d kinds (%s); give exactly one per check"
                             % (prefix, len(kinds), ", ".join(kinds)), prefix)
        kind = kinds[0]
        spec = check[kind]
        param = "%s.%s" % (prefix, kind)
        if not isinstance(spec, dict):
            raise CheckError("%s must be a dict" % param, param)
        name = check.get("name")
        if name is not None and not isinstance(name, str):
            raise CheckError("%s.name must be a string" % prefix, "%s.name" % prefix)
        spec, target = _PARSERS[kind](spec, param, host, port)
        parsed.append(Check(index, kind, name, spec, target))
    return parsed


def _timeout(spec, param, kind):
    value = spec.get("timeout")
    return _number(DEFAULT_TIMEOUT[kind] if value is None else value, param + ".timeout")


def _statuses(value, param):
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise CheckError("%s must not be empty" % param, param)
    statuses = []
    for item in values:
        code = _integer(item, param)
        if not 100 <= code <= 599:
            raise CheckError("%s: %d is not an HTTP status (100-599)" % (param, code), param)
        statuses.append(code)
    return tuple(statuses)


def _parse_http(spec, param, host, port):
    url, path = spec.get("url"), spec.get("path")
    if url and path:
        raise CheckError("%s.url and %s.path are mutually exclusive" % (param, param), param + ".url")
    if path:
        if not path.startswith("/"):
            raise CheckError("%s.path must start with '/', got %r" % (param, path), param + ".path")
        if port is None:
            raise CheckError("%s.path needs the module option port (or give %s.url)" % (param, param), "port")
        url = "http://%s%s" % (_host_port(host, port), path)
    elif not url:
        raise CheckError("%s.url is required, or path with the module option port" % param, param + ".url")
    parts = urlsplit(url)
    try:
        url_port = parts.port
    except ValueError as e:
        raise CheckError("%s.url has a bad port: %s" % (param, e), param + ".url")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CheckError("%s.url must be an http:// or https:// URL with a host, got %r" % (param, url),
                         param + ".url")
    if parts.username is not None or parts.password is not None:
        # The URL is echoed in results and messages; credentials belong in secret_headers.
        raise CheckError("%s.url must not carry credentials; send an Authorization header in "
                         "%s.secret_headers (kept out of the output)" % (param, param), param + ".url")
    method = str(spec.get("method") or "GET").upper()
    if method not in HTTP_METHODS:
        raise CheckError("%s.method must be one of %s, got %r" % (param, ", ".join(HTTP_METHODS), method),
                         param + ".method")
    headers = []
    for key, value in sorted((spec.get("headers") or {}).items()):
        if not _TOKEN.match(str(key)):
            raise CheckError("%s.headers: %r is not a header name" % (param, key), param + ".headers")
        headers.append((str(key), _regex(value, "%s.headers.%s" % (param, key))))
    request_headers = {}
    for option in ("request_headers", "secret_headers"):
        for key, value in (spec.get(option) or {}).items():
            where = "%s.%s" % (param, option)
            if not _TOKEN.match(str(key)):
                raise CheckError("%s: %r is not a header name" % (where, key), where)
            if str(key).lower() in (k.lower() for k in request_headers):
                raise CheckError("%s: header %s is also in %s.request_headers" % (where, key, param), where)
            value = "" if value is None else str(value)
            if "\r" in value or "\n" in value:
                # Not echoed: a header value may be a credential.
                raise CheckError("%s.%s: the value contains a line break" % (where, key), where)
            request_headers[str(key)] = value
    parsed = {
        "url": url,
        "scheme": parts.scheme,
        "host": parts.hostname,
        "port": url_port,
        "request_path": (parts.path or "/") + ("?" + parts.query if parts.query else ""),
        "method": method,
        "status": _statuses(200 if spec.get("status") is None else spec["status"], param + ".status"),
        "body_regex": _regex(spec.get("body_regex"), param + ".body_regex"),
        "headers": headers,
        "request_headers": request_headers,
        "timeout": _timeout(spec, param, "http"),
        "validate_certs": spec.get("validate_certs", True) is not False,
    }
    return parsed, "%s %s" % (method, url)


def _parse_tcp(spec, param, host, port):
    tcp_host = spec.get("host") or host
    tcp_port = spec.get("port")
    if tcp_port is None:
        if port is None:
            raise CheckError("%s.port is required (or set the module option port)" % param, param + ".port")
        tcp_port = port
    tcp_port = _port(tcp_port, param + ".port")
    parsed = {"host": tcp_host, "port": tcp_port, "timeout": _timeout(spec, param, "tcp")}
    return parsed, _host_port(tcp_host, tcp_port)


def _parse_command(spec, param, host, port):
    argv, cmd = spec.get("argv"), spec.get("cmd")
    if argv and cmd:
        raise CheckError("%s.argv and %s.cmd are mutually exclusive" % (param, param), param + ".argv")
    if cmd:
        try:
            argv = shlex.split(cmd)
        except ValueError as e:
            raise CheckError("%s.cmd cannot be split into arguments: %s" % (param, e), param + ".cmd")
        if not argv:
            raise CheckError("%s.cmd is empty" % param, param + ".cmd")
    elif not argv:
        raise CheckError("%s.argv (a list) or %s.cmd (a string) is required" % (param, param),
                         param + ".argv")
    elif not isinstance(argv, list) or not all(isinstance(a, (str, int, float)) for a in argv):
        raise CheckError("%s.argv must be a list of strings" % param, param + ".argv")
    argv = [str(a) for a in argv]
    parsed = {
        "argv": argv,
        "rc": _integer(0 if spec.get("rc") is None else spec["rc"], param + ".rc"),
        "stdout_regex": _regex(spec.get("stdout_regex"), param + ".stdout_regex"),
        "timeout": _timeout(spec, param, "command"),
    }
    return parsed, " ".join(shlex.quote(a) for a in argv)


_PARSERS = {"http": _parse_http, "tcp": _parse_tcp, "command": _parse_command}


# ---- evaluation (pure) ---------------------------------------------------------------------------

def evaluate_http(spec, status, headers, body):
    """None when the response meets ``spec``, else why not. ``headers``: (name, value) pairs."""
    text = _text(body)
    if status not in spec["status"]:
        expected = ", ".join(str(s) for s in spec["status"])
        return "status %d, expected %s; body: %s" % (status, expected, snippet(text))
    for name, pattern in spec["headers"]:
        values = [v for k, v in headers if k.lower() == name.lower()]
        if not values:
            return "header %s missing" % name
        value = ", ".join(values)
        if not pattern.search(value):
            return "header %s: %s does not match %r" % (name, snippet(value), pattern.pattern)
    pattern = spec["body_regex"]
    if pattern is not None and not pattern.search(text):
        return "body does not match %r; body: %s" % (pattern.pattern, snippet(text))
    return None


def evaluate_command(spec, rc, stdout, stderr):
    stdout, stderr = _text(stdout), _text(stderr)
    if rc != spec["rc"]:
        output = stderr.strip() or stdout.strip()
        return "rc %d, expected %d; %s: %s" % (rc, spec["rc"], "stderr" if stderr.strip() else "stdout",
                                               snippet(output))
    pattern = spec["stdout_regex"]
    if pattern is not None and not pattern.search(stdout):
        return "stdout does not match %r; stdout: %s" % (pattern.pattern, snippet(stdout))
    return None


def describe_error(exc, timeout):
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out after %gs" % round(timeout, 3)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return "%s: %s" % (type(exc).__name__, exc.strerror)
    return "%s: %s" % (type(exc).__name__, exc)


# ---- real probes: each returns None (passed) or an error string ---------------------------------

def http_probe(spec, timeout):
    if spec["scheme"] == "https":
        context = ssl.create_default_context()
        if not spec["validate_certs"]:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(spec["host"], spec["port"], timeout=timeout, context=context)
    else:
        # http.client, not urllib: no proxy from the environment, no redirects followed.
        conn = http.client.HTTPConnection(spec["host"], spec["port"], timeout=timeout)
    headers = {"User-Agent": "hitless.deploy.app_check", "Connection": "close"}
    headers.update(spec["request_headers"])
    try:
        conn.request(spec["method"], spec["request_path"], headers=headers)
        response = conn.getresponse()
        body = b"" if spec["method"] == "HEAD" else response.read(MAX_BODY)
        return evaluate_http(spec, response.status, response.getheaders(), body)
    except (OSError, http.client.HTTPException) as e:
        return describe_error(e, timeout)
    finally:
        conn.close()


def tcp_probe(spec, timeout):
    try:
        socket.create_connection((spec["host"], spec["port"]), timeout=timeout).close()
    except OSError as e:
        return describe_error(e, timeout)
    return None


def command_probe(spec, timeout):
    try:
        # A new session, so a timeout kills the command's children too (they would hold the pipes).
        # No AnsibleModule here (run_command would not kill the session on a timeout).
        # pylint: disable-next=ansible-bad-function
        proc = subprocess.Popen(spec["argv"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, close_fds=True, start_new_session=True)
    except OSError as e:
        return "cannot run %s: %s" % (spec["argv"][0], describe_error(e, timeout))
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            proc.communicate(timeout=KILL_GRACE)
        except subprocess.TimeoutExpired:
            pass  # a grandchild left the process group and keeps a pipe open; give up on it
        return "timed out after %gs (killed)" % round(timeout, 3)
    return evaluate_command(spec, proc.returncode, stdout, stderr)


PROBES = {"http": http_probe, "tcp": tcp_probe, "command": command_probe}


# ---- the round loop -----------------------------------------------------------------------------

def run_rounds(checks, settings, probes=None, clock=time.monotonic, sleep=time.sleep):
    """Run every check once per round until ``require_consecutive`` rounds in a row pass.

    Stops early when the retries are used up or when the next round could not start before the
    deadline. Each attempt's timeout is cut to the time left, so the deadline holds even when a
    probe hangs. Returns a dict: passed, rounds, consecutive, elapsed, reason (None, ``retries``
    or ``deadline``).
    """
    probes = probes or PROBES
    deadline = Deadline(settings["deadline"], clock)
    if settings["initial_delay"]:
        sleep(settings["initial_delay"])
    rounds = consecutive = 0
    cut_short = False

    def one_round():
        nonlocal rounds, consecutive, cut_short
        rounds += 1
        round_ok, cut_short = _round(checks, probes, deadline, clock)
        consecutive = consecutive + 1 if round_ok else 0
        if consecutive >= settings["require_consecutive"]:
            return None
        if settings["retries"] is not None and rounds > settings["retries"]:
            return "retries"
        raise Retry("%d of %d consecutive passing rounds" % (consecutive, settings["require_consecutive"]))

    try:
        # A round needs time of its own: none is started at the deadline (last_look).
        reason = retry_until(one_round, deadline, settings["interval"], sleep=sleep, last_look=False)
    except TimedOut:
        reason = "deadline"
    return {"passed": reason is None, "rounds": rounds, "consecutive": consecutive,
            "elapsed": round(deadline.elapsed(), 3), "reason": reason, "cut_short": cut_short}


def _round(checks, probes, deadline, clock):
    """One attempt of each check in turn; (all passed, cut short by the deadline)."""
    round_ok = True
    for check in checks:
        timeout = deadline.cap(check.timeout)
        if timeout <= 0:
            return False, True
        began = clock()
        try:
            error = probes[check.kind](check.spec, timeout)
        except Exception as e:  # a probe bug must fail the check, not crash without results
            error = "probe error: %s: %s" % (type(e).__name__, e)
        check.record(error, clock() - began)
        if error is not None:
            round_ok = False
    return round_ok, False


def summary(checks, settings, outcome):
    """The module's ``msg``: on failure it names each failing check and its last error."""
    count = outcome["rounds"]
    rounds = "%d round%s in %gs" % (count, "" if count == 1 else "s", outcome["elapsed"])
    if outcome["passed"]:
        return "all %d check%s passed after %s" % (len(checks), "" if len(checks) == 1 else "s", rounds)
    if outcome["reason"] == "retries":
        why = "retries exhausted (retries=%d)" % settings["retries"]
    else:
        why = "deadline of %gs reached" % settings["deadline"]
    failing = []
    if outcome.get("cut_short"):
        failing.append("round %d was cut short by the deadline" % outcome["rounds"])
    for check in checks:
        if check.attempts == 0:
            failing.append("%s: not attempted before the deadline" % check.label)
        elif check.last_attempt_error is not None:
            failing.append("%s: %s" % (check.label, check.last_attempt_error))
    if not failing:  # every check passed its last attempt: too few passing rounds in a row
        failing.append("the last round passed, but %d consecutive passing round(s) are required, got %d"
                       % (settings["require_consecutive"], outcome["consecutive"]))
    return "post_start checks failed, %s after %s: %s" % (why, rounds, " | ".join(failing))


def parse_ports(params):
    """The instances to check: each port of ``ports`` (each once), else ``port`` (maybe None)."""
    ports = params.get("ports")
    if not ports:
        return [params.get("port")]
    if params.get("port") is not None:
        raise CheckError("port and ports are mutually exclusive", "ports")
    parsed = []
    for index, port in enumerate(ports):
        port = _port(port, "ports[%d]" % index)
        if port in parsed:
            raise CheckError("ports[%d]: port %d is listed twice" % (index, port), "ports[%d]" % index)
        parsed.append(port)
    return parsed


def run_side_by_side(check_lists, settings, run=None):
    """Run each instance's checks (one list of :class:`Check` per instance) at the same time,
    each under its own deadline from now: a release that never passes fails after one deadline,
    not one per instance. Returns each instance's outcome, in order."""
    run = run or run_rounds
    if len(check_lists) == 1:
        return [run(check_lists[0], settings)]
    outcomes = [None] * len(check_lists)

    def one(index):
        try:
            outcomes[index] = run(check_lists[index], settings)
        except Exception as e:  # a bug must fail this instance, not leave it unreported
            outcomes[index] = {"passed": False, "rounds": 0, "consecutive": 0, "elapsed": 0.0,
                               "reason": "error", "error": "%s: %s" % (type(e).__name__, e),
                               "cut_short": False}

    threads = [threading.Thread(target=one, args=(index,)) for index in range(len(check_lists))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def instances_result(ports, check_lists, settings, outcomes):
    """What app_check returns: for one instance check_result's dict, for several the same keys
    over all of them (``results`` with each check's ``port``) and ``instances``, one per port.
    The ``msg`` of several is each failing port's (``on 8082: post_start checks failed ...``),
    or each port's when all passed."""
    if len(ports) == 1:
        return dict(check_result(check_lists[0], settings, outcomes[0]), passed=outcomes[0]["passed"])
    instances = []
    for port, checks, outcome in zip(ports, check_lists, outcomes):
        one = check_result(checks, settings, outcome)
        if outcome.get("error"):
            one["msg"] = "post_start checks failed: %s" % outcome["error"]
        instances.append({"port": port, "passed": outcome["passed"], "msg": one["msg"],
                          "elapsed": one["elapsed"], "rounds": one["rounds"],
                          "results": [dict(each, port=port) for each in one["results"]]})
    failed = [each for each in instances if not each["passed"]]
    msg = "; ".join("on %d: %s" % (each["port"], each["msg"]) for each in failed or instances)
    return {"changed": False, "msg": msg, "passed": not failed,
            "elapsed": max(each["elapsed"] for each in instances),
            "rounds": max(each["rounds"] for each in instances),
            "results": [item for each in instances for item in each["results"]],
            "instances": instances}


def check_result(checks, settings, outcome):
    """What app_check returns (and app_move's checks part), from run_rounds' ``outcome``."""
    return {"changed": False, "msg": summary(checks, settings, outcome),
            "elapsed": outcome["elapsed"], "rounds": outcome["rounds"],
            "results": [check.result() for check in checks]}


def argument_spec():
    """The options of app_check, also the checks part of app_move."""
    http = dict(
        url=dict(type="str"),
        path=dict(type="str"),
        method=dict(type="str", default="GET", choices=list(HTTP_METHODS)),
        status=dict(type="raw", default=200),
        body_regex=dict(type="str"),
        headers=dict(type="dict"),
        request_headers=dict(type="dict"),
        secret_headers=dict(type="dict", no_log=True),
        timeout=dict(type="float", default=5),
        validate_certs=dict(type="bool", default=True),
    )
    tcp = dict(
        host=dict(type="str"),
        port=dict(type="int"),
        timeout=dict(type="float", default=5),
    )
    command = dict(
        argv=dict(type="list", elements="str"),
        cmd=dict(type="str"),
        rc=dict(type="int", default=0),
        stdout_regex=dict(type="str"),
        timeout=dict(type="float", default=30),
    )
    check = dict(
        name=dict(type="str"),
        http=dict(type="dict", options=http),
        tcp=dict(type="dict", options=tcp),
        command=dict(type="dict", options=command),
    )
    return dict(
        checks=dict(type="list", elements="dict", required=True, options=check),
        host=dict(type="str", default="127.0.0.1"),
        port=dict(type="int"),
        retries=dict(type="int"),
        interval=dict(type="float", default=1),
        deadline=dict(type="float", default=60),
        initial_delay=dict(type="float", default=0),
        require_consecutive=dict(type="int", default=1),
    )
