# -*- coding: utf-8 -*-
# Copyright: hitless.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Desired state of one HAProxy server: plan the runtime commands, send them, wait.

The rule this module exists for: a server that leaves MAINT or DRAIN is never reported ready
(nor given traffic by us) before health checks made *after* our change have passed. HAProxy
marks a server UP the moment it leaves MAINT, with the check result it had before; so the
ready flow goes MAINT -> DRAIN (checks run, no new traffic) -> `health down` (the health
counter restarts at 0, so `rise` fresh passing checks are needed) -> wait until it has risen
in DRAIN -> `state ready` -> confirm UP with a passing check.

`absent` deletes only a server known to be dynamic (added at runtime): HAProxy 2.6 would also
delete one declared in the configuration, which then comes back at the next reload in its
configured state (a drained original back in traffic, a clone slot gone until then). A server
from the configuration, or one HAProxy's answers do not classify, is left in MAINT without
sessions instead, like a slot.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import ipaddress
import time

from ansible_collections.hitless.deploy.plugins.module_utils._deadline import (
    Deadline,
    Retry,
    TimedOut,
    retry_until,
)
from ansible_collections.hitless.deploy.plugins.module_utils._haproxy_runtime import (
    DYNAMIC_ALGOS,
    NAME_RE,
    CommandError,
    HAProxyRuntimeError,
    NotFoundError,
)

STATES = ("ready", "drain", "maint", "absent", "present")
ADD_OK = ("New server registered.",)
DEL_OK = ("Server deleted.",)
# `set server addr` reports what it did ("IP changed from ... by 'stats socket command'").
ADDR_OK = ("IP changed from", "no need to change the addr")
DYNAMIC_REFUSED = "Backend must use a dynamic load balancing"
STILL_CONNECTED = "Server still has connections"
# After `shutdown sessions`, HAProxy closes them asynchronously; this bounds that last wait.
SHUTDOWN_GRACE = 5.0
POLL_INTERVAL = 0.1
DIFF_KEYS = ("state", "address", "port", "weight")


class ParamError(Exception):
    """Bad module input; ``param`` names the option."""

    def __init__(self, param, msg):
        self.param = param
        Exception.__init__(self, "%s: %s" % (param, msg))


class PlanError(Exception):
    """The desired state cannot be reached safely; raised before any command is sent."""


class StateError(Exception):
    """Failed while changing or waiting; ``result`` says what was done and where it stands."""

    def __init__(self, msg, result):
        self.msg = msg
        self.result = result
        Exception.__init__(self, msg)


class Request:
    """The validated module parameters."""

    FIELDS = ("backend", "server", "state", "address", "port", "weight", "check_inter",
              "check_rise", "check_fall", "wait", "wait_timeout", "shutdown_sessions", "slots")

    def __init__(self, **kwargs):
        for name in self.FIELDS:
            setattr(self, name, kwargs.get(name))
        self.slots = list(self.slots or [])


def _check_name(param, value):
    if not value or not NAME_RE.match(value):
        raise ParamError(param, "%r is not a valid HAProxy name (letters, digits, '-', '_', "
                                "'.', ':')" % (value,))


def build_request(params):
    """Validate what the argument spec cannot; return a :class:`Request` or raise ParamError."""
    req = Request(**params)
    _check_name("backend", req.backend)
    _check_name("server", req.server)
    for slot in req.slots:
        _check_name("slots", slot)
    if req.state not in STATES:
        raise ParamError("state", "must be one of %s" % ", ".join(STATES))
    if (req.address is None) != (req.port is None):
        raise ParamError("address" if req.address is None else "port",
                         "address and port go together")
    if req.address is not None:
        try:
            req.address = str(ipaddress.ip_address(req.address))
        except ValueError:
            raise ParamError("address", "%r is not an IPv4 or IPv6 address" % (req.address,))
        if not 1 <= req.port <= 65535:
            raise ParamError("port", "%s is outside 1-65535" % req.port)
    if req.state == "present" and req.address is None:
        raise ParamError("address", "state=present needs address and port")
    if req.weight is not None and not 0 <= req.weight <= 256:
        raise ParamError("weight", "%s is outside 0-256" % req.weight)
    if req.check_inter is not None and req.check_inter < 1:
        raise ParamError("check_inter", "must be at least 1 (milliseconds)")
    for name in ("check_rise", "check_fall"):
        if getattr(req, name) is not None and getattr(req, name) < 1:
            raise ParamError(name, "must be at least 1")
    if req.wait_timeout is None or req.wait_timeout < 0:
        raise ParamError("wait_timeout", "must be 0 or more seconds")
    return req


