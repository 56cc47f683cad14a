"""A real third-party ASGI stack for the deploy tests: FastAPI under uvicorn, in the release's venv.

tests/real_apps/build_uvicorn_release.py copies this file to the root of each release and
sets CODE_RELEASE there ("v1", "v2"); the release's venv holds FastAPI, uvicorn and the small
distribution ``releasemark`` built for that release alone (``RELEASE = "v1"``, version 1.0).
The unit runs ``/srv/demo/current/venv/bin/python -m uvicorn main:app --workers 2 ...`` with
the release as its working directory: uvicorn's parent process binds the port and starts each
worker as a fresh interpreter (multiprocessing's spawn, ``sys.executable`` = the venv's python
under the instance's own ``current``) that imports this module.

The same HTTP interface as the sample app and the gunicorn app: ``/`` JSON identity,
``/health``, ``/slow?ms=N``, ``/events`` (server-sent events), with ``dependency`` looked up
at request time as in tests/real_apps/gunicorn_app/wsgi.py (``v1 (dist 2.0)`` when the module
and the installed distribution's metadata disagree).

STARTUP_DELAY (seconds, default 0): each worker waits this long in the app's startup (the
lifespan) before it serves. uvicorn's parent has bound the port by then, so connections wait
in its backlog; HAProxy and the deploy's checks send none before ``/health`` answers.

On SIGTERM (systemd sends it to every process of the unit) the parent stops its workers with
SIGTERM and waits for them; each worker stops accepting, lets its connections finish their
responses (an event stream ends by itself within EVENTS_MAX_S) for at most
``--timeout-graceful-shutdown`` seconds, then exits.
"""
import asyncio
import contextlib
import importlib
import json
import os
import socket
import sys
import time
from importlib import metadata

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

CODE_RELEASE = "dev"
SLOW_MAX_MS = 60000
# An SSE stream ends by itself after this long (the client reconnects): a stopping worker
# waits for its responses, and an endless stream would hold it until the graceful timeout.
EVENTS_MAX_S = 5.0


@contextlib.asynccontextmanager
async def lifespan(_app):
    delay = float(os.environ.get("STARTUP_DELAY") or 0)
    if delay > 0:
        await asyncio.sleep(min(delay, 3600.0))
    yield


app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)


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


def int_param(request, name, default, low, high):
    """The integer query parameter clamped to ``high``; None when invalid."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    return None if value < low else min(value, high)


@app.get("/")
async def root():
    return JSONResponse(identity())


@app.get("/health")
async def health():
    return PlainTextResponse("ok\n")


@app.get("/slow")
async def slow(request: Request):
    ms = int_param(request, "ms", 1000, 0, SLOW_MAX_MS)
    if ms is None:
        return PlainTextResponse("ms must be an integer >= 0\n", status_code=400)
    started = time.monotonic()
    await asyncio.sleep(ms / 1000.0)
    return JSONResponse(dict(identity(), slept_ms=int((time.monotonic() - started) * 1000)))


@app.get("/events")
async def events(request: Request):
    interval = int_param(request, "interval_ms", 1000, 10, 60000)
    if interval is None:
        return PlainTextResponse("interval_ms must be an integer >= 10\n", status_code=400)

    async def stream():
        yield "retry: 500\n\n"
        ends = time.monotonic() + EVENTS_MAX_S
        seq = 0
        while True:
            seq += 1
            yield "id: %d\ndata: %s\n\n" % (seq, json.dumps(dict(identity(), seq=seq)))
            if time.monotonic() + interval / 1000.0 > ends:
                return
            await asyncio.sleep(interval / 1000.0)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store"})
