# -*- coding: utf-8 -*-
# Copyright: hitless.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An app's background workers moved to a release without a gap in consumption.

A worker is an instance ``UNIT@ID`` of a systemd template unit (``<app>-worker@.service``, no
port, no HAProxy server) that runs from ``ROOT/current`` with its own view of the app root, so
it runs one release for its whole life (as the app's web instances, docs/apps.md). Its
overlap is the instance ``UNIT@ID-next``, pinned by a runtime drop-in to one release:

- ``overlapped``: every worker has its overlap running on ``release_path`` (the originals
  untouched). A release whose worker does not start is found here, before anything stops.
- ``moved``: every original runs ``release_path`` (``current`` must point there) and no overlap
  is left. An original on another release is replaced with its overlap running first: the
  overlap starts (or already runs), the original gets SIGTERM and its full stop timeout, starts
  again on ``current``, stays up for ``settle`` seconds, then the overlap stops the same way.

Both are idempotent, so a converge (either direction) is ``moved`` to the release to keep.

``observe`` is the status's read (``hitless.deploy.deploy_journal_info``): the workers listed and
any other the host runs, each as this module sees it before a move.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import time

from ansible_collections.hitless.deploy.plugins.module_utils import _listeners
from ansible_collections.hitless.deploy.plugins.module_utils._app_instance import (
    RUNNING, InstanceError, read_file, releases_of, remove_drop_in, resolve_release, write_drop_in)
from ansible_collections.hitless.deploy.plugins.module_utils._pin import (
    DROP_IN, RUNTIME_DIR, drop_in_content, pinned_to)

NEXT = "-next"
_PREFIX = re.compile(r"^[A-Za-z0-9:_.\\-]+$")
_ID = re.compile(r"^[A-Za-z0-9_.:]+$")
POLL_INTERVAL = 0.1

ARGUMENT_SPEC = dict(
    unit=dict(type="str", required=True),
    workers=dict(type="list", elements="str", required=True),
    release_path=dict(type="path", required=True),
    state=dict(type="str", default="moved", choices=["overlapped", "moved"]),
    environment_file=dict(type="str", default=".env"),
    settle=dict(type="float", default=2.0),
    start_timeout=dict(type="int", default=60),
    runtime_dir=dict(type="path", default="/run/systemd/system"),
)


class WorkerError(InstanceError):
    """A refusal or failure; ``param`` names the option at fault, ``worker`` the unit."""

    def __init__(self, msg, param=None, unit_state=None, worker=None):
        super(WorkerError, self).__init__(msg, param, unit_state)
        self.worker = worker


def check_params(params):
    check_names(params["unit"], params["workers"], required=True)
    if params["settle"] < 0 or params["start_timeout"] <= 0:
        raise WorkerError("settle must be 0 or more and start_timeout positive", "settle")


def check_names(unit, workers, required=False, unit_param="unit", workers_param="workers"):
    """Refuse a unit prefix or worker IDs that app_worker would refuse."""
    if not _PREFIX.match(unit or ""):
        raise WorkerError("%s %r is not a template unit prefix (letters, digits, ':', '_', '.', '-'; "
                          "no '@')" % (unit_param, unit), unit_param)
    if required and not workers:
        raise WorkerError("%s must name at least one worker (the IDs of UNIT@ID)" % workers_param, workers_param)
    for worker in workers:
        if not _ID.match(worker or "") or worker.endswith(NEXT):
            raise WorkerError("%s: %r is not a worker ID (letters, digits, '_', '.', ':'; not "
                              "ending in %s, the overlap's suffix)" % (workers_param, worker, NEXT), workers_param)
    if len(set(workers)) != len(workers):
        raise WorkerError("%s lists an ID twice: %s" % (workers_param, ", ".join(workers)), workers_param)


def unit_of(prefix, worker):
    return "%s@%s.service" % (prefix, worker)


class Worker(object):
    """What the host shows of one worker ID: its original and its overlap."""

    def __init__(self, systemctl, params, worker, proc):
        self.systemctl, self.proc = systemctl, proc
        self.id = worker
        self.original = unit_of(params["unit"], worker)
        self.overlap = unit_of(params["unit"], worker + NEXT)
        self.drop_in = os.path.join(params.get("runtime_dir") or RUNTIME_DIR, self.overlap + ".d", DROP_IN)

    def release_of(self, unit):
        """(ActiveState, the release directory its main process runs in, or None)."""
        props = self.systemctl.show(unit)
        pid = int(props.get("MainPID") or 0)
        path = _listeners.process_cwd(pid, self.proc, releases_of(props)) if pid else None
        return props, path

    def view(self):
        props, path = self.release_of(self.original)
        next_props, next_path = self.release_of(self.overlap)
        return {"worker": self.id, "unit": self.original, "active_state": props.get("ActiveState"),
                "running_release": os.path.basename(path) if path else None,
                "overlap": {"unit": self.overlap, "active_state": next_props.get("ActiveState"),
                            "running_release": os.path.basename(next_path) if next_path else None,
                            "pinned_to": pinned_to(read_file(self.drop_in))}}


def wait_settled(systemctl, unit, timeout, settle, sleep=time.sleep, clock=time.monotonic, poll=POLL_INTERVAL):
    """Until ``unit`` has been active for ``settle`` seconds on end (within ``timeout`` plus
    ``settle``); a worker that dies or is restarted by systemd meanwhile fails, with its log."""
    deadline = clock() + timeout
    up_since = None
    restarts = None
    while True:
        props = systemctl.show(unit)
        state, restarted = props.get("ActiveState"), props.get("NRestarts", "0")
        if restarts is None:
            restarts = restarted
        if state in ("failed", "inactive") or props.get("SubState") == "auto-restart" or restarted != restarts:
            journal = systemctl.journal(unit)
            raise WorkerError("%s did not stay up (ActiveState=%s, SubState=%s, Result=%s)%s"
                              % (unit, state, props.get("SubState"), props.get("Result"),
                                 "; last log lines:\n" + journal if journal else ""),
                              unit_state=props)
        now = clock()
        if state == "active":
            up_since = now if up_since is None else up_since
            if now - up_since >= settle:
                return props
        elif now > deadline:
            raise WorkerError("%s is still %s after %d s" % (unit, state, timeout), "start_timeout",
                              unit_state=props)
        sleep(poll)


def plan(params, workers, views, want_release, want_pin):
    """The actions per worker that reach ``params['state']``: [(worker, action), ...]."""
    actions = []
    for worker, seen in zip(workers, views):
        overlap = seen["overlap"]
        overlap_ok = (overlap["active_state"] in RUNNING and overlap["running_release"] == want_release
                      and overlap["pinned_to"] == pinned_to(want_pin))
        if params["state"] == "overlapped":
            if not overlap_ok:
                actions.append((worker, "start-overlap"))
            continue
        started = False
        if seen["active_state"] != "active" or seen["running_release"] != want_release:
            if not overlap_ok:
                actions.append((worker, "start-overlap"))
                started = True
            actions.append((worker, "replace-original"))
        if started or overlap["active_state"] not in ("inactive", None) or overlap["pinned_to"] is not None:
            actions.append((worker, "remove-overlap"))
    return actions


def predicted(view, state, release, real):
    """What a check mode run says ``view`` would become."""
    overlap = dict(view["overlap"], active_state="active", running_release=release, pinned_to=real)
    if state == "overlapped":
        return dict(view, overlap=overlap)
    return dict(view, active_state="active", running_release=release,
                overlap=dict(view["overlap"], active_state="inactive", running_release=None, pinned_to=None))


def _start_overlap(worker, want_pin, params, settle_wait):
    systemctl = worker.systemctl
    if read_file(worker.drop_in) != want_pin:
        write_drop_in(worker.drop_in, want_pin)
    systemctl.call("daemon-reload")
    if systemctl.show(worker.overlap).get("ActiveState") == "failed":
        systemctl.call("reset-failed", "--", worker.overlap)
    # A restart: an overlap running another release (an older deploy's) takes this one.
    systemctl.call("restart", "--", worker.overlap)
    settle_wait(worker.overlap)


def _replace_original(worker, settle_wait):
    systemctl = worker.systemctl
    # stop waits for the unit's whole TimeoutStopSec: the job in hand is finished or given up.
    systemctl.call("stop", "--", worker.original)
    if systemctl.show(worker.original).get("ActiveState") == "failed":
        systemctl.call("reset-failed", "--", worker.original)
    systemctl.call("start", "--", worker.original)
    settle_wait(worker.original)


def _remove_overlap(worker):
    systemctl = worker.systemctl
    systemctl.call("stop", "--", worker.overlap)
    if read_file(worker.drop_in) is not None:
        remove_drop_in(worker.drop_in)
        systemctl.call("daemon-reload")
    if systemctl.show(worker.overlap).get("ActiveState") == "failed":
        systemctl.call("reset-failed", "--", worker.overlap)


def ensure(params, systemctl, check_mode, proc="/proc", sleep=time.sleep, clock=time.monotonic,
           poll=POLL_INTERVAL):
    """Carry out one task of ``app_worker``; return its result (without ``failed``)."""
    check_params(params)
    root, real = resolve_release(params["release_path"])
    release = os.path.basename(real)
    if not systemctl.template_exists(params["unit"]):
        raise WorkerError("unit: template unit %s@.service does not exist on the host" % params["unit"], "unit")
    if params["state"] == "moved":
        current = os.path.realpath(os.path.join(root, "current"))
        if current != real:
            raise WorkerError("release_path %s is not where %s/current points (%s): a moved worker "
                              "starts on current, so point current there first"
                              % (params["release_path"], root, current), "release_path")
    want_pin = drop_in_content(real, params["environment_file"], root)
    workers = [Worker(systemctl, params, w, proc) for w in params["workers"]]
    before = [w.view() for w in workers]
    actions = plan(params, workers, before, release, want_pin)

    def settle_wait(unit):
        return wait_settled(systemctl, unit, params["start_timeout"], params["settle"], sleep=sleep,
                            clock=clock, poll=poll)

    if not check_mode:
        for worker, action in actions:
            try:
                if action == "start-overlap":
                    _start_overlap(worker, want_pin, params, settle_wait)
                elif action == "replace-original":
                    _replace_original(worker, settle_wait)
                else:
                    _remove_overlap(worker)
            except InstanceError as e:
                # systemctl's own failures are InstanceErrors too: say whose move it was.
                e.worker = worker.id
                raise
    if check_mode:
        after = [predicted(view, params["state"], release, real) for view in before]
    else:
        after = [w.view() for w in workers]
    return {
        "changed": bool(actions),
        "release": release,
        "actions": ["%s %s" % (action, worker.id) for worker, action in actions],
        "workers": after,
        "diff": {"before": {"workers": before}, "after": {"workers": after}},
    }


def loaded(text, prefix):
    """{ID: ActiveState} of the instances ``PREFIX@ID.service`` in the output of ``systemctl
    list-units --all --plain --no-legend --full`` (UNIT LOAD ACTIVE SUB DESCRIPTION; a failed
    unit may come after a bullet)."""
    head, tail = prefix + "@", ".service"
    found = {}
    for line in text.splitlines():
        fields = line.split()
        for at, field in enumerate(fields):
            if field.startswith(head) and field.endswith(tail) and len(field) > len(head) + len(tail):
                rest = fields[at + 1:]
                found[field[len(head):-len(tail)]] = rest[1] if len(rest) > 1 else "unknown"
                break
    return found


def discover(systemctl, prefix, runtime_dir=RUNTIME_DIR):
    """IDs of the workers the host runs or has left something of: an instance of the template
    (worker or overlap) that systemd has loaded and is not inactive (running, starting,
    stopping or failed), or an overlap whose pin is still under ``runtime_dir``."""
    out = systemctl.call("list-units", "--all", "--plain", "--no-legend", "--full", "--", "%s@*.service" % prefix)
    ids = set()
    for name, state in loaded(out, prefix).items():
        if state != "inactive":
            ids.add(name[:-len(NEXT)] if name.endswith(NEXT) else name)
    head, tail = prefix + "@", NEXT + ".service.d"
    try:
        entries = os.listdir(runtime_dir)
    except OSError:
        entries = []
    for entry in entries:
        if entry.startswith(head) and entry.endswith(tail) and len(entry) > len(head) + len(tail) \
                and os.path.isfile(os.path.join(runtime_dir, entry, DROP_IN)):
            ids.add(entry[len(head):-len(tail)])
    return ids


def observe(systemctl, prefix, listed, proc="/proc", runtime_dir=RUNTIME_DIR):
    """Each worker listed, then each other one :func:`discover` finds (``listed`` false): its
    state, the release its main process runs (the same read as a move's), and its overlap's
    state, release and pin. Reads only."""
    check_names(prefix, listed, unit_param="worker_unit")
    ids = list(listed) + sorted(discover(systemctl, prefix, runtime_dir) - set(listed))
    views = []
    for worker_id in ids:
        worker = Worker(systemctl, {"unit": prefix, "runtime_dir": runtime_dir}, worker_id, proc)
        props, path = worker.release_of(worker.original)
        next_props, next_path = worker.release_of(worker.overlap)
        views.append({
            "worker": worker_id, "listed": worker_id in listed, "unit": worker.original,
            "load_state": props.get("LoadState"), "active_state": props.get("ActiveState"),
            "sub_state": props.get("SubState"), "main_pid": int(props.get("MainPID") or 0),
            "running_release": os.path.basename(path) if path else None,
            "overlap": {"unit": worker.overlap, "active_state": next_props.get("ActiveState"),
                        "main_pid": int(next_props.get("MainPID") or 0),
                        "running_release": os.path.basename(next_path) if next_path else None,
                        "pinned_to": pinned_to(read_file(worker.drop_in))}})
    return views


def read(params, systemctl, proc="/proc", runtime_dir=RUNTIME_DIR):
    """``host.workers`` of ``deploy_journal_info``: :func:`observe` of ``params['worker_unit']``
    and ``params['workers']``, or nothing without a worker unit."""
    if not params.get("worker_unit"):
        if params.get("workers"):
            raise WorkerError("workers needs worker_unit, the prefix of their template unit", "workers")
        return []
    return observe(systemctl, params["worker_unit"], params.get("workers") or [], proc, runtime_dir)