class Step:
    """One runtime command (kind 'cmd') or one wait (kind 'wait', ``what`` names it).

    ``effect`` is how the command changes the server, so check mode can predict ``after``.
    """

    def __init__(self, kind, command=None, success=(), what=None, effect=None, retry_on=None):
        self.kind = kind
        self.command = command
        self.success = success
        self.what = what
        self.effect = effect or {}
        self.retry_on = retry_on

    def __repr__(self):
        return "Step(%s)" % (self.command if self.kind == "cmd" else "wait " + self.what)


def _cmd(command, success=(), retry_on=None, **effect):
    return Step("cmd", command, success=success, effect=effect, retry_on=retry_on)


def _wait(what):
    return Step("wait", what=what)


class Plan:
    def __init__(self, name, before, steps, slot=None):
        self.name = name
        self.before = before
        self.steps = steps
        self.slot = slot


def same_endpoint(view, req):
    if req.address is None:
        return True
    try:
        current = ipaddress.ip_address(view.get("address") or "")
    except ValueError:
        return False
    return current == ipaddress.ip_address(req.address) and view.get("port") == req.port


def endpoint(address, port):
    return ("[%s]:%d" if ":" in address else "%s:%d") % (address, port)


def _find_slot(backend, req, use_free):
    servers = backend["servers"]
    missing = [s for s in req.slots if s not in servers]
    if missing:
        raise ParamError("slots", "%s not in backend %s" % (", ".join(missing), req.backend))
    if req.address is None:
        raise ParamError("address", "address and port are needed to find server %s among the "
                                    "slots of backend %s" % (req.server, req.backend))
    for name in req.slots:
        if same_endpoint(servers[name], req):
            return name
    if not use_free:
        return None
    for name in req.slots:
        view = servers[name]
        if view["admin_state"] == "maint" and not view["scur"] and not view["qcur"]:
            return name
    raise PlanError("no free slot in backend %s: none of %s is in maint without sessions"
                    % (req.backend, ", ".join(req.slots)))


def plan(req, backend, use_slot=None):
    """Steps from the server's current state (in ``backend``) to ``req``. Pure.

    ``use_slot`` None decides from the balance algorithm whether a missing server is added
    or takes a slot; True forces a slot (after HAProxy refused ``add server``).
    """
    servers = backend["servers"]
    name, slot = req.server, None
    cur = servers.get(name)
    if cur is None and req.slots:
        slot = _find_slot(backend, req, use_free=False)
        if slot is None and req.state in ("present", "ready"):
            if use_slot is None:
                use_slot = backend.get("algo") not in DYNAMIC_ALGOS
            if use_slot:
                slot = _find_slot(backend, req, use_free=True)
        if slot is not None:
            name, cur = slot, servers[slot]
    fq = "%s/%s" % (req.backend, name)
    if cur is None:
        if req.state == "absent":
            return Plan(name, None, [])
        if req.state == "present":
            return Plan(name, None, _add_steps(req, fq))
        if req.state == "ready" and req.address is not None:
            # Added and made ready in one call: one remote call per HAProxy host.
            added = _add_steps(req, fq)
            created = dict(added[0].effect["created"], check_configured=True, check_enabled=True)
            return Plan(name, None, added + _ready(req, fq, created, None))
        raise NotFoundError("server", fq)
    planner = {"present": _present, "ready": _ready, "drain": _drain, "maint": _maint,
               "absent": _absent}[req.state]
    return Plan(name, cur, planner(req, fq, cur, slot), slot)


