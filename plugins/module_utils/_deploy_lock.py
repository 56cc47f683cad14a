# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy lock of one HAProxy backend: one rollout at a time, and who holds it.

The lock is a JSON file ``<lock_dir>/<backend>.json`` on every HAProxy host of the backend:
``{"deploy_id", "holder": {...}, "backend", "hosts": [...], "since", "updated"}``. ``hosts`` are
the app hosts of the rollout that have not finished yet; the lock is free again when the last
one leaves, or when the rollout stops (``absent``). Deploys with the same ``deploy_id`` (the
slices of one sliced job, a re-run to resume) share it. Read-modify-write happens under an
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
STATES = ("held", "released", "absent", "info")
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
    if params["state"] != "info" and not params.get("deploy_id"):
        raise LockError("deploy_id is required with state %s" % params["state"], "deploy_id")
    if params["state"] in ("held", "released") and not params.get("host"):
        raise LockError("host is required with state %s" % params["state"], "host")


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


def _held(params, lock, now):
    """The lock after ``params``' deploy enters it; raises when another deploy holds it."""
    deploy_id, host = params["deploy_id"], params["host"]
    hosts = list(params.get("hosts") or [])
    if host not in hosts:
        hosts.append(host)
    if lock is None:
        return {"deploy_id": deploy_id, "holder": params.get("holder") or {},
                "backend": params["backend"], "hosts": hosts, "since": now, "updated": now}, None
    if lock.get("deploy_id") == deploy_id:
        if host in lock.get("hosts", []):
            return lock, None
        return dict(lock, hosts=lock.get("hosts", []) + [host], updated=now), None
    if params.get("takeover_from") and params["takeover_from"] == lock.get("deploy_id"):
        # The interrupted rollout's unfinished hosts stay listed: each is repaired from its own
        # journal when this rollout reaches it, and the lock is free only once all are done.
        merged = list(lock.get("hosts", [])) + [h for h in hosts if h not in lock.get("hosts", [])]
        return {"deploy_id": deploy_id, "holder": params.get("holder") or {},
                "backend": params["backend"], "hosts": merged, "since": now, "updated": now,
                "took_over_from": lock.get("deploy_id")}, lock.get("deploy_id")
    raise LockError("backend %s is locked by another rollout: %s"
                    % (params["backend"], describe(lock)), "deploy_id", lock=lock)


def _released(params, lock, now):
    if lock is None or lock.get("deploy_id") != params["deploy_id"]:
        return lock
    hosts = [h for h in lock.get("hosts", []) if h != params["host"]]
    if hosts == lock.get("hosts", []):
        return lock
    return dict(lock, hosts=hosts, updated=now) if hosts else None


def _absent(params, lock):
    if lock is None or lock.get("deploy_id") != params["deploy_id"]:
        return lock
    return None


def ensure(params, check_mode, clock=time.time):
    """Carry out one task of the ``deploy_lock`` module; return its result (without ``failed``)."""
    check_params(params)
    lock_dir = params.get("lock_dir") or LOCK_DIR
    path = lock_path(lock_dir, params["backend"])
    state = params["state"]
    if state == "info":
        lock = read_lock(path)
        return {"changed": False, "lock": lock, "path": path, "took_over_from": None}
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
            after = _absent(params, before)
        changed = after != before
        if changed and not check_mode:
            if after is None:
                remove(path)
            else:
                write_json(path, after)
    return {"changed": changed, "lock": after, "path": path, "took_over_from": took_over,
            "diff": {"before": before or {}, "after": after or {}}}

