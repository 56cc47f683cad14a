#!/usr/bin/env python
"""Benchmark of the rolling deploy in throwaway labs: one app host, then two.

    benchmarks/rolling_benchmark.py [--sizes 1,2] [--runs 3] [--no-pipelining]

For each size it boots the lab ``bench<N>`` (one LB host, N app hosts), deploys alternating
releases (v2, v3, v2, ...) N times under the load probe and the ``show stat`` poller, and tears
the lab down again, also when something fails or the script is interrupted. It prints a table
and writes every figure to ``.tmp/bench/rolling-<time>.json``. See benchmarks/README.md for what
each figure means, orchestration overhead in particular. A benchmark, not a test: nothing here
asserts on a timing; the exit status only says whether every deploy succeeded with no failed
request.
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "lab"))

import demo  # noqa: E402

LAB = [sys.executable, os.path.join(REPO, "tests", "lab", "lab.py")]
OUT = os.path.join(REPO, ".tmp", "bench")
LAB_UP_TIMEOUT = 900
LAB_DOWN_TIMEOUT = 300
STARTUP_DELAY = float(demo.DEPLOY_VARS["rolling_environment"]["STARTUP_DELAY"])
CHECK_RISE, CHECK_INTER_MS = 2, 500
BENCH_VARS = {"rolling_check_rise": CHECK_RISE, "rolling_check_inter": CHECK_INTER_MS}
TIMING_ENV = {
    "ANSIBLE_CALLBACK_PLUGINS": os.path.join(HERE, "callback_plugins"),
    "ANSIBLE_CALLBACKS_ENABLED": "hitless_timing",
}
ACTIONS = {
    # app_move starts an instance and checks it in one call.
    "start": ("hitless.deploy.app_instance", "hitless.deploy.app_move"),
    "check": ("hitless.deploy.app_check", "hitless.deploy.app_move"),
    "haproxy": ("hitless.deploy.haproxy_server",),
}


def log(text=""):
    print(text, flush=True)


class Interrupted(Exception):
    pass


def _on_signal(signum, _frame):
    # Turned into an exception so the labs are torn down by the `finally` blocks.
    raise Interrupted("signal %d" % signum)


# --- labs --------------------------------------------------------------------------------------

def lab_up(name, app_hosts, logdir):
    log_path = os.path.join(logdir, "%s-up.log" % name)
    log("lab %s: booting 1 LB + %d app host(s) (log %s)" % (name, app_hosts,
                                                            os.path.relpath(log_path, REPO)))
    started = time.monotonic()
    with open(log_path, "w") as handle:
        proc = subprocess.run(LAB + ["up", "--name", name, "--app-hosts", str(app_hosts)],
                              stdout=handle, stderr=subprocess.STDOUT, env=demo.ansible_env(),
                              cwd=REPO, timeout=LAB_UP_TIMEOUT, check=False)
    if proc.returncode != 0:
        with open(log_path) as handle:
            tail = "".join(handle.readlines()[-20:])
        raise demo.DemoError("lab %s did not come up (exit %d):\n%s"
                             % (name, proc.returncode, tail))
    log("lab %s: up in %.0f s" % (name, time.monotonic() - started))


def lab_down(name, logdir):
    log_path = os.path.join(logdir, "%s-down.log" % name)
    with open(log_path, "w") as handle:
        proc = subprocess.run(LAB + ["down", "--name", name], stdout=handle,
                              stderr=subprocess.STDOUT, cwd=REPO, timeout=LAB_DOWN_TIMEOUT,
                              check=False)
    with open(log_path) as handle:
        last = (handle.read().strip().splitlines() or ["?"])[-1]
    log("lab %s: down (exit %d: %s)" % (name, proc.returncode, last))
    return proc.returncode


# --- figures -----------------------------------------------------------------------------------

def load_timing(path):
    events = []
    try:
        with open(path) as handle:
            events = [json.loads(line) for line in handle if line.strip()]
    except FileNotFoundError:
        pass
    return events


def waits_of(events, host):
    """Seconds a host's deploy spent waiting for the app and HAProxy, by kind (README.md)."""
    waits = {"app_start": 0.0, "app_checks": 0.0, "haproxy_ready": 0.0, "drain": 0.0}
    nominal_ready = CHECK_RISE * CHECK_INTER_MS / 1000.0
    for event in events:
        if event["host"] != host or event["status"] == "skipped":
            continue
        for item in event["items"]:
            if item["skipped"]:
                continue
            elapsed = item["elapsed"] if isinstance(item["elapsed"], (int, float)) else 0.0
            if event["action"] in ACTIONS["start"] and item["state"] in ("started", "restarted") \
                    and item["changed"]:
                waits["app_start"] += STARTUP_DELAY
            if event["action"] in ACTIONS["check"]:
                waits["app_checks"] += elapsed
            if event["action"] in ACTIONS["haproxy"] and item["state"] == "ready":
                waits["haproxy_ready"] += min(elapsed, nominal_ready)
            elif event["action"] in ACTIONS["haproxy"] and item["state"] in ("drain", "absent"):
                waits["drain"] += elapsed
    waits = {k: round(v, 3) for k, v in waits.items()}
    waits["total"] = round(sum(waits.values()), 3)
    return waits