def _add_steps(req, fq):
    command = "add server %s %s check inter %d rise %d fall %d" % (
        fq, endpoint(req.address, req.port), req.check_inter or 2000, req.check_rise or 2,
        req.check_fall or 3)
    if req.weight is not None:
        command += " weight %d" % req.weight
    created = {"admin_state": "maint", "address": req.address, "port": req.port,
               "weight": 1 if req.weight is None else req.weight, "dynamic": True}
    # default-server lines do not apply to dynamic servers, and `check` stays off until
    # `enable health`: without it the server could never pass a check.
    return [_cmd(command, ADD_OK, created=created), _cmd("enable health %s" % fq)]


def _move_steps(req, fq, cur, allowed):
    if same_endpoint(cur, req):
        return []
    if not allowed:
        raise PlanError("server %s takes traffic at %s; it is moved to %s only from drain or "
                        "maint" % (fq, endpoint(cur["address"], cur["port"]),
                                   endpoint(req.address, req.port)))
    return [_cmd("set server %s addr %s port %d" % (fq, req.address, req.port), ADDR_OK,
                 address=req.address, port=req.port)]


def _weight_steps(req, fq, cur):
    if req.weight is None or req.weight == cur.get("weight"):
        return []
    return [_cmd("set server %s weight %d" % (fq, req.weight), weight=req.weight)]


def _state(fq, state):
    return _cmd("set server %s state %s" % (fq, state), admin_state=state)


def _health_down(fq):
    return _cmd("set server %s health down" % fq)


def _present(req, fq, cur, slot):
    return _move_steps(req, fq, cur, cur["admin_state"] != "ready") + _weight_steps(req, fq, cur)


def _no_check_error(fq, cur):
    what = "has no health check" if not cur["check_configured"] else "has its health check disabled"
    return PlanError("server %s %s: ready with wait cannot confirm it passes fresh checks"
                     % (fq, what))


def _ready(req, fq, cur, slot):
    steps = _move_steps(req, fq, cur, cur["admin_state"] != "ready") + _weight_steps(req, fq, cur)
    if cur["admin_state"] == "ready":
        if req.wait:
            if not cur["check_enabled"]:
                raise _no_check_error(fq, cur)
            steps.append(_wait("up"))
        return steps
    if not cur["check_configured"]:
        if req.wait:
            raise _no_check_error(fq, cur)
        return steps + [_state(fq, "ready")]
    if not cur["check_enabled"]:
        steps.append(_cmd("enable health %s" % fq))
    if cur["admin_state"] == "maint":
        steps.append(_state(fq, "drain"))
    # In DRAIN (never in MAINT, where HAProxy ignores it) this zeroes the health counter.
    # Even without wait the server then stays DOWN, out of traffic, until `rise` checks pass.
    steps.append(_health_down(fq))
    if req.wait:
        steps.append(_wait("risen"))
    steps.append(_state(fq, "ready"))
    if req.wait:
        steps.append(_wait("up"))
    return steps


def _leave(req, fq, cur, target):
    steps = []
    if cur["admin_state"] != target:
        steps.append(_state(fq, target))
        if cur["admin_state"] == "maint" and cur["check_enabled"]:
            # Leaving MAINT shows the stale check result as UP; persistence could reach it.
            steps.append(_health_down(fq))
    return steps


def _drain(req, fq, cur, slot):
    steps = _leave(req, fq, cur, "drain")
    steps += _move_steps(req, fq, cur, True) + _weight_steps(req, fq, cur)
    if req.wait:
        steps.append(_wait("idle"))
    return steps


def _maint(req, fq, cur, slot):
    steps = _leave(req, fq, cur, "maint")
    steps += _move_steps(req, fq, cur, True) + _weight_steps(req, fq, cur)
    if req.wait:
        steps.append(_wait("idle"))
    return steps


