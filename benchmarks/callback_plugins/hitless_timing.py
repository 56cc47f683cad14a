"""Callback for benchmarks/rolling_benchmark.py: one JSON line per task and host.

Each line holds the host, the task's name and action, when it started and ended (epoch seconds,
on the controller) and, per loop item, the module's own ``elapsed`` and ``state`` when it
returns them, so the benchmark can tell waits (app start-up, checks, drains) from
orchestration. Enabled only through ANSIBLE_CALLBACKS_ENABLED; writes to HITLESS_TIMING_FILE.
"""
import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: hitless_timing
type: aggregate
short_description: Task timings and module elapsed times as JSON lines, for the benchmark
description:
  - Writes one JSON object per task and host to the file named by E(HITLESS_TIMING_FILE).
requirements:
  - Enable it in ANSIBLE_CALLBACKS_ENABLED.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "hitless_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._starts = {}
        path = os.environ.get("HITLESS_TIMING_FILE")
        self._out = open(path, "a") if path else None

    def v2_runner_on_start(self, host, task):
        self._starts[(host.get_name(), task._uuid)] = time.time()

    def _write(self, result, status):
        if self._out is None:
            return
        host, task = result._host.get_name(), result._task
        ended = time.time()
        raw = result._result
        items = raw.get("results") if isinstance(raw.get("results"), list) else [raw]
        self._out.write(json.dumps({
            "host": host,
            "task": task.get_name(),
            "action": task.action,
            "status": status,
            "start": self._starts.pop((host, task._uuid), ended),
            "end": ended,
            "items": [_item(i) for i in items if isinstance(i, dict)],
        }) + "\n")
        self._out.flush()

    def v2_runner_on_ok(self, result):
        self._write(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._write(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._write(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._write(result, "unreachable")


def _item(result):
    args = (result.get("invocation") or {}).get("module_args") or {}
    # app_move: the instance part's state, the checks part's elapsed time.
    instance = args.get("instance") or {}
    checks = (result.get("parts") or {}).get("checks") or {}
    return {"elapsed": result.get("elapsed", checks.get("elapsed")),
            "state": args.get("state", instance.get("state")),
            "changed": bool(result.get("changed")), "skipped": bool(result.get("skipped"))}
