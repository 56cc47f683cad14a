#!/usr/bin/env python
"""Build the gunicorn app's release archives: DIR/gunicorn-v1.tar.gz and DIR/gunicorn-v2.tar.gz.

Each is built the way a user's CI builds a Python web app, in a fresh temporary directory
(tests/real_apps/_build.py, shared with the other real apps, says how):

- ``venv``, made by ``/usr/bin/python3 -m venv``, with Flask and gunicorn pinned in
  tests/real_apps/requirements-gunicorn.txt (from the wheel cache .tmp/real_apps/wheels) and
  ``releasemark``, a distribution of this release's own (``RELEASE = "v1"``, version 1.0; v2:
  "v2", 2.0); no pip; every module compiled with hash-based invalidation;
- the app, ``wsgi.py`` (CODE_RELEASE = "v1" / "v2") and ``gunicorn.conf.py`` from
  tests/real_apps/gunicorn_app, at the release root.

The unit (role hitless.deploy.app, ``app_exec_start`` = APP_EXEC_START below) runs gunicorn as
``venv/bin/python -m gunicorn`` with the release as working directory. An archive is rebuilt
only when its inputs changed (the builders, the app, the requirements, the Python).

Usage: build_gunicorn_release.py DIR [--force]   (prints the path of every archive, one a line)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _build  # noqa: E402

BuildError = _build.BuildError  # the error of every builder, for their callers

HERE = _build.HERE
APP_DIR = os.path.join(HERE, "gunicorn_app")
APP_FILES = ("wsgi.py", "gunicorn.conf.py")
REQUIREMENTS = os.path.join(HERE, "requirements-gunicorn.txt")

# (archive base name, CODE_RELEASE and releasemark.RELEASE, releasemark's version)
RELEASES = tuple(("gunicorn-" + release, release, version) for release, version in _build.MARKS)

# The unit's ExecStart for these releases (systemd expands ${PORT}, set from the instance).
# A recycled worker is replaced only once it has exited, and it first finishes its in-flight
# requests (an SSE stream lasts up to 5 s). With 2 workers recycled every ~50 requests, the
# other one, taking all the traffic meanwhile, often reached its own limit too: then no worker
# accepted, HAProxy's checks failed and the instance went DOWN before any deploy (seen in CI).
# 4 workers recycled every 100-150 requests still recycle several times in a clone's life.
APP_EXEC_START = ("/srv/demo/current/venv/bin/python -m gunicorn --bind 0.0.0.0:${PORT} "
                  "--workers 4 --threads 4 --worker-class gthread --max-requests 100 "
                  "--max-requests-jitter 50 --graceful-timeout 20 wsgi:app")


def build_one(directory, name, release, version, python=_build.PYTHON, wheels=_build.WHEELS,
              force=False):
    """Build DIR/NAME.tar.gz unless it exists with the same inputs; return its path."""
    digest = _build.inputs_digest(
        (name, release, version, python, _build.python_version(python)),
        (os.path.abspath(__file__), REQUIREMENTS) + tuple(
            os.path.join(APP_DIR, each) for each in APP_FILES))

    def copy(top):
        _build.copy_app(APP_DIR, APP_FILES, top, "wsgi.py", 'CODE_RELEASE = "dev"\n',
                        "CODE_RELEASE = %r\n" % release)

    def fill(top):
        _build.python_release(top, REQUIREMENTS, release, version, python, wheels, copy,
                              ("wsgi.py",))

    return _build.build_one(directory, name, digest, fill, force)


def build(directory, python=_build.PYTHON, wheels=_build.WHEELS, force=False):
    os.makedirs(directory, exist_ok=True)
    return [build_one(directory, name, release, version, python, wheels, force)
            for name, release, version in RELEASES]


def main(argv=None):
    return _build.cli(argv, __doc__, "build_gunicorn_release.py", build)


if __name__ == "__main__":
    sys.exit(main())