def _absent(req, fq, cur, slot):
    steps = _leave(req, fq, cur, "maint")
    if req.wait:
        steps.append(_wait("idle"))
    # Only a server known to be dynamic is deleted (see the module docstring); any other stays
    # in maint without sessions, free for the next deploy.
    if slot is None and cur.get("dynamic") is True:
        steps.append(_cmd("del server %s" % fq, DEL_OK, deleted=True,
                          retry_on=STILL_CONNECTED if req.wait else None))
    return steps


def predict(before, steps):
    """The server as it would be after ``steps`` (check mode); None when it would not exist."""
    after = copy.deepcopy(before)
    for step in steps:
        effect = step.effect
        if "created" in effect:
            after = dict(effect["created"])
        elif effect.get("deleted"):
            after = None
        elif after is not None:
            after.update(effect)
    return after


def summary(view):
    if view is None:
        return {"state": "absent"}
    return {"state": view.get("admin_state"), "address": view.get("address"),
            "port": view.get("port"), "weight": view.get("weight")}


def describe(view):
    """A short account of a server's health for error messages."""
    if view is None:
        return "the server no longer exists"
    check = view.get("check_status") or "none"
    detail = ", ".join(x for x in (view.get("check_desc"), view.get("last_check")) if x)
    if detail:
        check += " (%s)" % detail
    health = ""
    if view.get("check_health") is not None and view.get("check_rise") is not None:
        health = ", health %s/%s" % (view["check_health"],
                                     view["check_rise"] + (view.get("check_fall") or 1) - 1)
    return "status %s, admin %s, check %s%s, %s sessions, %s queued" % (
        view.get("status"), view.get("admin_state"), check, health, view.get("scur"),
        view.get("qcur"))


def risen_in_drain(view):
    return (view["admin_state"] == "drain" and view["status"] == "DRAIN"
            and view["check_passing"] and view["fully_risen"])


def up_and_passing(view):
    return view["ready"]


def idle(view):
    return not view["scur"] and not view["qcur"]


WAITS = {"risen": risen_in_drain, "up": up_and_passing, "idle": idle}


