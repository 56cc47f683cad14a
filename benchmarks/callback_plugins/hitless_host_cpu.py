"""Callback for benchmarks/cpu_budget.py: the lab hosts' CPU seconds spent during each task.

At the start of every task and at the end of the playbook it sums the CPU time of every process
of every host of the lab named by E(HITLESS_HOST_CPU_LAB) (read from /proc of this machine, as
cpu_budget.py does) and charges what each host used since the last sample to the task that ran
in between. With the linear strategy a task ends on every host before the next starts, so
that is the task's own cost on the hosts, the work it left running in the background (an app
starting, systemd reloading) aside. The sampling runs in ansible-playbook, so a traced deploy's
controller CPU is not the real figure: cpu_budget.py runs it apart from the measured ones.
Enabled only through ANSIBLE_CALLBACKS_ENABLED; writes JSON to E(HITLESS_HOST_CPU_FILE).
"""
import json
import os
import sys

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: hitless_host_cpu
type: aggregate
short_description: Lab hosts' CPU seconds per task, for the CPU benchmark
description:
  - Writes a JSON list of [task name, {host: CPU seconds}] to E(HITLESS_HOST_CPU_FILE).
requirements:
  - Enable it in ANSIBLE_CALLBACKS_ENABLED; E(HITLESS_HOST_CPU_LAB) names the lab.
"""

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HZ = os.sysconf("SC_CLK_TCK")


def lab_cpu(name):
    """{host: CPU seconds its live processes and their reaped children used so far}."""
    lab_dir = os.path.join(REPO, "tests", "lab")
    if lab_dir not in sys.path:
        sys.path.insert(0, lab_dir)
    import lab as labtool  # pylint: disable=import-outside-toplevel,import-error
    totals = {}
    for host, info in labtool.load_state(name)["hosts"].items():
        ticks = 0
        for pid in labtool.host_pids(name, host, info):
            try:
                with open("/proc/%d/stat" % pid) as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        totals[host] = ticks / HZ
    return totals


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "hitless_host_cpu"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lab = os.environ.get("HITLESS_HOST_CPU_LAB")
        self._path = os.environ.get("HITLESS_HOST_CPU_FILE")
        self._rows = []
        self._task = "(playbook start)"
        self._last = lab_cpu(self._lab) if self._lab and self._path else None

    def _charge(self, next_task):
        if self._last is None:
            return
        now = lab_cpu(self._lab)
        self._rows.append([self._task, {h: round(now[h] - self._last.get(h, 0.0), 3) for h in now}])
        self._last, self._task = now, next_task

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._charge(task.get_name())

    def v2_playbook_on_handler_task_start(self, task):
        self._charge(task.get_name())

    def v2_playbook_on_stats(self, stats):
        self._charge(None)
        if self._path and self._last is not None:
            with open(self._path, "w") as handle:
                json.dump(self._rows, handle, indent=0)
