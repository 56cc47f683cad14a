#!/usr/bin/env python
"""Build the uvicorn app's release archives: DIR/uvicorn-v1.tar.gz and DIR/uvicorn-v2.tar.gz.

As the gunicorn app's (tests/real_apps/_build.py says how), with an ASGI stack:

- ``venv``, made by ``/usr/bin/python3 -m venv``, with FastAPI and uvicorn pinned in
  tests/real_apps/requirements-uvicorn.txt (from the wheel cache .tmp/real_apps/wheels;
  pydantic-core is the one compiled wheel, manylinux for CPython 3.11) and this release's own
  ``releasemark``; no pip; every module compiled with hash-based invalidation;
- the app, ``main.py`` (CODE_RELEASE = "v1" / "v2") from tests/real_apps/uvicorn_app, at the
  release root.

The unit (``app_exec_start`` = APP_EXEC_START below) runs uvicorn as ``venv/bin/python -m
uvicorn`` with two worker processes and the release as working directory.

Usage: build_uvicorn_release.py DIR [--force]   (prints the path of every archive, one a line)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _build  # noqa: E402

BuildError = _build.BuildError  # the error of every builder, for their callers

HERE = _build.HERE
APP_DIR = os.path.join(HERE, "uvicorn_app")
APP_FILES = ("main.py",)
REQUIREMENTS = os.path.join(HERE, "requirements-uvicorn.txt")

# (archive base name, CODE_RELEASE and releasemark.RELEASE, releasemark's version)
RELEASES = tuple(("uvicorn-" + release, release, version) for release, version in _build.MARKS)

# The unit's ExecStart for these releases (systemd expands ${PORT}, set from the instance).
APP_EXEC_START = ("/srv/demo/current/venv/bin/python -m uvicorn main:app --host 0.0.0.0 "
                  "--port ${PORT} --workers 2 --timeout-graceful-shutdown 20")


def build_one(directory, name, release, version, python=_build.PYTHON, wheels=_build.WHEELS,
              force=False):
    """Build DIR/NAME.tar.gz unless it exists with the same inputs; return its path."""
    digest = _build.inputs_digest(
        (name, release, version, python, _build.python_version(python)),
        (os.path.abspath(__file__), REQUIREMENTS) + tuple(
            os.path.join(APP_DIR, each) for each in APP_FILES))

    def copy(top):
        _build.copy_app(APP_DIR, APP_FILES, top, "main.py", 'CODE_RELEASE = "dev"\n',
                        "CODE_RELEASE = %r\n" % release)

    def fill(top):
        _build.python_release(top, REQUIREMENTS, release, version, python, wheels, copy,
                              APP_FILES)

    return _build.build_one(directory, name, digest, fill, force)


def build(directory, python=_build.PYTHON, wheels=_build.WHEELS, force=False):
    os.makedirs(directory, exist_ok=True)
    return [build_one(directory, name, release, version, python, wheels, force)
            for name, release, version in RELEASES]


def main(argv=None):
    return _build.cli(argv, __doc__, "build_uvicorn_release.py", build)


if __name__ == "__main__":
    sys.exit(main())