def slowest_tasks(events, count=8):
    """Tasks that took the most controller time over the run (all hosts together)."""
    totals = {}
    for event in events:
        name = event["task"].split(" : ", 1)[-1]  # without the role's prefix
        totals[name] = totals.get(name, 0.0) + event["end"] - event["start"]
    return [[name, round(seconds, 2)]
            for name, seconds in sorted(totals.items(), key=lambda kv: -kv[1])[:count]]


def task_split(events, host, begin, end):
    """Tasks of ``host`` that started within [begin, end): how many ran and were skipped, the
    seconds inside them, and the seconds between them (Ansible's own work: strategy, includes,
    templating of the next task)."""
    mine = [e for e in events if e["host"] == host and begin <= e["start"] < end]
    inside = sum(e["end"] - e["start"] for e in mine)
    return {"ran": sum(1 for e in mine if e["status"] != "skipped"),
            "skipped": sum(1 for e in mine if e["status"] == "skipped"),
            "inside_s": round(inside, 2), "between_s": round((end - begin) - inside, 2)}


def run_figures(lab, size, run, result, events):
    figures = demo.analyse(result)
    hosts = {}
    for host, info in figures["hosts"].items():
        span = sum(s["seconds"] for s in info["steps"])
        waits = waits_of(events, host)
        begin = float(info["marks"][0]["at"]) if info["marks"] else result["started"]
        hosts[host] = {
            "tasks": task_split(events, host, begin, begin + span),
            "outcome": info["outcome"], "from": info["from"], "to": info["to"],
            "steps": {s["step"]: s["seconds"] for s in info["steps"]},
            "span_s": round(span, 2), "clone_lifetime_s": info["clone_lifetime"],
            "waits_s": waits, "overhead_s": round(span - waits["total"], 2),
        }
    all_waits = sum(h["waits_s"]["total"] for h in hosts.values())
    return {
        "lab": lab.name, "app_hosts": size, "run": run, "release": result["release"],
        "from": sorted({h["from"] for h in hosts.values()}),
        "playbook_rc": result["rc"], "wall_s": figures["wall_s"],
        "requests_during": figures["during"]["requests"],
        "failed_during": figures["during"]["failed"],
        "requests_total": figures["requests"], "failed_total": figures["failed"],
        "latency_before": figures["latency_before"], "latency_during": figures["latency_during"],
        "min_up": figures["min_up"], "by_instance": figures["by_instance"],
        "hosts": hosts,
        "overhead_per_host_s": round((figures["wall_s"] - all_waits) / max(1, len(hosts)), 2),
        "slowest_tasks": slowest_tasks(events),
        "workdir": os.path.relpath(result["workdir"], REPO),
    }


def pipelining_state(env):
    """The effective ANSIBLE_PIPELINING setting and the SSH multiplexing of the lab inventory."""
    proc = subprocess.run([os.path.join(demo.BIN, "ansible-config"), "dump", "--only-changed"],
                          capture_output=True, text=True, env=env, cwd=REPO, check=False)
    match = re.search(r"^ANSIBLE_PIPELINING\(([^)]*)\)\s*=\s*(\S+)", proc.stdout, re.M)
    return {"pipelining": match.group(2) if match else "False (default)",
            "source": match.group(1) if match else "default",
            "ssh_args": "ControlMaster=auto ControlPersist=60s (lab inventory)"}


