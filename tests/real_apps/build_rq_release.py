#!/usr/bin/env python
"""Build the RQ app's release archives: DIR/rq-v1.tar.gz and DIR/rq-v2.tar.gz.

The gunicorn app (tests/real_apps/build_gunicorn_release.py: Flask under gunicorn, the same
HTTP interface as the sample app) with background workers: RQ and its Redis client in the same
venv (tests/real_apps/requirements-rq.txt), ``jobs.py`` (tests/real_apps/rq_app, its
CODE_RELEASE set to "v1" / "v2"), ``worker_settings.py`` and ``finishing_worker.py`` at the
release root beside ``wsgi.py``. The web unit runs APP_EXEC_START, each worker unit
WORKER_EXEC_START: ``rq worker`` from the release's venv, consuming the queue ``hitless`` of
the Redis on the lab's queue host (lab.py up --queue-host).

Usage: build_rq_release.py DIR [--force]   (prints the path of every archive, one a line)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _build  # noqa: E402
import build_gunicorn_release  # noqa: E402

BuildError = _build.BuildError

HERE = _build.HERE
GUNICORN_DIR = build_gunicorn_release.APP_DIR
GUNICORN_FILES = build_gunicorn_release.APP_FILES
JOBS_DIR = os.path.join(HERE, "rq_app")
REQUIREMENTS = os.path.join(HERE, "requirements-rq.txt")
RELEASES = tuple(("rq-" + release, release, version) for release, version in _build.MARKS)

APP_EXEC_START = build_gunicorn_release.APP_EXEC_START
JOBS_FILES = ("jobs.py", "worker_settings.py", "finishing_worker.py")
QUEUE = "hitless"  # worker_settings.QUEUES
# `python -m rq.cli`: the venv's console script `rq` names the build directory in its shebang.
# One job at a time per worker, each in a work horse RQ forks for it; on SIGTERM (to the main
# process only: the app role's KillMode=mixed) RQ's warm shutdown finishes the job in hand.
# worker_settings: Redis on the queue host, the queue, and the time a worker takes to start.
# FinishingWorker: RQ's worker, whose stop while idle cannot orphan a job it has just popped.
WORKER_EXEC_START = ("/srv/demo/current/venv/bin/python -m rq.cli worker -c worker_settings "
                     "-w finishing_worker.FinishingWorker --logging_level WARNING")


def build_one(directory, name, release, version, python=_build.PYTHON, wheels=_build.WHEELS,
              force=False):
    """Build DIR/NAME.tar.gz unless it exists with the same inputs; return its path."""
    digest = _build.inputs_digest(
        (name, release, version, python, _build.python_version(python)),
        (os.path.abspath(__file__), REQUIREMENTS, build_gunicorn_release.REQUIREMENTS,
         ) + tuple(os.path.join(JOBS_DIR, each) for each in JOBS_FILES) + tuple(
            os.path.join(GUNICORN_DIR, each) for each in GUNICORN_FILES))
    marker, replacement = 'CODE_RELEASE = "dev"\n', "CODE_RELEASE = %r\n" % release

    def copy(top):
        _build.copy_app(GUNICORN_DIR, GUNICORN_FILES, top, "wsgi.py", marker, replacement)
        _build.copy_app(JOBS_DIR, JOBS_FILES, top, "jobs.py", marker, replacement)

    def fill(top):
        _build.python_release(top, REQUIREMENTS, release, version, python, wheels, copy,
                              ("wsgi.py",) + JOBS_FILES)

    return _build.build_one(directory, name, digest, fill, force)


def build(directory, python=_build.PYTHON, wheels=_build.WHEELS, force=False):
    os.makedirs(directory, exist_ok=True)
    return [build_one(directory, name, release, version, python, wheels, force)
            for name, release, version in RELEASES]


def main(argv=None):
    return _build.cli(argv, __doc__, "build_rq_release.py", build)


if __name__ == "__main__":
    sys.exit(main())
