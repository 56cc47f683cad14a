"""A real third-party stack for the deploy tests: Flask under gunicorn, in the release's venv.

tests/real_apps/build_gunicorn_release.py copies this file to the root of each release and
sets CODE_RELEASE there ("v1", "v2"); the release's venv holds Flask, gunicorn and the small
distribution ``releasemark`` built for that release alone (``RELEASE = "v1"``, version 1.0).
The unit runs ``/srv/demo/current/venv/bin/python -m gunicorn ... wsgi:app`` with the
release as its working directory.

The same HTTP interface as the sample app (tests/sample_app/app.py, docs/development.md):
``/`` JSON identity, ``/health``, ``/slow?ms=N``, ``/events`` (server-sent events). The
identity adds ``dependency``: what this worker's libraries say, looked up at request time,
never cached by this module. ``releasemark`` is imported inside the handler (a worker that
gunicorn's --max-requests recycled imports it afresh, from the site-packages its sys.path
names now), and the installed distribution's metadata is read on every request; when the
module and the metadata disagree, ``dependency`` says both (``v1 (dist 2.0)``), so an answer
from code of one release running on libraries of another never looks whole.
"""
import importlib
import json
import os
import socket
import sys
import time
from importlib import metadata

from flask import Flask, Response, jsonify, request

CODE_RELEASE = "dev"
SLOW_MAX_MS = 60000
# An SSE stream ends by itself after this long (the client reconnects): gunicorn's graceful
# stop waits for in-flight responses, and an endless stream would hold a stopping worker
# until --graceful-timeout.
EVENTS_MAX_S = 5.0

app = Flask(__name__)


def dependency():
    """``(dependency, details)``: the releasemark module's RELEASE, checked against the version
    of the distribution installed where this process's sys.path finds it now."""
    releasemark = importlib.import_module("releasemark")
    dist = metadata.version("releasemark")
    mark = releasemark.RELEASE
    details = {"module": mark, "module_version": releasemark.__version__, "dist": dist,
               "file": releasemark.__file__}
    if dist != releasemark.__version__:
        mark = "%s (dist %s)" % (mark, dist)
    return mark, details


def identity():
    mark, details = dependency()
    return {
        "version": CODE_RELEASE,
        "dependency": mark,
        "host": socket.gethostname(),
        "port": int(os.environ["PORT"]),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "releasemark": details,
        "cwd": os.getcwd(),
        "prefix": sys.prefix,
    }


def int_param(name, default, low, high):
    """The integer query parameter clamped to ``high``; None when invalid."""
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    return None if value < low else min(value, high)


@app.get("/")
def root():
    return jsonify(identity())


@app.get("/health")
def health():
    return Response("ok\n", mimetype="text/plain")


@app.get("/slow")
def slow():
    ms = int_param("ms", 1000, 0, SLOW_MAX_MS)
    if ms is None:
        return Response("ms must be an integer >= 0\n", status=400, mimetype="text/plain")
    started = time.monotonic()
    time.sleep(ms / 1000.0)
    return jsonify(dict(identity(), slept_ms=int((time.monotonic() - started) * 1000)))


@app.get("/events")
def events():
    interval = int_param("interval_ms", 1000, 10, 60000)
    if interval is None:
        return Response("interval_ms must be an integer >= 10\n", status=400,
                        mimetype="text/plain")

    def stream():
        yield "retry: 500\n\n"
        ends = time.monotonic() + EVENTS_MAX_S
        seq = 0
        while True:
            seq += 1
            yield "id: %d\ndata: %s\n\n" % (seq, json.dumps(dict(identity(), seq=seq)))
            if time.monotonic() + interval / 1000.0 > ends:
                return
            time.sleep(interval / 1000.0)

    return Response(stream(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store"})
