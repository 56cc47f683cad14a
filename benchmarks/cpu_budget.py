#!/usr/bin/env python
"""Where a rolling deploy's CPU goes, and what that means for a batch of hosts on this machine.

    benchmarks/cpu_budget.py [--deploys 4] [--calls 10] [--lab NAME] [--app-hosts N] [--mitogen]
                             [--no-trace]

Boots the lab ``benchcpu`` (one LB host, ``--app-hosts`` app hosts, default 1; or uses the running
lab NAME, left up), then, with no load:

- runs ``--calls`` ad-hoc calls of ``ansible.builtin.ping`` (a module: AnsiballZ, Python) and of
  ``ansible.builtin.raw`` (a shell command, no Python) against the app host, and reports the CPU
  seconds each call costs on the controller and on the host;
- runs ``--deploys`` rolling deploys of one app host (v2, v3, v2, ...) with the timing callback,
  and reports per deploy: wall time, CPU seconds on the controller (ansible-playbook and every
  process it started), on the app host and on the LB host, and how many tasks ran, how many were
  skipped and how many ran a module on a host (remote calls) per app host. With several app
  hosts the deploy is a fleet's: ``hitless_serial: [1, "100%"]``, the first host then the others
  at once, and one host's share is the whole deploy's CPU divided by the app hosts (what a fleet
  shares, the playbook's start and the HAProxy calls of a batch, is spread over its hosts).

Then, unless ``--no-trace``, one more deploy with the callback ``hitless_host_cpu``, which charges
the hosts' CPU to the task that used it (sampled at every task's start), and a table of the
costliest tasks on the hosts. That deploy is not in the figures above: the sampling costs the
controller CPU of its own.

CPU seconds of a lab host are summed over its processes (user + system, with what its reaped
children used), read from /proc before and after; the lab hosts are containers of this
machine, so their CPU is this machine's. The last lines divide the CPU of one host's deploy by
the cores: the least wall time a batch of hosts deployed at once can take here, before any wait.
With ``--mitogen``, Ansible runs every call through mitogen's strategy (``mitogen_linear``; the
``mitogen`` package must be installed beside ansible-core, as in ``make cpu-budget MITOGEN=1``).
A benchmark, not a test: nothing asserts on a figure; the exit status says whether every deploy
succeeded. Figures go to ``.tmp/bench/cpu-<time>.json``.
"""
import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "lab"))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "callback_plugins"))

import demo  # noqa: E402
from rolling_benchmark import TIMING_ENV, Interrupted, _on_signal, lab_down, lab_up, load_timing, log  # noqa: E402
from hitless_host_cpu import lab_cpu as host_cpu  # noqa: E402

OUT = os.path.join(REPO, ".tmp", "bench")
RELEASES = ("v2", "v3")
# Actions that run on the controller only: every other task that ran called a module on a host.
CONTROLLER_ACTIONS = {
    "ansible.builtin.set_fact", "ansible.builtin.assert", "ansible.builtin.fail",
    "ansible.builtin.debug", "ansible.builtin.include_tasks", "ansible.builtin.import_tasks",
    "ansible.builtin.include_role", "ansible.builtin.validate_argument_spec",
    "ansible.builtin.set_stats", "ansible.builtin.meta", "hitless.deploy.deploy_record",
    "set_fact", "assert", "fail", "debug", "include_tasks", "meta", "validate_argument_spec",
}


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measured(lab_name, argv, env, log_path, timeout=300):
    """Run ``argv``; return (rc, wall s, controller CPU s, {lab host: CPU s})."""
    before_hosts, before_self = host_cpu(lab_name), children_cpu()
    started = time.monotonic()
    with open(log_path, "w") as handle:
        proc = subprocess.run(argv, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                              timeout=timeout, check=False)
    wall = time.monotonic() - started
    after_hosts = host_cpu(lab_name)
    return (proc.returncode, wall, children_cpu() - before_self,
            {h: after_hosts[h] - before_hosts.get(h, 0.0) for h in after_hosts})


def mitogen_env():
    """The settings that make Ansible run through mitogen, from the installed package."""
    try:
        import ansible_mitogen  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise demo.DemoError("--mitogen: the mitogen package is not installed for %s "
                             "(make cpu-budget MITOGEN=1 installs it)" % sys.executable)
    return {"ANSIBLE_STRATEGY_PLUGINS": os.path.join(os.path.dirname(ansible_mitogen.__file__),
                                                     "plugins", "strategy"),
            "ANSIBLE_STRATEGY": "mitogen_linear"}


