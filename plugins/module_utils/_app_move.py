# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One move of a rolling deploy on an app host, in one module call.

A module call costs its host about 0.22 CPU-s and the controller about 0.17 whatever it does
(docs/cpu.md), so the rolling role makes each move one call: the journal step written first,
``current`` moved, the instance started, restarted or removed, its checks, the journal closed
last. Each part is the logic of the module of the same purpose (deploy_journal, release,
app_instance, app_check), its options validated against that module's argument spec; the first
part that fails stops the move, and the error names it (``part``) so that a caller can tell a
release that does not start from a journal it could not write.
"""

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.hitless.deploy.plugins.module_utils import (
    _app_check,
    _app_instance,
    _journal,
    _release,
)

# In the order they run.
PARTS = ("journal", "link", "instance", "checks", "close")

JOURNAL_SPEC = dict(
    root=dict(type="path", required=True),
    deploy_id=dict(type="str", required=True),
    step=dict(type="str", required=True),
    data=dict(type="dict", default={}),
)
CLOSE_SPEC = dict(
    root=dict(type="path", required=True),
    # Without it, whichever deploy's journal is open is closed (a converge of another run's).
    deploy_id=dict(type="str"),
    outcome=dict(type="str", default="done"),
    data=dict(type="dict", default={}),
)
LINK_SPEC = dict(
    root=dict(type="path", required=True),
    name=dict(type="str", required=True),
    keep=dict(type="int", default=0),
    pin_dir=dict(type="path", default="/run/systemd/system"),
)


class MoveError(Exception):
    """A part that failed: ``part`` (one of PARTS), ``param`` within it, what it returned."""

    def __init__(self, part, msg, param=None, result=None):
        super(MoveError, self).__init__(msg)
        self.part = part
        self.msg = msg
        self.param = param
        self.result = result or {}


def _named(part, msg, param=None):
    """``msg`` prefixed with its part and, as app_instance does, its parameter when it does not
    already start with it: ``instance: port: ...``."""
    if param and not msg.startswith(param):
        msg = "%s: %s" % (param, msg)
    return "%s: %s" % (part, msg)


def validated(part, spec, options):
    """``options`` of ``part`` checked and completed with defaults, or MoveError naming it."""
    if not isinstance(options, dict):
        raise MoveError(part, "%s must be a dictionary of options" % part, part)
    result = ArgumentSpecValidator(spec).validate(options)
    if result.error_messages:
        raise MoveError(part, "%s: %s" % (part, "; ".join(result.error_messages)), part)
    return result.validated_parameters


def plan(params):
    """The parts of ``params`` given, validated, in the order they run."""
    specs = {"journal": JOURNAL_SPEC, "link": LINK_SPEC,
             "instance": _app_instance.ARGUMENT_SPEC, "checks": _app_check.argument_spec(),
             "close": CLOSE_SPEC}
    parts = [(part, validated(part, specs[part], params[part]))
             for part in PARTS if params.get(part) is not None]
    if not parts:
        raise MoveError("move", "give at least one of %s" % ", ".join(PARTS), None)
    if params.get("checks") is not None and params.get("instance") is not None:
        # The checks look at the instance this move started, unless told another port.
        parts = [(p, dict(o, port=o["port"] or params["instance"]["port"]) if p == "checks" else o)
                 for p, o in parts]
    return parts


def _checks(options, check_mode):
    try:
        settings = _app_check.parse_settings(options)
        checks = _app_check.parse_checks(options)
    except _app_check.CheckError as e:
        raise MoveError("checks", _named("checks", e.msg, e.param), e.param)
    if check_mode:
        # The instance was not started: there is nothing yet to check.
        return {"changed": False, "skipped": True, "msg": "not run in check mode"}
    outcome = _app_check.run_rounds(checks, settings)
    result = _app_check.check_result(checks, settings, outcome)
    if not outcome["passed"]:
        raise MoveError("checks", result["msg"], None, result)
    return result


def _run_part(part, options, systemctl, check_mode):
    try:
        if part == "journal":
            return _journal.run(dict(options, state="step"), check_mode)
        if part == "close":
            return _journal.run(dict(options, state="done"), check_mode)
        if part == "link":
            return _release.run(dict(options, state="current"), check_mode)
        if part == "instance":
            return _app_instance.ensure(options, systemctl, check_mode)
        return _checks(options, check_mode)
    except (_journal.JournalError, _release.ReleaseError, _app_instance.InstanceError) as e:
        unit_state = getattr(e, "unit_state", None) or {}
        raise MoveError(part, _named(part, e.msg, e.param), e.param,
                        {"active_state": unit_state.get("ActiveState"), "sub_state": unit_state.get("SubState")})
    except (IOError, OSError) as e:
        raise MoveError(part, "%s: %s" % (part, e), None)


def run(params, systemctl, check_mode):
    """Carry out one task of ``app_move``; return its result (without ``failed``). Raises
    MoveError with the results of the parts done so far in ``result["parts"]``."""
    parts = plan(params)
    results = {}
    for part, options in parts:
        try:
            results[part] = _run_part(part, options, systemctl, check_mode)
        except MoveError as e:
            e.result = dict(e.result, parts=results)
            raise
    return {"changed": any(r.get("changed") for r in results.values()), "parts": results,
            "diff": {"before": {p: r.get("diff", {}).get("before") for p, r in results.items()},
                     "after": {p: r.get("diff", {}).get("after") for p, r in results.items()}}}
