#!/usr/bin/env python
"""The sample app's background worker: a queue consumer with no port, as the app's Celery or RQ
workers would be, run by the unit ``demo-worker@ID`` from the release (stdlib only).

The queue is a spool under the app's ``shared/queue`` (the one directory the unit may write):
a job is a file in ``new/``; a worker claims it by renaming it into ``claimed/`` (atomic, so
exactly one worker gets it), works on it for ``JOB_SECONDS`` (default 0.3), writes the result
``done/JOB.PID.json`` (the release that ran it, from this file's release and the worker's
identity) and removes the claim. On SIGTERM it finishes the job in hand and takes no other.
``WORKER_STARTUP_DELAY`` (default 2) seconds pass before it consumes, as a real worker's
imports and connections take; ``release.json``'s ``"worker": "crash"`` makes it exit at start
(a release whose worker cannot start while its web instance is fine).
"""
import json
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The instance sees its release at ROOT/current (docs/apps.md): shared/ is beside it.
QUEUE = os.path.join(os.path.dirname(HERE), "shared", "queue")
stopping = False


def log(event, **fields):
    sys.stdout.write(json.dumps(dict(fields, event=event), sort_keys=True) + "\n")
    sys.stdout.flush()


def on_term(_signum, _frame):
    global stopping
    stopping = True
    log("stopping", reason="SIGTERM")


def claim(new, claimed):
    for name in sorted(os.listdir(new)):
        if name.startswith("."):
            continue  # a job still being written (the producer renames it into place)
        try:
            os.rename(os.path.join(new, name), os.path.join(claimed, name))
        except FileNotFoundError:
            continue  # another worker claimed it first
        return name
    return None


def main():
    with open(os.path.join(HERE, "release.json")) as handle:
        release = json.load(handle)
    version = release["version"]
    worker = os.environ.get("WORKER", "?")
    if release.get("worker") == "crash":
        log("crash", version=version, worker=worker)
        return 1
    signal.signal(signal.SIGTERM, on_term)
    job_seconds = float(os.environ.get("JOB_SECONDS", "0.3"))
    time.sleep(float(os.environ.get("WORKER_STARTUP_DELAY", "2")))
    dirs = {d: os.path.join(QUEUE, d) for d in ("new", "claimed", "done")}
    for path in dirs.values():
        os.makedirs(path, exist_ok=True)
    log("consuming", version=version, worker=worker, pid=os.getpid())
    while not stopping:
        name = claim(dirs["new"], dirs["claimed"])
        if name is None:
            time.sleep(0.05)
            continue
        claimed_at = time.time()
        try:
            with open(os.path.join(dirs["claimed"], name)) as handle:
                enqueued = json.load(handle).get("enqueued")
        except (OSError, ValueError):
            enqueued = None
        time.sleep(job_seconds)
        result = {"job": name, "version": version, "worker": worker, "pid": os.getpid(),
                  "enqueued": enqueued, "claimed_at": claimed_at, "done_at": time.time()}
        final = os.path.join(dirs["done"], "%s.%d.json" % (name, os.getpid()))
        with open(final + ".tmp", "w") as handle:
            json.dump(result, handle)
        os.rename(final + ".tmp", final)
        os.unlink(os.path.join(dirs["claimed"], name))
    log("stopped", version=version, worker=worker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