def call_costs(lab, calls, workdir, extra_env):
    """CPU per ad-hoc call of a Python module and of a raw command on the first app host."""
    host = lab.app_hosts[0]
    costs = {}
    for name, args in (("module (ansible.builtin.ping)", ["-m", "ansible.builtin.ping"]),
                       ("raw command (ansible.builtin.raw true)", ["-m", "ansible.builtin.raw", "-a", "true"])):
        controller = on_host = 0.0
        for index in range(calls):
            rc, _wall, cpu, hosts = measured(
                lab.name, [os.path.join(demo.BIN, "ansible"), "-i", lab.inventory, host] + args,
                demo.ansible_env(extra_env), os.path.join(workdir, "call-%d.log" % index), timeout=60)
            if rc != 0:
                raise demo.DemoError("%s on %s failed (exit %d), see %s" % (name, host, rc, workdir))
            controller += cpu
            on_host += hosts[host]
        # The ad-hoc run's own start-up is in the controller figure: the host's is the call alone.
        costs[name] = {"controller_s": round(controller / calls, 3), "host_s": round(on_host / calls, 3)}
    return costs


def task_counts(events, host):
    ran = [e for e in events if e["host"] == host and e["status"] != "skipped"]
    return {
        "tasks": len([e for e in events if e["host"] == host]),
        "skipped": len([e for e in events if e["host"] == host and e["status"] == "skipped"]),
        "remote_calls": sum(len([i for i in e["items"] if not i["skipped"]]) or 1
                            for e in ran if e["action"] not in CONTROLLER_ACTIONS),
    }


def deploys(lab, count, workdir, extra_env):
    fleet = {"hitless_serial": [1, "100%"]} if len(lab.app_hosts) > 1 else {}
    rows = []
    for index in range(count):
        release = RELEASES[index % len(RELEASES)]
        timing = os.path.join(workdir, "timing-%d.jsonl" % index)
        env = demo.ansible_env(dict(TIMING_ENV, HITLESS_TIMING_FILE=timing, **extra_env))
        variables = dict(demo.DEPLOY_VARS, hitless_release_src=os.path.join(demo.RELEASES, release + ".tar.gz"),
                         **fleet)
        argv = [os.path.join(demo.BIN, "ansible-playbook"), "-i", lab.inventory, demo.PLAYBOOK,
                "-e", json.dumps(variables)]
        rc, wall, controller, hosts = measured(lab.name, argv, env,
                                               os.path.join(workdir, "deploy-%d.log" % index))
        row = dict(release=release, rc=rc, wall_s=round(wall, 2), controller_s=round(controller, 2),
                   hosts_s={h: round(s, 2) for h, s in hosts.items()},
                   **task_counts(load_timing(timing), lab.app_hosts[0]))
        rows.append(row)
        log("deploy %d (%s): rc %d, %.1f s wall, CPU s: controller %.2f, %s; tasks %d (%d skipped), "
            "remote calls %d" % (index + 1, release, rc, wall, controller,
                                 ", ".join("%s %.2f" % kv for kv in sorted(hosts.items())),
                                 row["tasks"], row["skipped"], row["remote_calls"]))
    return rows


def traced_deploy(lab, index, workdir, extra_env):
    """One more deploy with the hosts' CPU charged to each task; [(task, {host: CPU s})]."""
    release = RELEASES[index % len(RELEASES)]
    trace = os.path.join(workdir, "host-cpu-%d.json" % index)
    enabled = ",".join(filter(None, (TIMING_ENV["ANSIBLE_CALLBACKS_ENABLED"], "hitless_host_cpu")))
    env = demo.ansible_env(dict(TIMING_ENV, ANSIBLE_CALLBACKS_ENABLED=enabled,
                                HITLESS_TIMING_FILE=os.path.join(workdir, "timing-traced.jsonl"),
                                HITLESS_HOST_CPU_LAB=lab.name, HITLESS_HOST_CPU_FILE=trace,
                                **extra_env))
    fleet = {"hitless_serial": [1, "100%"]} if len(lab.app_hosts) > 1 else {}
    variables = dict(demo.DEPLOY_VARS, hitless_release_src=os.path.join(demo.RELEASES, release + ".tar.gz"),
                     **fleet)
    argv = [os.path.join(demo.BIN, "ansible-playbook"), "-i", lab.inventory, demo.PLAYBOOK,
            "-e", json.dumps(variables)]
    rc, _wall, _controller, _hosts = measured(lab.name, argv, env,
                                              os.path.join(workdir, "deploy-traced.log"))
    if rc != 0:
        raise demo.DemoError("the traced deploy failed (exit %d), see %s" % (rc, workdir))
    with open(trace) as handle:
        return [tuple(row) for row in json.load(handle)]