# --- output ------------------------------------------------------------------------------------

def _lat(lat):
    return "%s/%s" % (_num(lat["p50_ms"]), _num(lat["p99_ms"]))


def _num(value, fmt="%.1f"):
    return "-" if value is None else fmt % value


def print_tables(runs, pipelining):
    log()
    log("SSH pipelining: %s (%s); %s" % (pipelining["pipelining"], pipelining["source"],
                                         pipelining["ssh_args"]))
    log()
    log("Runs (latency p50/p99 ms; overhead = time not spent waiting for the app or HAProxy, "
        "see README)")
    head = ("%-5s %-3s %-9s %7s %8s %6s %6s %13s %13s %6s %9s"
            % ("hosts", "run", "release", "wall s", "requests", "failed", "total",
               "before", "during", "min UP", "ovh/host"))
    log(head)
    log("-" * len(head))
    for r in runs:
        log("%-5d %-3d %-9s %7.1f %8d %6d %6s %13s %13s %6s %9.2f" % (
            r["app_hosts"], r["run"], "%s>%s" % ("/".join(r["from"]), r["release"]), r["wall_s"],
            r["requests_during"], r["failed_during"],
            "%d/%d" % (r["failed_total"], r["requests_total"]) if r["failed_total"] else "0",
            _lat(r["latency_before"]), _lat(r["latency_during"]),
            min([v for v in r["min_up"].values() if v is not None] or [-1]),
            r["overhead_per_host_s"]))
    log()
    log("Steps per host (s); waits: start-up + app checks + HAProxy ready + drains")
    cols = ["preflight", "prepare", "clone", "route_to_clone", "upgrade", "post_start",
            "route_back", "cleanup"]
    short = ["prefl", "prep", "clone", "to_cln", "upgr", "p_start", "back", "clean"]
    head = ("%-5s %-3s %-5s " % ("hosts", "run", "host") + " ".join("%7s" % c for c in short)
            + " %7s %7s %7s %7s %7s %7s %7s %7s" % ("span", "clone", "start", "checks", "ready",
                                                    "drain", "waits", "ovh"))
    log(head)
    log("-" * len(head))
    for r in runs:
        for host, h in sorted(r["hosts"].items()):
            w = h["waits_s"]
            log("%-5d %-3d %-5s " % (r["app_hosts"], r["run"], host)
                + " ".join("%7s" % _num(h["steps"].get(c), "%.2f") for c in cols)
                + " %7.2f %7s %7.2f %7.2f %7.2f %7.2f %7.2f %7.2f" % (
                    h["span_s"], _num(h["clone_lifetime_s"], "%.2f"), w["app_start"],
                    w["app_checks"], w["haproxy_ready"], w["drain"], w["total"], h["overhead_s"]))
    log()
    log("Means by size")
    for size in sorted({r["app_hosts"] for r in runs}):
        rows = [r for r in runs if r["app_hosts"] == size]
        hosts = [h for r in rows for h in r["hosts"].values()]
        log("  %d app host(s), %d run(s): wall %.1f s, per host span %.1f s, clone lifetime "
            "%.1f s, overhead per host %.2f s (span-based %.2f s), failed %d of %d during the "
            "deploys" % (
                size, len(rows), _mean(r["wall_s"] for r in rows),
                _mean(h["span_s"] for h in hosts), _mean(h["clone_lifetime_s"] or 0 for h in hosts),
                _mean(r["overhead_per_host_s"] for r in rows),
                _mean(h["overhead_s"] for h in hosts),
                sum(r["failed_during"] for r in rows), sum(r["requests_during"] for r in rows)))
        tasks = [h["tasks"] for h in hosts]
        log("    per host: %.0f tasks ran, %.0f skipped; %.1f s inside tasks, %.1f s between "
            "tasks" % (_mean(t["ran"] for t in tasks), _mean(t["skipped"] for t in tasks),
                       _mean(t["inside_s"] for t in tasks), _mean(t["between_s"] for t in tasks)))
        slow = {}
        for r in rows:
            for name, seconds in r["slowest_tasks"]:
                slow[name] = slow.get(name, 0.0) + seconds / len(rows)
        log("    slowest tasks (s per run, all hosts): " + "; ".join(
            "%s %.1f" % (name, sec)
            for name, sec in sorted(slow.items(), key=lambda kv: -kv[1])[:5]))


