# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy lock of one HAProxy backend: one rollout at a time, and who holds it.

The lock is a JSON file ``<lock_dir>/<backend>.json`` on every HAProxy host of the backend:
``{"deploy_id", "holder": {...}, "backend", "hosts": [...], "since", "updated", "entered_by",
"holders"}``. ``hosts`` are the app hosts of the rollout that have not finished yet; the lock is
free again when the last one leaves, or when the rollout stops (``absent``). Deploys with the
same ``deploy_id`` (the slices of one sliced job, a re-run to resume) share it; each run (one
ansible-playbook process, named by its holder's controller, pid and pid start) answers for the
hosts it entered (``entered_by``: host -> run, ``holders``: run -> holder), so a run that stops
takes only its own hosts out, never the hosts of another slice still at work, and ``holder``
is always a run that still has hosts. Read-modify-write happens under an
``flock`` on ``<backend>.guard`` so two deploys that start in the same second cannot both win,
and the file is replaced atomically (temp file, fsync, rename) so a crash never leaves half a
lock. Pure stdlib; runs on the target (Python >= 3.9).
"""

import contextlib
import fcntl
import json
import os
import re
import time

from ansible_collections.hitless.deploy.plugins.module_utils._atomic import remove, write_json

LOCK_DIR = "/var/lib/hitless-deploy/locks"
STATES = ("held", "released", "absent")
_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")


class LockError(Exception):
    """A refusal; ``param`` names the option at fault, ``lock`` is the lock as found."""

    def __init__(self, msg, param=None, lock=None):
        super(LockError, self).__init__(msg)
        self.msg = msg
        self.param = param
        self.lock = lock


def check_params(params):
    backend = params.get("backend") or ""
    if not _NAME.match(backend):
        raise LockError("backend %r must be a HAProxy backend name (letters, digits, '_.:-')"
                        % backend, "backend")
    if params.get("state") and not params.get("deploy_id"):
        raise LockError("deploy_id is required with state %s" % params["state"], "deploy_id")
    if params.get("state") in ("held", "released") and not entering(params):
        raise LockError("host is required with state %s" % params["state"], "host")


def entering(params):
    """The app hosts a call enters or leaves with: O(host), one name or a batch's list."""
    host = params.get("host") or []
    return [host] if isinstance(host, str) else [h for h in host if h]


def lock_path(lock_dir, backend):
    return os.path.join(lock_dir, backend + ".json")


def read_lock(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (IOError, OSError):
        return None
    except ValueError:
        # A torn or foreign file is not a lock anybody can prove they hold: report it as held
        # by nobody known, so it is never silently ignored.
        return {"deploy_id": "(unreadable lock file %s)" % path, "holder": {}, "hosts": []}


@contextlib.contextmanager
def guarded(lock_dir, backend):
    os.makedirs(lock_dir, mode=0o755, exist_ok=True)
    fd = os.open(os.path.join(lock_dir, backend + ".guard"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def describe(lock):
    """One line naming who holds ``lock``, for messages."""
    holder = lock.get("holder") or {}
    parts = ["deploy %s" % lock.get("deploy_id")]
    for key, label in (("release", "release"), ("controller", "controller"), ("user", "user"),
                       ("pid", "pid")):
        if holder.get(key) not in (None, ""):
            parts.append("%s %s" % (label, holder[key]))
    if lock.get("since"):
        parts.append("since %s" % time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                time.gmtime(float(lock["since"]))))
    if lock.get("hosts"):
        parts.append("hosts not finished: %s" % ", ".join(lock["hosts"]))
    return ", ".join(parts)


def run_of(holder):
    """The run a holder belongs to: its controller and ansible-playbook process (pid and start
    time). The slices of one sliced job share the deploy id, not the run."""
    holder = holder or {}
    return "%s/%s/%s" % (holder.get("controller") or "", holder.get("pid") or "",
                         holder.get("pid_start") or "")


def _created(params, hosts, now, **extra):
    holder = params.get("holder") or {}
    run = run_of(holder)
    return dict({"deploy_id": params["deploy_id"], "holder": holder,
                 "backend": params["backend"], "hosts": hosts, "since": now, "updated": now,
                 "entered_by": dict.fromkeys(hosts, run), "holders": {run: holder}}, **extra)


def _held(params, lock, now):
    """The lock after ``params``' deploy enters it with its hosts (one, or a batch); raises when
    another deploy holds it."""
    deploy_id, batch = params["deploy_id"], entering(params)
    hosts = list(params.get("hosts") or [])
    hosts += [h for h in batch if h not in hosts]
    if lock is None:
        return _created(params, hosts, now), None
    if lock.get("deploy_id") == deploy_id:
        holder = params.get("holder") or {}
        run = run_of(holder)
        listed = lock.get("hosts", [])
        entered_by = lock.get("entered_by")
        if entered_by is None:
            # A lock written before runs were recorded: hosts are entered as they were then.
            added = [h for h in batch if h not in listed]
            return (dict(lock, hosts=listed + added, updated=now) if added else lock), None
        if all(h in listed and entered_by.get(h) == run for h in batch):
            return lock, None
        # Another run of the same rollout (a slice, a re-run that resumes) enters: it answers
        # for these hosts and for its other hosts nobody listed yet, as a run that creates the
        # lock does.
        added = [h for h in hosts if h not in listed]
        entered_by = dict(entered_by, **dict.fromkeys(added + batch, run))
        holders = dict(lock.get("holders") or {})
        holders.setdefault(run, holder)
        return dict(lock, hosts=listed + added, entered_by=entered_by, holders=holders,
                    updated=now), None
    if params.get("takeover_from") and params["takeover_from"] == lock.get("deploy_id"):
        # The interrupted rollout's unfinished hosts stay listed: each is repaired from its own
        # journal when this rollout reaches it, and the lock is free only once all are done.
        merged = list(lock.get("hosts", [])) + [h for h in hosts if h not in lock.get("hosts", [])]
        took_over = lock.get("deploy_id")
        return _created(params, merged, now, took_over_from=took_over), took_over
    raise LockError("backend %s is locked by another rollout: %s"
                    % (params["backend"], describe(lock)), "deploy_id", lock=lock)


def _keeping(lock, hosts, now):
    """``lock`` with only ``hosts`` left (None when none is), its runs and holder pruned to the
    runs that still answer for one of them."""
    if not hosts:
        return None
    if lock.get("entered_by") is None:
        return dict(lock, hosts=hosts, updated=now)
    entered_by = {h: run for h, run in lock["entered_by"].items() if h in hosts}
    holders = {run: holder for run, holder in (lock.get("holders") or {}).items()
               if run in entered_by.values()}
    holder = lock.get("holder") or {}
    if holders and run_of(holder) not in holders:
        # The run named as the holder has left: name one that is still at work.
        holder = holders.get(entered_by.get(hosts[0]), next(iter(holders.values())))
    return dict(lock, hosts=hosts, entered_by=entered_by, holders=holders, holder=holder,
                updated=now)


def _released(params, lock, now):
    if lock is None or lock.get("deploy_id") != params["deploy_id"]:
        return lock
    leaving = entering(params)
    hosts = [h for h in lock.get("hosts", []) if h not in leaving]
    if hosts == lock.get("hosts", []):
        return lock
    return _keeping(lock, hosts, now)


def _absent(params, lock, now):
    """A run that stops leaves with all the hosts it answers for; the hosts of another run of
    the same rollout (a slice still at work) keep the lock held."""
    if lock is None or lock.get("deploy_id") != params["deploy_id"]:
        return lock
    entered_by = lock.get("entered_by")
    if entered_by is None:
        return None
    run = run_of(params.get("holder"))
    return _keeping(lock, [h for h in lock.get("hosts", [])
                           if entered_by.get(h, run) != run], now)


def read(params):
    """What ``deploy_lock_info`` returns: the lock of the backend as found (None when free)."""
    check_params(params)
    path = lock_path(params.get("lock_dir") or LOCK_DIR, params["backend"])
    return {"changed": False, "lock": read_lock(path), "path": path}


def ensure(params, check_mode, clock=time.time):
    """Carry out one task of the ``deploy_lock`` module; return its result (without ``failed``)."""
    check_params(params)
    lock_dir = params.get("lock_dir") or LOCK_DIR
    path = lock_path(lock_dir, params["backend"])
    state = params["state"]
    now = round(clock(), 3)
    # Check mode only reads: no guard file is created.
    with guarded(lock_dir, params["backend"]) if not check_mode else contextlib.nullcontext():
        before = read_lock(path)
        took_over = None
        if state == "held":
            after, took_over = _held(params, before, now)
        elif state == "released":
            after = _released(params, before, now)
        else:
            after = _absent(params, before, now)
        changed = after != before
        if changed and not check_mode:
            if after is None:
                remove(path)
            else:
                write_json(path, after)
    return {"changed": changed, "lock": after, "path": path, "took_over_from": took_over,
            "diff": {"before": before or {}, "after": after or {}}}