class Runner:
    """Reads the server, plans, then sends the commands and waits (unless check mode)."""

    def __init__(self, client, req, check_mode=False, clock=time.monotonic, sleep=time.sleep,
                 poll=POLL_INTERVAL):
        self.client = client
        self.req = req
        self.check_mode = check_mode
        self.clock = clock
        self.sleep = sleep
        # A server's state moves once per check: looking at least twice per check interval
        # sees each result, and ends a wait within half an interval of the check it waited for.
        self.poll = min(poll, req.check_inter / 2000.0) if req.check_inter else poll
        self.commands = []
        self.accepted = 0
        self.deadline = None
        self.name = req.server
        self.slot = None
        self.before = None
        self.dynamic = None

    def run(self):
        self.deadline = Deadline(self.req.wait_timeout, self.clock)
        backend = self.client.backend(self.req.backend)
        # Before planning: whether `absent` may delete the server depends on it.
        self._probe(backend, self.req.server)
        p = plan(self.req, backend)
        if p.slot is not None:
            self._probe(backend, p.slot)
        self._adopt(p)
        if self.check_mode:
            self.commands = [s.command for s in p.steps if s.kind == "cmd"]
            return self._result(predict(p.before, p.steps))
        try:
            self._execute(p)
            after = self._read()
        except (HAProxyRuntimeError, StateError, PlanError, ParamError) as e:
            msg = e.msg if isinstance(e, StateError) else str(e)
            raise StateError(msg, self._result(self._read_quietly()))
        return self._result(after)

    def _probe(self, backend, name):
        view = backend["servers"].get(name)
        if view is not None and view.get("dynamic") is None:
            view["dynamic"] = self.client.is_dynamic(self.req.backend, name)

    def _adopt(self, p):
        self.name, self.slot, self.before = p.name, p.slot, p.before
        self.dynamic = None if p.before is None else p.before.get("dynamic")

    def _fq(self):
        return "%s/%s" % (self.req.backend, self.name)

    def _read(self):
        view = self.client.backend(self.req.backend)["servers"].get(self.name)
        if view is not None and view.get("dynamic") is None:
            # It cannot change while the server exists; one we added is dynamic.
            view["dynamic"] = self.dynamic
        return view

    def _read_quietly(self):
        try:
            return self._read()
        except HAProxyRuntimeError:
            return None

    def _execute(self, p):
        for index, step in enumerate(p.steps):
            if step.kind == "wait":
                self._wait(step.what)
                continue
            try:
                self._send(step)
            except CommandError as e:
                if not (index == 0 and DYNAMIC_REFUSED in e.answer):
                    raise
                if not self.req.slots:
                    raise StateError(
                        "backend %s cannot take dynamic servers (%s); declare disabled server "
                        "slots in it and list them in slots" % (self.req.backend, e.answer), {})
                # HAProxy changed nothing: start over with a slot.
                self.commands = []
                backend = self.client.backend(self.req.backend)
                p = plan(self.req, backend, use_slot=True)
                if p.slot is not None:
                    self._probe(backend, p.slot)
                self._adopt(p)
                return self._execute(p)
        return None

    def _send(self, step):
        self.commands.append(step.command)

        def attempt():
            try:
                return self.client.run(step.command, step.success)
            except CommandError as e:
                if step.retry_on and step.retry_on in e.answer:
                    raise Retry(e.answer, e)
                raise

        try:
            answer = self._retry(attempt)
        except TimedOut as e:
            raise e.value
        self.accepted += 1
        if "created" in step.effect:
            self.dynamic = True
        return answer

    def _retry(self, attempt):
        return retry_until(attempt, self.deadline, self.poll, sleep=self.sleep)

    def _wait(self, what):
        done = WAITS[what]

        def look():
            view = self._read()
            if view is None:
                raise StateError("server %s disappeared while waiting" % self._fq(), {})
            self._reassert(what, view)
            if not done(view):
                raise Retry("not %s yet" % what, view)
            return view

        try:
            return self._retry(look)
        except TimedOut as e:
            view = e.value
        if what == "idle" and self.req.shutdown_sessions:
            # The drain had its time; closing the sessions is asynchronous, hence the grace.
            self._send(_cmd("shutdown sessions server %s" % self._fq()))
            self.deadline.extend(SHUTDOWN_GRACE)
            try:
                return self._retry(look)
            except TimedOut as e:
                view = e.value
        raise StateError(self._timeout_message(what, view), {})

    def _reassert(self, what, view):
        """A reload that restored an older state, or a hand edit, must not undo a drain we are
        waiting on: a server leaving traffic is sent out of it again."""
        if what != "idle":
            return
        target = "drain" if self.req.state == "drain" else "maint"
        if view.get("admin_state") not in (target, None):
            self._send(_state(self._fq(), target))
            view["admin_state"] = target

    def _timeout_message(self, what, view):
        fq, t = self._fq(), self.req.wait_timeout
        if what == "risen":
            return ("server %s did not pass %s fresh health checks within %gs; it stays in "
                    "drain, out of traffic: %s" % (fq, view.get("check_rise"), t, describe(view)))
        if what == "up":
            return "server %s is not UP with a passing check after %gs: %s" % (
                fq, t, describe(view))
        extra = "" if self.req.shutdown_sessions else "; shutdown_sessions=true closes them"
        return "server %s still has sessions after %gs%s: %s" % (fq, t, extra, describe(view))

    def _result(self, after):
        before = self.before
        return {
            # Check mode: what would be sent; otherwise what HAProxy accepted.
            "changed": bool(self.commands) if self.check_mode else self.accepted > 0,
            "backend": self.req.backend,
            "server": self.name,
            "slot": self.slot,
            # Check mode predicts it for a server it would add.
            "dynamic": self.dynamic if self.dynamic is not None or after is None
            else after.get("dynamic"),
            "before": before,
            "after": after,
            "diff": {"before": summary(before), "after": summary(after)},
            "commands": list(self.commands),
            "elapsed": round(self.deadline.elapsed(), 3),
        }