def _mean(values):
    values = list(values)
    return statistics.mean(values) if values else 0.0


# --- main --------------------------------------------------------------------------------------

def bench_size(size, runs, stamp_dir, args, env_extra):
    name = "bench%d" % size
    results = []
    try:
        lab_up(name, size, stamp_dir)
        lab = demo.Lab(name)
        for run in range(1, runs + 1):
            serving = lab.serving()
            release = "v3" if all(r == "v2" for r in serving.values()) else "v2"
            workdir = os.path.join(stamp_dir, "%s-run%d" % (name, run))
            os.makedirs(workdir, exist_ok=True)
            timing = os.path.join(workdir, "timing.jsonl")
            env = dict(env_extra, HITLESS_TIMING_FILE=timing, **TIMING_ENV)
            log("%s run %d/%d: %s -> %s"
                % (name, run, runs, "/".join(sorted(set(serving.values()))), release))
            result = demo.run_deploy(lab, release, workdir, extra_vars=BENCH_VARS,
                                     before_s=args.before, rate=args.rate, env=env, echo=False)
            figures = run_figures(lab, size, run, result, load_timing(timing))
            results.append(figures)
            log("  rc %d, wall %.1f s, during the deploy %d requests, %d failed, overhead/host "
                "%.2f s" % (result["rc"], figures["wall_s"], figures["requests_during"],
                            figures["failed_during"], figures["overhead_per_host_s"]))
            if result["rc"] != 0:
                log("  the playbook failed; its output: %s" % os.path.join(workdir, "playbook.log"))
                break
    finally:
        if not args.keep_labs:
            lab_down(name, stamp_dir)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--sizes", default="1,2", help="app hosts per lab, comma-separated (1,2)")
    parser.add_argument("--runs", type=int, default=3, help="deploys per lab (default 3)")
    parser.add_argument("--before", type=float, default=5.0,
                        help="seconds of probe before each deploy (latency 'before')")
    parser.add_argument("--rate", type=float, default=demo.RATE, help="probe requests/s")
    parser.add_argument("--no-pipelining", action="store_true",
                        help="run the playbooks with ANSIBLE_PIPELINING=False, for comparison")
    parser.add_argument("--keep-labs", action="store_true", help="leave the labs up afterwards")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error("--sizes: comma-separated numbers, e.g. 1,2")
    if not all(1 <= s <= 9 for s in sizes) or not 1 <= args.runs <= 20:
        parser.error("--sizes in 1..9, --runs in 1..20")
    if os.geteuid() != 0:
        parser.error("run as root (the labs need it)")

    env_extra = {"ANSIBLE_PIPELINING": "False" if args.no_pipelining else "True"}
    pipelining = pipelining_state(demo.ansible_env(env_extra))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    stamp_dir = os.path.join(args.out, stamp)
    os.makedirs(stamp_dir, exist_ok=True)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    runs, error = [], None
    try:
        for size in sizes:
            runs += bench_size(size, args.runs, stamp_dir, args, env_extra)
    except (demo.DemoError, Interrupted, KeyboardInterrupt, subprocess.TimeoutExpired) as exc:
        error = "%s: %s" % (type(exc).__name__, exc)
        log("benchmark stopped: %s" % error)
    report = {"started": stamp, "pipelining": pipelining, "sizes": sizes,
              "runs_per_size": args.runs,
              "settings": {"startup_delay_s": STARTUP_DELAY, "check_rise": CHECK_RISE,
                           "check_inter_ms": CHECK_INTER_MS,
                           "drain_grace_s": demo.DEPLOY_VARS["rolling_drain_grace"],
                           "probe_rate": args.rate, "before_s": args.before},
              "error": error, "runs": runs}
    path = os.path.join(args.out, "rolling-%s.json" % stamp)
    with open(path, "w") as handle:
        json.dump(report, handle, indent=2)
    if runs:
        print_tables(runs, pipelining)
    log()
    log("JSON: %s (raw probe, poller, playbook and timing files under %s)"
        % (os.path.relpath(path, REPO), os.path.relpath(stamp_dir, REPO)))
    ok = not error and runs and all(r["playbook_rc"] == 0 and r["failed_total"] == 0 for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