def per_task(lab, trace, top=15):
    """Rows (task, app host CPU s, LB host CPU s), one app host's share, costliest first; a
    release's name in a task's name is shown as R, so that its tasks add up across releases."""
    apps, lbs = lab.app_hosts, lab.lb_hosts
    sums = {}
    for task, hosts in trace:
        name = re.sub(r"\bv\d+(\+[0-9a-f]+)?\b", "R", task)
        app, lb = sums.get(name, (0.0, 0.0))
        sums[name] = (app + sum(hosts.get(h, 0.0) for h in apps) / len(apps),
                      lb + sum(hosts.get(h, 0.0) for h in lbs) / len(apps))
    rows = sorted(((n, a, b) for n, (a, b) in sums.items()), key=lambda r: -(r[1] + r[2]))
    shown, rest = rows[:top], rows[top:]
    log()
    log("Where the hosts' CPU went, one traced deploy (one app host's share, CPU s; the "
        "%d costliest of %d tasks):" % (len(shown), len(rows)))
    log()
    log("| task | app host | LB host |")
    log("| --- | ---: | ---: |")
    for name, app, lb in shown:
        log("| %s | %.2f | %.2f |" % (name, app, lb))
    log("| the other %d tasks | %.2f | %.2f |"
        % (len(rest), sum(r[1] for r in rest), sum(r[2] for r in rest)))
    log("| all | %.2f | %.2f |" % (sum(r[1] for r in rows), sum(r[2] for r in rows)))
    return [{"task": n, "app_host_s": round(a, 3), "lb_host_s": round(b, 3)} for n, a, b in rows]


def mean(values):
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def report(lab, costs, rows):
    ok = [r for r in rows if r["rc"] == 0]
    cores = os.cpu_count() or 1
    per_host = mean(r["controller_s"] + sum(r["hosts_s"].values()) for r in ok) / len(lab.app_hosts)
    log()
    log("| call | controller CPU s | host CPU s |")
    log("| --- | ---: | ---: |")
    for name, cost in costs.items():
        log("| %s | %.3f | %.3f |" % (name, cost["controller_s"], cost["host_s"]))
    log()
    log("| app hosts | deploys | wall s | controller CPU s | app host CPU s | LB host CPU s | "
        "tasks (skipped) | remote calls |")
    log("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    apps, lbs = lab.app_hosts, lab.lb_hosts
    # With several app hosts, every figure but the wall time is one host's share.
    log("| %d | %d | %.2f | %.2f | %.2f | %.2f | %.0f (%.0f) | %.0f |" % (
        len(apps), len(ok), mean(r["wall_s"] for r in ok), mean(r["controller_s"] for r in ok) / len(apps),
        mean(sum(r["hosts_s"][h] for h in apps) for r in ok) / len(apps),
        mean(sum(r["hosts_s"][h] for h in lbs) for r in ok) / len(apps),
        mean(r["tasks"] for r in ok), mean(r["skipped"] for r in ok), mean(r["remote_calls"] for r in ok)))
    log()
    log("One host's deploy uses %.1f CPU s in all; with %d cores, a batch of N hosts at once needs at "
        "least N x %.1f / %d s of CPU time before any wait: %s."
        % (per_host, cores, per_host, cores,
           ", ".join("%d host%s %.0f s" % (n, "" if n == 1 else "s", n * per_host / cores)
                     for n in (1, 2, 5, 10))))
    return per_host


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--deploys", type=int, default=4)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--lab", help="a running lab to use (left up); default: boot benchcpu")
    parser.add_argument("--app-hosts", type=int, default=1,
                        help="app hosts of the lab booted (default 1); more deploy as a fleet")
    parser.add_argument("--mitogen", action="store_true",
                        help="run Ansible through mitogen's strategy (mitogen_linear)")
    parser.add_argument("--no-trace", action="store_true",
                        help="no extra deploy charging the hosts' CPU to each task")
    args = parser.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _on_signal)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = os.path.join(OUT, "cpu-" + stamp)
    os.makedirs(workdir, exist_ok=True)
    name = args.lab or "benchcpu"
    booted = False
    try:
        if not args.lab:
            lab_up(name, args.app_hosts, workdir)
            booted = True
        extra_env = mitogen_env() if args.mitogen else {}
        lab = demo.Lab(name)
        costs = call_costs(lab, args.calls, workdir, extra_env)
        rows = deploys(lab, args.deploys, workdir, extra_env)
        per_host = report(lab, costs, rows)
        tasks = None
        if not args.no_trace:
            tasks = per_task(lab, traced_deploy(lab, args.deploys, workdir, extra_env))
        with open(os.path.join(OUT, "cpu-%s.json" % stamp), "w") as handle:
            json.dump({"calls": costs, "deploys": rows, "cpu_per_host_deploy_s": per_host,
                       "host_cpu_per_task": tasks,
                       "strategy": extra_env.get("ANSIBLE_STRATEGY", "linear"),
                       "app_hosts": len(lab.app_hosts),
                       "cores": os.cpu_count(), "load_average": os.getloadavg()}, handle, indent=1)
        return 0 if rows and all(r["rc"] == 0 for r in rows) else 1
    except (demo.DemoError, Interrupted, subprocess.TimeoutExpired) as error:
        log("cpu_budget: %s" % error)
        return 2
    finally:
        if booted:
            lab_down(name, workdir)


if __name__ == "__main__":
    sys.exit(main())
