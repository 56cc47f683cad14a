#!/usr/bin/env python
"""Three deploy strategies side by side under the same closed-loop load, in throwaway labs.

    benchmarks/fleet_benchmark.py [--sizes 1,2,10] [--runs 3]
                                  [--strategies naive,community_general,rolling] [--keep-labs]
    .tmp/bench-venv/bin/python benchmarks/fleet_benchmark.py --report .tmp/bench/fleet-TIME.json

For each size N it boots the lab ``benchfN`` once (``--lb-hosts`` HAProxy hosts, default 2, and N
app hosts), then, run by run, deploys v2 with every strategy (their order rotated from one run
to the next), each time from the same known state: every app host serves v1 with no other
release on it, every HAProxy host has every server ready and every clone slot in maint. Sizes
of 1 and 2 hosts deploy with ``serial: 1``; larger ones with ``serial: 50%`` and ``25%``
(``--large-serials``). The strategies:

- ``naive``: benchmarks/recipes/naive.yml (unpack, switch ``current``, ``systemctl restart``);
- ``community_general``: benchmarks/recipes/community_general.yml (community.general.haproxy
  drain + wait, restart, enabled + wait), run by the ``ansible-playbook`` of the benchmark's own
  virtualenv (``--bench-venv``, with the ``ansible`` package of requirements-bench.txt);
- ``rolling``: playbooks/rolling.yml with ``hitless_serial``, the settings of make demo.

Each deploy runs under wrk (``--connections`` keep-alive connections, closed loop, split over the
HAProxy hosts, one connection per wrk thread, benchmarks/wrk/timeline.lua records every request)
and one ``show stat`` poller per HAProxy host (tests/probe/statpoller.py, every 50 ms), both
started ``--before`` seconds before the playbook. Every figure goes to
``.tmp/bench/fleet-<time>.json`` (and ``fleet-latest.json``); the raw files of each deploy stay
under ``.tmp/bench/<time>/``. ``--report FILE.json`` writes docs/benchmarks.md and the plots
docs/img/bench-10-hosts.svg and docs/img/bench-scaling.svg from it (matplotlib: run it with the
bench virtualenv's python). The labs are torn down at the end, also after an error, Ctrl-C or
SIGTERM, unless ``--keep-labs``. A benchmark, not a test: nothing is asserted on a figure; the
exit status is non-zero when a deploy failed or the benchmark stopped early.
"""
import argparse
import concurrent.futures
import gzip
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "probe"))

import rolling_benchmark as rb  # noqa: E402  (also puts tests/lab on sys.path)
import demo  # noqa: E402
from _processes import load_result, spawn, stop  # noqa: E402

OUT = rb.OUT
RECIPES = os.path.join(HERE, "recipes")
WRK_SCRIPT = os.path.join(HERE, "wrk", "timeline.lua")
DOCS = os.path.join(REPO, "docs", "benchmarks.md")
IMG = os.path.join(REPO, "docs", "img")
MAIN_BIN = demo.BIN
BENCH_VENV = os.path.join(REPO, ".tmp", "bench-venv")
STRATEGIES = ("naive", "community_general", "rolling")
LABELS = {"naive": "naive restart", "community_general": "community.general.haproxy",
          "rolling": "hitless.deploy.rolling"}
COLORS = {"naive": "#d62728", "community_general": "#ff7f0e", "rolling": "#1f77b4"}
FROM_RELEASE, TO_RELEASE = "v1", "v2"
BIN_S = 1.0
WRK_TIMEOUT_S = 10
RESET_TIMEOUT = 90
STEPS = demo.STEPS


def log(text=""):
    print(text, flush=True)


# --- labs --------------------------------------------------------------------------------------

def lab_name(size):
    return "benchf%d" % size


def lab_up(name, app_hosts, lb_hosts, logdir):
    log_path = os.path.join(logdir, "%s-up.log" % name)
    log("lab %s: booting %d LB + %d app host(s) (log %s)"
        % (name, lb_hosts, app_hosts, os.path.relpath(log_path, REPO)))
    started = time.monotonic()
    with open(log_path, "w") as handle:
        proc = subprocess.run(rb.LAB + ["up", "--name", name, "--app-hosts", str(app_hosts),
                                        "--lb-hosts", str(lb_hosts)],
                              stdout=handle, stderr=subprocess.STDOUT, env=demo.ansible_env(),
                              cwd=REPO, timeout=rb.LAB_UP_TIMEOUT, check=False)
    if proc.returncode != 0:
        with open(log_path) as handle:
            tail = "".join(handle.readlines()[-20:])
        raise demo.DemoError("lab %s did not come up (exit %d):\n%s"
                             % (name, proc.returncode, tail))
    seconds = time.monotonic() - started
    log("lab %s: up in %.0f s" % (name, seconds))
    return seconds


def _parallel(func, items):
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, max(1, len(items)))) as pool:
        return dict(zip(items, pool.map(func, items)))


# The known state every deploy starts from: v1 serving on the original instance, no clone, no
# other release, no journal, bad mark or deploy lock left by an earlier deploy.
RESET_APP = """set -e
systemctl stop {app}@{clone}.service 2>/dev/null || true
systemctl reset-failed {app}@{clone}.service 2>/dev/null || true
rm -rf /run/systemd/system/{app}@{clone}.service.d
systemctl daemon-reload
cd {root}
test -d releases/{release}
ln -sfn releases/{release} .current.bench && mv -Tf .current.bench current
rm -f previous
systemctl restart {app}@{port}.service
find releases -mindepth 1 -maxdepth 1 ! -name {release} -exec rm -rf {{}} +
rm -rf .hitless
for i in $(seq 150); do
  python3 -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:{port}/health", timeout=1)' \
    2>/dev/null && exit 0
  sleep 0.1
done
echo "{app}@{port} does not answer /health" >&2
exit 1
"""
RESET_LB = "rm -f /var/lib/hitless-deploy/locks/*"
SETTLED_S = 2.0


def reset(lab, release=FROM_RELEASE, timeout=RESET_TIMEOUT):
    """Bring the lab back to the known state; returns the seconds it took."""
    import statpoller  # needs the collection link (.tmp/collections), made by make deps

    started = time.monotonic()
    script = RESET_APP.format(app=demo.APP, clone=demo.CLONE_PORT, port=demo.PORT,
                              root=demo.ROOT, release=release)
    results = _parallel(lambda h: lab.ssh(h, script, timeout=60), lab.app_hosts)
    results.update(_parallel(lambda h: lab.ssh(h, RESET_LB, timeout=30), lab.lb_hosts))
    bad = {h: (p.stderr or p.stdout).strip() for h, p in results.items() if p.returncode != 0}
    if bad:
        raise demo.DemoError("reset of lab %s failed: %s" % (lab.name, json.dumps(bad)))
    clients = {lb: statpoller.RuntimeClient("%s:%d" % (lab.hosts[lb], demo.ADMIN_PORT),
                                            timeout=2.0)
               for lb in lab.lb_hosts}
    for client in clients.values():
        for host in lab.app_hosts:
            client.command("set server %s/%s state ready" % (demo.APP, host))
            client.command("set server %s/%s-clone state maint" % (demo.APP, host))
    # Every original answers its health check again (above); now every HAProxy host must show
    # it UP and every clone slot in MAINT, without a break for SETTLED_S (a DOWN that the
    # restart caused shows within HAProxy's fall window, and the UP after it needs rise checks).
    deadline = time.monotonic() + timeout
    good_since = None
    while True:
        now = time.monotonic()
        if now > deadline:
            raise demo.DemoError("lab %s: not every server came back UP within %d s: %s"
                                 % (lab.name, timeout, json.dumps(_states(clients))))
        states = _states(clients)
        good = all(servers.get(h, "").startswith("UP")
                   and servers.get(h + "-clone", "MAINT").startswith("MAINT")
                   for servers in states.values() for h in lab.app_hosts)
        if not good:
            good_since = None
        elif good_since is None:
            good_since = now
        elif now - good_since >= SETTLED_S:
            break
        time.sleep(0.1)
    serving = lab.serving()
    if any(r != release for r in serving.values()):
        raise demo.DemoError("lab %s: reset left %s" % (lab.name, json.dumps(serving)))
    return round(time.monotonic() - started, 2)


def _states(clients):
    import statpoller

    states = {}
    for lb, client in clients.items():
        try:
            states[lb] = statpoller.backend_servers(client, demo.APP)
        except Exception as exc:  # noqa: BLE001 - shown in the caller's time-out message
            states[lb] = {"error": str(exc)}
    return states


# --- one deploy under load -----------------------------------------------------------------------

def split(total, parts):
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def forks_for(app_hosts):
    return max(5, app_hosts)


def serial_value(serial):
    """The play's serial: "50%" and "2" as they are, "1+100%" as the list [1, "100%"]."""
    if "+" not in serial:
        return serial
    return [int(part) if part.isdigit() else part for part in serial.split("+")]


def deploy_command(strategy, lab, serial, workdir, bench_venv, startup_delay=None):
    """The strategy's ansible-playbook command. ``startup_delay``: seconds the new release takes
    to bind (a slow start, as a JVM or Rails app's), else the lab's own."""
    archive = os.path.join(demo.RELEASES, TO_RELEASE + ".tar.gz")
    if not os.path.exists(archive):
        raise demo.DemoError("no release archive %s (run 'make releases')" % archive)
    startup = demo.DEPLOY_VARS["rolling_environment"]["STARTUP_DELAY"]
    if startup_delay is not None:
        startup = "%g" % startup_delay
    if strategy == "rolling":
        variables = dict(demo.DEPLOY_VARS, **rb.BENCH_VARS)
        variables.update(demo.slow_start_vars(startup_delay)[0])
        variables.update(rolling_report_dir=os.path.join(workdir, "records"),
                         hitless_release_src=archive, hitless_serial=serial_value(serial))
        return ([os.path.join(MAIN_BIN, "ansible-playbook"), "-i", lab.inventory,
                 os.path.join(REPO, "playbooks", "rolling.yml"), "-e", json.dumps(variables)],
                MAIN_BIN)
    variables = {"bench_release_src": archive, "bench_serial": serial_value(serial),
                 "bench_startup_delay": startup}
    binary = MAIN_BIN if strategy == "naive" else os.path.join(bench_venv, "bin")
    return ([os.path.join(binary, "ansible-playbook"), "-i", lab.inventory,
             os.path.join(RECIPES, strategy + ".yml"), "-e", json.dumps(variables)], binary)


def run_deploy(lab, cmd, binary, workdir, args):
    """``cmd`` under wrk and the pollers. Returns rc, started/ended epochs, the files written."""
    os.makedirs(workdir, exist_ok=True)
    stop_file = os.path.join(workdir, "stop")
    for stale in [stop_file] + [os.path.join(workdir, f) for f in os.listdir(workdir)
                                if f.startswith(("wrk-", "poll-", "timing"))]:
        if os.path.exists(stale):
            os.unlink(stale)
    timing = os.path.join(workdir, "timing.jsonl")
    # Forks: at least one per app host (playbooks/rolling.yml stages every host at once), the
    # same for every strategy.
    env = demo.ansible_env(dict(rb.TIMING_ENV, HITLESS_TIMING_FILE=timing,
                                ANSIBLE_PIPELINING="True",
                                ANSIBLE_FORKS=str(forks_for(len(lab.app_hosts)))))
    env["PATH"] = binary + os.pathsep + env["PATH"]
    bound = int(args.before + args.timeout + args.tail + 30)
    pollers, wrks, files = [], [], {"wrk": {}, "poll": {}, "timing": timing}
    started = ended = None
    rc = None
    try:
        for lb, conns in zip(lab.lb_hosts, split(args.connections, len(lab.lb_hosts))):
            address = lab.hosts[lb]
            out = os.path.join(workdir, "poll-%s.json" % lb)
            pollers.append(spawn([sys.executable, demo.POLLER, "--admin",
                                  "%s:%d" % (address, demo.ADMIN_PORT), "--backend", demo.APP,
                                  "--duration", str(bound), "--stop-file", stop_file,
                                  "--out", out], out[:-5] + ".log"))
            files["poll"][lb] = (out, out[:-5] + ".log")
            if conns == 0:
                continue
            out = os.path.join(workdir, "wrk-%s.txt" % lb)
            with open(out[:-4] + ".log", "w") as handle:
                wrks.append(subprocess.Popen(
                    ["wrk", "-t%d" % conns, "-c%d" % conns, "-d%ds" % bound,
                     "--timeout", "%ds" % WRK_TIMEOUT_S, "-s", WRK_SCRIPT,
                     "http://%s:80/" % address, "--", str(args.think_ms)],
                    stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=dict(os.environ, WRK_TIMELINE_OUT=out)))
            files["wrk"][lb] = out
        time.sleep(args.before)
        started = time.time()
        rc, _output = demo._run_playbook(cmd, env, os.path.join(workdir, "playbook.log"),
                                         args.timeout, echo=False)
        ended = time.time()
        time.sleep(args.tail)
    finally:
        for proc in wrks:  # wrk writes its summary and the timeline on SIGINT
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in wrks:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        stop(pollers, stop_file)
    return {"rc": rc, "started": started, "ended": ended, "files": files}


# --- figures -------------------------------------------------------------------------------------

def read_wrk(path):
    """(summary dict, [(start epoch, latency s, status)]) of one wrk timeline file."""
    summary, records = {}, []
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as handle:
        for line in handle:
            if line.startswith("# summary"):
                summary = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
                continue
            parts = line.split()
            if len(parts) == 4:
                records.append((float(parts[1]), float(parts[2]), int(parts[3])))
    return summary, records


def _latency(values):
    return {"p50_ms": demo._ms(demo.percentile(values, 0.5)),
            "p99_ms": demo._ms(demo.percentile(values, 0.99)), "count": len(values)}


def up_figures(samples, t_begin, t_end, full):
    """Seconds with no server UP and below ``full`` UP servers within [t_begin, t_end], from
    poller samples [t, up, servers] (t on the same clock); each sample holds until the next."""
    none = below = 0.0
    counts = []
    for i, (t, up, _servers) in enumerate(samples):
        t_next = samples[i + 1][0] if i + 1 < len(samples) else t + 0.05
        low, high = max(t, t_begin), min(t_next, t_end)
        if high <= low:
            continue
        counts.append(up)
        if up == 0:
            none += high - low
        if up < full:
            below += high - low
    return {"no_up_s": round(none, 2), "below_full_s": round(below, 2),
            "min_up": min(counts) if counts else None}


def up_changes(samples, shift):
    """UP count as change points [[t, up], ...] (t relative to the playbook's start)."""
    points = []
    for t, up, _servers in samples:
        if not points or points[-1][1] != up:
            points.append([round(t + shift, 3), up])
    if samples:
        points.append([round(samples[-1][0] + shift, 3), samples[-1][1]])
    return points


def restarts_of(strategy, events, records, t_ref):
    """[[t, host]]: when each host's original instance was restarted (rolling: its upgrade)."""
    marks = []
    if strategy == "rolling":
        for host, rec in records.items():
            for mark in rec.get("marks", []):
                if mark.get("step") == "upgrade":
                    marks.append([round(float(mark["at"]) - t_ref, 2), host])
    else:
        for event in events:
            if event["task"].endswith("Restart the app") and event["status"] == "ok":
                marks.append([round(event["start"] - t_ref, 2), event["host"]])
    return sorted(marks)


def settled_after(poller, epoch, full):
    """Epoch from which on every sample had ``full`` servers UP, or ``epoch`` if that was
    already so (a server still UP at the playbook's end may be falling: its app restarts)."""
    low = [t for t, up, _servers in poller["samples"] if up < full]
    if not low or poller["t0_epoch"] + low[-1] < epoch:
        return epoch
    later = [t for t, _up, _servers in poller["samples"] if t > low[-1]]
    return poller["t0_epoch"] + (later[0] if later else low[-1])


def analyse(lab, strategy, serial, run, result, workdir, before_s):
    started, ended = result["started"], result["ended"]
    records = []
    summary = {}
    for lb, path in result["files"]["wrk"].items():
        s, recs = read_wrk(path)
        records += recs
        for key, value in s.items():
            summary[key] = summary.get(key, 0) + value
        with open(path, "rb") as src, gzip.open(path + ".gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.unlink(path)
    pollers = {lb: load_result(path, logfile, error=demo.DemoError)
               for lb, (path, logfile) in result["files"]["poll"].items()}
    # A restart that does not wait for its app ends its playbook before the app serves again:
    # the deploy lasts until every HAProxy host sees all app hosts UP again.
    settled = max([ended] + [settled_after(p, ended, len(lab.app_hosts)) for p in pollers.values()])
    during = [r for r in records if started <= r[0] <= settled]
    before = [r for r in records if started - before_s <= r[0] < started]
    failed = [r for r in during if r[2] != 200]
    statuses = {}
    for r in failed:
        statuses[str(r[2])] = statuses.get(str(r[2]), 0) + 1
    # Per-second series by completion time, relative to the playbook's start.
    bins = {}
    for start, lat, status in records:
        b = int((start + lat - started) // BIN_S)
        ok_fail = bins.setdefault(b, [0, 0])
        ok_fail[0 if status == 200 else 1] += 1
    series = [[b * BIN_S, v[0] / BIN_S, v[1] / BIN_S] for b, v in sorted(bins.items())]
    per_lb, up = {}, {}
    for lb, poller in pollers.items():
        shift = poller["t0_epoch"] - started
        samples = poller["samples"]
        per_lb[lb] = up_figures(samples, -shift, settled - started - shift, len(lab.app_hosts))
        per_lb[lb]["poller_errors"] = poller["errors"]
        up[lb] = up_changes(samples, shift)
    events = rb.load_timing(result["files"]["timing"])
    host_records = {}
    for path in sorted(os.listdir(os.path.join(workdir, "records"))
                       if os.path.isdir(os.path.join(workdir, "records")) else []):
        if path.endswith(".json"):
            with open(os.path.join(workdir, "records", path)) as handle:
                host_records[path[:-5]] = json.load(handle)
    hosts = {}
    for host, rec in host_records.items():
        steps = {s["step"]: s["seconds"] for s in rec.get("steps", [])}
        hosts[host] = {"outcome": rec.get("outcome"), "steps": steps,
                       "span_s": round(sum(steps.values()), 2),
                       "clone_lifetime_s": demo._float(rec.get("clone_lifetime")),
                       "failure": rec.get("failure") or None}
    n_during = len(during)
    return {
        "lab": lab.name, "app_hosts": len(lab.app_hosts), "lb_hosts": len(lab.lb_hosts),
        "serial": str(serial), "strategy": strategy, "run": run,
        "from": FROM_RELEASE, "to": TO_RELEASE, "playbook_rc": result["rc"],
        "wall_s": round(ended - started, 2),
        "settled_s": round(settled - started, 2),
        "requests": n_during, "failed": len(failed),
        "failed_pct": round(100.0 * len(failed) / n_during, 3) if n_during else None,
        "failed_by_status": statuses,
        "socket_errors": sum(1 for r in during if r[2] == 0),
        "requests_total": len(records), "failed_total": sum(1 for r in records if r[2] != 200),
        "wrk_summary": summary,
        "rate_before": round(len(before) / before_s, 1) if before_s else None,
        "rate_during": round(n_during / (settled - started), 1) if settled > started else None,
        "latency_before": _latency([r[1] for r in before if r[2] == 200]),
        "latency_during": _latency([r[1] for r in during if r[2] == 200]),
        "no_up_s": max(v["no_up_s"] for v in per_lb.values()),
        "below_full_s": max(v["below_full_s"] for v in per_lb.values()),
        "min_up": min([v["min_up"] for v in per_lb.values() if v["min_up"] is not None]
                      or [None]),
        "per_lb": per_lb,
        "hosts": hosts,
        "restarts": restarts_of(strategy, events, host_records, started),
        "slowest_tasks": rb.slowest_tasks(events, 6),
        "series": series, "up": up,
        "workdir": os.path.relpath(workdir, REPO),
    }


# --- the machine -----------------------------------------------------------------------------------

def _out(argv, **kwargs):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False,
                              **kwargs)
        return (proc.stdout or proc.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "unknown (%s)" % exc


def machine_info(bench_venv):
    mem_kb = 0
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = ""
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    core = _out([os.path.join(MAIN_BIN, "ansible"), "--version"]).splitlines()
    bench_python = os.path.join(bench_venv, "bin", "python")
    ansible_pkg = _out([bench_python, "-c",
                        "import importlib.metadata as m; print(m.version('ansible'))"])
    cg = _out([bench_python, "-c",
               "import importlib.util as u, json, os; "
               "d = list(u.find_spec('ansible_collections.community.general')"
               ".submodule_search_locations)[0]; "
               "print(json.load(open(os.path.join(d, 'MANIFEST.json')))"
               "['collection_info']['version'])"])
    wrk = _out(["wrk", "-v"]).splitlines()
    labs = sorted(d for d in os.listdir(os.path.join(REPO, ".lab"))
                  if os.path.exists(os.path.join(REPO, ".lab", d, "inventory.yml"))) \
        if os.path.isdir(os.path.join(REPO, ".lab")) else []
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem_kb / 1048576.0, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "ansible_core": core[0] if core else "unknown",
            "ansible_package": ansible_pkg, "community_general": cg,
            "wrk": wrk[0] if wrk else "unknown", "loadavg_start": os.getloadavg(),
            "labs_up_at_start": labs}


# --- the report ------------------------------------------------------------------------------------

def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _f(value, fmt="%.1f"):
    return "-" if value is None else fmt % value


def _configs(runs):
    """(size, serial) pairs in bench order: sizes ascending, serial 1 first, then 50%, 25%."""
    def key(cfg):
        size, serial = cfg
        if "+" in serial:  # a list of batches: after the plain ones
            return (size, 2, serial)
        pct = serial.endswith("%")
        return (size, int(pct), -float(serial.rstrip("%")) if pct else float(serial))
    return sorted({(r["app_hosts"], r["serial"]) for r in runs}, key=key)


def _cfg_label(size, serial):
    return "%d x serial %s" % (size, serial)


def summarise(runs, strategies):
    """Per (size, serial, strategy): means over the runs (see the table's legend)."""
    rows = []
    for size, serial in _configs(runs):
        for strategy in strategies:
            mine = [r for r in runs if r["app_hosts"] == size and r["serial"] == serial
                    and r["strategy"] == strategy]
            if not mine:
                continue
            requests = sum(r["requests"] for r in mine)
            failed = sum(r["failed"] for r in mine)
            walls = [r["wall_s"] for r in mine]
            rows.append({
                "size": size, "serial": serial, "strategy": strategy, "runs": len(mine),
                "failed_runs": sum(1 for r in mine if r["playbook_rc"] != 0),
                "lb_hosts": mine[0]["lb_hosts"],
                "requests": _mean(r["requests"] for r in mine),
                "failed": _mean(r["failed"] for r in mine),
                "failed_pct": 100.0 * failed / requests if requests else None,
                "no_up_s": _mean(r["no_up_s"] for r in mine),
                "no_up_max_s": max(r["no_up_s"] for r in mine),
                "below_full_s": _mean(r["below_full_s"] for r in mine),
                "wall_s": _mean(walls), "wall_min_s": min(walls), "wall_max_s": max(walls),
                "p50_ms": _median(r["latency_during"]["p50_ms"] for r in mine),
                "p99_ms": _median(r["latency_during"]["p99_ms"] for r in mine),
                "p50_before_ms": _median(r["latency_before"]["p50_ms"] for r in mine),
                "p99_before_ms": _median(r["latency_before"]["p99_ms"] for r in mine),
                "rate_before": _mean(r["rate_before"] for r in mine),
                "rate_during": _mean(r["rate_during"] for r in mine),
            })
    return rows


def ratios(summary):
    """Wall time of every (size, serial) over the 1-host wall time, per strategy."""
    out = {}
    for row in summary:
        base = [r for r in summary if r["strategy"] == row["strategy"] and r["size"] == 1]
        if base and row["size"] > 1 and base[0]["wall_s"]:
            out[(row["strategy"], row["size"], row["serial"])] = row["wall_s"] / base[0]["wall_s"]
    return out


def step_table(runs):
    """Per (size, serial): mean seconds of each step of hitless.deploy.rolling, over hosts."""
    rows = []
    for size, serial in _configs(runs):
        hosts = [h for r in runs if r["strategy"] == "rolling" and r["app_hosts"] == size
                 and r["serial"] == serial for h in r["hosts"].values()]
        if not hosts:
            continue
        rows.append({"size": size, "serial": serial, "hosts": len(hosts),
                     "steps": {s: _mean(h["steps"].get(s) for h in hosts) for s in STEPS},
                     "span_s": _mean(h["span_s"] for h in hosts),
                     "swap_s": _mean(sum(v for k, v in h["steps"].items()
                                         if k in STEPS[STEPS.index("clone"):]) for h in hosts),
                     "clone_s": _mean(h["clone_lifetime_s"] for h in hosts),
                     "outcomes": sorted({h["outcome"] or "?" for h in hosts})})
    return rows


def _representative(runs, size, serial, strategy):
    """The run of median wall time, so the picture shows a typical deploy."""
    mine = sorted((r for r in runs if r["app_hosts"] == size and r["serial"] == serial
                   and r["strategy"] == strategy), key=lambda r: r["wall_s"])
    return mine[(len(mine) - 1) // 2] if mine else None


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("fleet_benchmark.py --report needs matplotlib: run it with the bench "
                         "virtualenv's python (.tmp/bench-venv/bin/python, see make bench)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"svg.hashsalt": "hitless-deploy-bench", "font.size": 9,
                         "svg.fonttype": "none"})
    return plt


def plot_timelines(report, path):
    """Requests/s and failures/s over time, restarts marked, UP servers, for the largest size."""
    plt = _pyplot()
    runs = report["runs"]
    size = max(r["app_hosts"] for r in runs)
    serials = [s for (n, s) in _configs(runs) if n == size]
    strategies = [s for s in report["strategies"] if any(r["strategy"] == s for r in runs)]
    ok_peak = max([p[1] for r in runs if r["app_hosts"] == size for p in r["series"][1:-1]]
                  or [1.0])
    fig, axes = plt.subplots(len(strategies), len(serials), squeeze=False,
                             figsize=(6.2 * len(serials), 2.7 * len(strategies) + 0.6))
    for col, serial in enumerate(serials):
        picked = {s: _representative(runs, size, serial, s) for s in strategies}
        x_max = max(r["wall_s"] for r in picked.values() if r) + report["settings"]["tail_s"]
        x_min = -report["settings"]["before_s"]
        for row, strategy in enumerate(strategies):
            ax = axes[row][col]
            run = picked[strategy]
            if run is None:
                ax.set_visible(False)
                continue
            series = run["series"][1:-1]  # the first and last bins are partly outside the load
            t = [p[0] + report["settings"]["bin_s"] / 2 for p in series]
            ax.axvspan(0, run["wall_s"], color="#eeeeee", zorder=0)
            ax.plot(t, [p[1] for p in series], color=COLORS[strategy], lw=1.3,
                    label="OK requests/s")
            ax.fill_between(t, [p[2] for p in series], color="#d62728", alpha=0.55,
                            lw=0, label="failed requests/s", step="mid")
            fail_peak = max([p[2] for p in series] or [0])
            for i, (at, _host) in enumerate(run["restarts"]):
                ax.axvline(at, color="#555555", lw=0.6, ls=":",
                           label="a host restarts" if i == 0 else None)
            ax.set_xlim(x_min, x_max)
            # Failures can come back far faster than answers (a 503 at once): the scale is
            # the OK rate's, and the failures' peak is in the title.
            ax.set_ylim(0, ok_peak * 1.3)
            ax.grid(axis="y", color="#dddddd", lw=0.5)
            twin = ax.twinx()
            for lb, points in sorted(run["up"].items()):
                twin.step([p[0] for p in points], [p[1] for p in points], where="post",
                          lw=1.0, color="#2ca02c" if lb.endswith("1") else "#17becf",
                          label="UP servers on %s" % lb)
            twin.set_ylim(0, size * 2 + 1)
            twin.axhline(size, color="#2ca02c", lw=0.5, ls="--")
            if col == len(serials) - 1:
                twin.set_ylabel("UP servers")
            ax.set_title("%s, serial %s: %d of %d failed%s, %.1f s" % (
                LABELS[strategy], serial, run["failed"], run["requests"],
                " (peak %.0f/s)" % fail_peak if fail_peak > ok_peak * 1.3 else "",
                run["wall_s"]), fontsize=9)
            if col == 0:
                ax.set_ylabel("requests/s")
            if row == len(strategies) - 1:
                ax.set_xlabel("seconds since the playbook started (grey: playbook running)")
            if row == 0 and col == 0:
                lines = ax.get_legend_handles_labels()
                lines2 = twin.get_legend_handles_labels()
                ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper right",
                          fontsize=7, ncol=2, framealpha=0.85)
    fig.suptitle("%d app hosts behind %d HAProxy hosts, wrk %d connections, closed loop\n"
                 "(each: the run of median wall time)"
                 % (size, [r for r in runs if r["app_hosts"] == size][0]["lb_hosts"],
                    report["settings"]["connections"]))
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return size


def plot_scaling(report, summary, path):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    markers = {}
    for strategy in report["strategies"]:
        rows = sorted((r for r in summary if r["strategy"] == strategy), key=lambda r: r["size"])
        small = [r for r in rows if r["serial"] == "1"]
        large = []
        for r in rows:
            if r["serial"] != "1" and r["serial"] not in large:
                large.append(r["serial"])
        # Serial 1 for the small sizes, joined to the points of each serial of the large ones.
        for serial in large or ["1"]:
            pts = small + [r for r in rows if r["serial"] == serial and serial != "1"]
            style = ["-", "--", ":", "-."][(large.index(serial) if large else 0) % 4]
            marker = markers.setdefault(serial, "osD^v"[len(markers) % 5])
            ax.errorbar([r["size"] for r in pts], [r["wall_s"] for r in pts],
                        yerr=[[r["wall_s"] - r["wall_min_s"] for r in pts],
                              [r["wall_max_s"] - r["wall_s"] for r in pts]],
                        color=COLORS[strategy], ls=style, marker=marker, capsize=3, lw=1.2,
                        label=LABELS[strategy] + ("" if serial == "1" else
                                                  ", serial %s above 2 hosts" % serial))
    sizes = sorted({r["size"] for r in summary})
    ax.set_xticks(sizes)
    ax.set_xlabel("app hosts (serial 1 up to 2 hosts)")
    ax.set_ylabel("deploy wall time, s (mean, min-max)")
    ax.set_ylim(bottom=0)
    ax.grid(color="#dddddd", lw=0.5)
    ax.legend(fontsize=7)
    ax.set_title("Wall time against the number of app hosts")
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def write_report(json_path, docs_path, img_dir, companion=None):
    json_path = os.path.realpath(json_path)  # fleet-latest.json names the real file
    with open(json_path) as handle:
        report = json.load(handle)
    runs = report["runs"]
    if not runs:
        raise SystemExit("%s holds no run" % json_path)
    os.makedirs(img_dir, exist_ok=True)
    summary = summarise(runs, report["strategies"])
    timeline_svg = os.path.join(img_dir, "bench-10-hosts.svg")
    scaling_svg = os.path.join(img_dir, "bench-scaling.svg")
    plotted = plot_timelines(report, timeline_svg)
    plot_scaling(report, summary, scaling_svg)
    text = markdown(report, summary, plotted, os.path.relpath(json_path, REPO),
                    os.path.relpath(timeline_svg, os.path.dirname(docs_path)),
                    os.path.relpath(scaling_svg, os.path.dirname(docs_path)),
                    companion and os.path.relpath(companion, os.path.dirname(docs_path)))
    with open(docs_path, "w") as handle:
        handle.write(text)
    log("wrote %s, %s, %s" % tuple(os.path.relpath(p, REPO)
                                   for p in (docs_path, timeline_svg, scaling_svg)))
    return 0


def markdown(report, summary, plotted, json_rel, timeline_rel, scaling_rel, companion_rel=None):
    st, m, runs = report["settings"], report["machine"], report["runs"]
    out = []
    say = out.append
    sizes = sorted({r["app_hosts"] for r in runs})
    lbs = sorted({(r["app_hosts"], r["lb_hosts"]) for r in runs})
    say("# Benchmarks: three ways to deploy behind HAProxy, an app that starts in %g s\n"
        % st["startup_delay_s"])
    say("Generated by `benchmarks/fleet_benchmark.py --report %s` (bench of %s, %d run(s) per "
        "size, %.0f min in all); `make bench` reruns it. Do not edit by hand.\n"
        % (json_rel, report["started"], report["runs_per_size"], report["elapsed_s"] / 60.0))
    if report.get("error"):
        say("**The bench stopped early:** `%s`. The tables hold the runs it finished.\n"
            % report["error"])
    missing = [n for n in (1, 2, 10) if n not in sizes]
    if missing:
        say("**Partial bench:** no run with %s app host(s) in this file; the full bench is "
            "`make bench` (sizes 1, 2 and 10, 3 runs each).\n"
            % " or ".join(map(str, missing)))
    if companion_rel:
        say("`make bench` benches two apps, each in a file of its own: this one and [the same "
            "bench with the other app's start-up](%s). A slow start is where a naive restart's "
            "downtime is real rather than hidden by HAProxy's retries.\n" % companion_rel)
    say("Three strategies deploy the same release (v1 to v2 of the sample app) in the same lab "
        "under the same load:\n")
    say("- **naive restart** (`benchmarks/recipes/naive.yml`, ansible.builtin only): unpack, "
        "switch `current`, `systemctl restart`; HAProxy finds out through its health checks;")
    say("- **community.general.haproxy** (`benchmarks/recipes/community_general.yml`, ansible "
        "%s with community.general %s, in the bench's own virtualenv): unpack, `state: drain` "
        "+ `wait`, switch `current`, restart, `state: enabled` + `wait`, on every HAProxy host;"
        % (m.get("ansible_package"), m.get("community_general")))
    say("- **hitless.deploy.rolling** (`playbooks/rolling.yml`, `hitless_serial`): every host "
        "checked and the release staged, then per serial batch: clone, route to the clone, "
        "upgrade (old releases pruned as `current` moves), check, route back, clean up.\n")
    say("## Setup\n")
    say("| what | value |\n| --- | --- |")
    say("| labs | `tests/lab/lab.py up --name benchfN --app-hosts N --lb-hosts M`, one per "
        "size, booted once: %s |" % ", ".join("%d app host(s) behind %d HAProxy host(s)"
                                              % kv for kv in lbs))
    say("| serial | 1 for 1 and 2 app hosts; %s for more, the same for every strategy |"
        % " and ".join(report["large_serials"]))
    say("| runs | %d per size; the strategies interleaved, their order rotated run by run |"
        % report["runs_per_size"])
    say("| known state before each deploy | every app host serves v1 (no other release, no "
        "clone, no journal or lock), every server UP and every clone slot in MAINT on every "
        "HAProxy host for %.0f s |" % SETTLED_S)
    say("| load | wrk, %d keep-alive connections, closed loop (each sends its next request %s "
        "after the last one is answered), split over the HAProxy hosts, one wrk thread per "
        "connection; `GET /`; timeout %d s; started %.0f s before the playbook, stopped %.0f s "
        "after it |" % (st["connections"], "%g ms" % st.get("think_ms", 0), st["wrk_timeout_s"],
                        st["before_s"], st["tail_s"]))
    say("| per-request record | `benchmarks/wrk/timeline.lua`: start, latency and status of "
        "every request; a connection wrk had to reopen counts as one failed request |")
    say("| capacity | `tests/probe/statpoller.py`: `show stat` every %d ms on every HAProxy "
        "host; a server counts when its status starts with UP |" % st["poll_interval_ms"])
    say("| app | sample app, start-up `STARTUP_DELAY` = %g s of the new release (`--startup-delay`; "
        "default the lab's setting, `tests/lab/demo.py` DEPLOY_VARS) |" % st["startup_delay_s"])
    say("| HAProxy checks | every %d ms, rise %d, fall %d (the haproxy role's defaults; the "
        "rolling role gives the clone the same) |"
        % (st["check_inter_ms"], st["check_rise"], st["check_fall"]))
    say("| rolling settings | `rolling_drain_grace` %d s |" % st["drain_grace_s"])
    forks = st.get("forks") or {}
    say("| Ansible | SSH pipelining on, ControlPersist 60 s (lab inventory), forks %s, the same "
        "for every strategy |" % (", ".join("%s for %s host(s)" % (forks[k], k) for k in
                                            sorted(forks, key=int)) or "5 (the default)"))
    say("")
    say("## Results\n")
    say("Means over the runs of each line; p50/p99 are the medians over the runs of each run's "
        "latency percentiles (answered requests only). A request counts in a run when it was "
        "sent while the playbook ran, or after it until every HAProxy host saw all app hosts UP "
        "again (a restart that does not wait for its app ends its playbook before the app "
        "serves); it failed when its status was not 200 or its connection "
        "broke. *s no UP*: seconds a HAProxy host had no server UP (the worse of the HAProxy "
        "hosts); *s below full*: seconds it had fewer UP servers than app hosts (the clone "
        "counts). *wall s*: `ansible-playbook`, start to exit, mean (min-max).\n")
    say("| app hosts | serial | strategy | runs | requests | failed | % failed | s no UP "
        "| s below full | wall s | p50/p99 ms during | p50/p99 ms before | req/s before, during |")
    say("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: |")
    for r in summary:
        say("| %d | %s | %s%s | %d | %s | %s | %s | %s | %s | %s (%s-%s) | %s/%s | %s/%s "
            "| %s, %s |" % (
                r["size"], r["serial"], LABELS[r["strategy"]],
                " (%d playbook(s) failed)" % r["failed_runs"] if r["failed_runs"] else "",
                r["runs"], _f(r["requests"], "%.0f"), _f(r["failed"], "%.0f"),
                _f(r["failed_pct"], "%.2f"), _f(r["no_up_s"], "%.2f"),
                _f(r["below_full_s"], "%.1f"), _f(r["wall_s"]), _f(r["wall_min_s"]),
                _f(r["wall_max_s"]), _f(r["p50_ms"]), _f(r["p99_ms"]),
                _f(r["p50_before_ms"]), _f(r["p99_before_ms"]), _f(r["rate_before"], "%.0f"),
                _f(r["rate_during"], "%.0f")))
    say("")
    say("### Wall time against the number of hosts\n")
    say("![wall time against the number of app hosts](%s)\n" % scaling_rel)
    rat = ratios(summary)
    cfgs = _configs(runs)
    say("| strategy | " + " | ".join("%s s" % _cfg_label(*c) for c in cfgs)
        + "".join(" | %s / 1 host" % _cfg_label(*c) for c in cfgs if c[0] > 1) + " |")
    say("| --- |" + " ---: |" * (len(cfgs) + sum(1 for c in cfgs if c[0] > 1)))
    for strategy in report["strategies"]:
        cells = []
        for size, serial in cfgs:
            row = [r for r in summary if r["strategy"] == strategy and r["size"] == size
                   and r["serial"] == serial]
            cells.append(_f(row[0]["wall_s"]) if row else "-")
        for size, serial in cfgs:
            if size > 1:
                value = rat.get((strategy, size, serial))
                cells.append("-" if value is None else "%.2fx" % value)
        say("| %s | %s |" % (LABELS[strategy], " | ".join(cells)))
    say("")
    say("hitless.deploy.rolling against naive restart, wall time of the same bench run (what "
        "the clone, the checks and the HAProxy moves cost against downtime):\n")
    say("| app hosts | serial | naive restart s | hitless.deploy.rolling s | rolling / naive |")
    say("| ---: | ---: | ---: | ---: | ---: |")
    for size, serial in cfgs:
        walls = {r["strategy"]: r["wall_s"] for r in summary
                 if r["size"] == size and r["serial"] == serial}
        naive, rolling = walls.get("naive"), walls.get("rolling")
        say("| %d | %s | %s | %s | %s |" % (
            size, serial, _f(naive), _f(rolling),
            "%.1fx" % (rolling / naive) if naive and rolling else "-"))
    say("")
    # 1+100% is the fleet setting of issue 18 (the canary, then the rest at once).
    targets = {"1+100%": 2.5, "50%": 2.5, "25%": 4.5}
    lines = []
    for (strategy, size, serial), value in sorted(rat.items()):
        if strategy == "rolling" and size == 10 and serial in targets:
            lines.append("10 hosts at serial %s: %.2fx the 1-host wall time (target at most "
                         "%.1fx): %s" % (serial, value, targets[serial],
                                         "met" if value <= targets[serial] else "not met"))
    if lines:
        say("hitless.deploy.rolling, same bench run: " + "; ".join(lines) + ".\n")
    else:
        say("The scaling targets of hitless.deploy.rolling (10 hosts at serial [1, \"100%\"] "
            "or 50%: at most 2.5x the 1-host wall time; at 25%: at most 4.5x) need a bench with "
            "1 and 10 app hosts.\n")
    steps = step_table(runs)
    if steps:
        say("### Steps of hitless.deploy.rolling\n")
        say("Mean seconds per host from the deploy records (`rolling_report_dir`): from the "
            "start of one phase to the start of the next; *span* is their sum, *swap* the sum "
            "from `clone` on, *clone* the clone's lifetime. `playbooks/rolling.yml` stages every "
            "host at once and then swaps them in serial batches, so the `prepare` step of a host "
            "outside the first batch also holds the wait for its batch; *swap* does not. Hosts "
            "of one batch run their steps at the same time.\n")
        say("| app hosts | serial | hosts | " + " | ".join(STEPS)
            + " | span | swap | clone | outcomes |")
        say("| ---: | ---: | ---: |" + " ---: |" * (len(STEPS) + 3) + " --- |")
        for row in steps:
            say("| %d | %s | %d | %s | %s | %s | %s | %s |" % (
                row["size"], row["serial"], row["hosts"],
                " | ".join(_f(row["steps"][s], "%.2f") for s in STEPS), _f(row["span_s"], "%.1f"),
                _f(row["swap_s"], "%.1f"), _f(row["clone_s"], "%.1f"),
                ", ".join(row["outcomes"])))
        say("")
    slow = {}
    for r in runs:
        if r["strategy"] == "rolling":
            n = sum(1 for x in runs if x["strategy"] == "rolling" and
                    x["app_hosts"] == r["app_hosts"] and x["serial"] == r["serial"])
            bucket = slow.setdefault((r["app_hosts"], r["serial"]), {})
            for name, seconds in r["slowest_tasks"]:
                bucket[name] = bucket.get(name, 0.0) + seconds / n
    if slow:
        say("Slowest tasks of hitless.deploy.rolling (controller seconds per run, all hosts "
            "added up, from `benchmarks/callback_plugins/hitless_timing.py`):\n")
        for (size, serial), bucket in sorted(slow.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            say("- %s: %s" % (_cfg_label(size, serial), "; ".join(
                "%s %.1f" % kv for kv in sorted(bucket.items(), key=lambda kv: -kv[1])[:5])))
        say("")
    say("### Over time, %d app host%s\n" % (plotted, "" if plotted == 1 else "s"))
    say("![requests/s, failures and UP servers during the deploys of %d app hosts](%s)\n"
        % (plotted, timeline_rel))
    say("For each strategy and serial, the run of median wall time: OK requests per second "
        "(line) and failed ones (red), by completion time in %g s bins; dotted lines: a host's "
        "original instance restarts (the rolling deploy's `upgrade` step); green: UP servers "
        "on each HAProxy host (dashed: the number of app hosts); grey: the playbook runs.%s\n"
        % (st["bin_s"], "" if plotted == 10 else
           " This file has no 10-host run, so the largest size it holds is shown."))
    say("## Every run\n")
    say("| app hosts | serial | strategy | run | rc | wall s | requests | failed | socket "
        "errors | s no UP | s below full | min UP | p50/p99 ms | reset s | raw files |")
    say("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | --- |")
    for r in sorted(runs, key=lambda r: (r["app_hosts"], r["serial"], r["run"],
                                         report["strategies"].index(r["strategy"]))):
        say("| %d | %s | %s | %d | %s | %.1f | %d | %d | %d | %.2f | %.1f | %s | %s/%s | %s "
            "| `%s` |" % (
                r["app_hosts"], r["serial"], LABELS[r["strategy"]], r["run"], r["playbook_rc"],
                r["wall_s"], r["requests"], r["failed"], r["socket_errors"], r["no_up_s"],
                r["below_full_s"], r["min_up"], _f(r["latency_during"]["p50_ms"]),
                _f(r["latency_during"]["p99_ms"]), _f(r.get("reset_s")), r["workdir"]))
    say("")
    say("## The machine, and what is noisy\n")
    say("| what | value |\n| --- | --- |")
    say("| CPU | %s, `nproc` %s |" % (m["cpu"] or "?", m["nproc"]))
    say("| memory | %.1f GiB |" % m["memory_gib"])
    say("| kernel | %s |" % m["kernel"])
    say("| controller | %s, Python %s; ansible %s (community.general %s) for the "
        "community.general recipe |" % (m["ansible_core"], m["python"], m["ansible_package"],
                                        m["community_general"]))
    say("| load generator | %s |" % m["wrk"])
    say("| load average | %s at the start, %s at the end |" % (
        " ".join("%.2f" % v for v in m["loadavg_start"]),
        " ".join("%.2f" % v for v in m.get("loadavg_end", []))))
    others = [name for name in m.get("labs_up_at_start", []) if not name.startswith("benchf")]
    say("| other labs up when the bench started | %s |" % (", ".join(others) or "none"))
    say("")
    say("What makes these figures noisy:\n")
    say("- Everything shares %s CPU(s): the controller (`ansible-playbook` and its forks), wrk, "
        "the HAProxy hosts and the app hosts (all containers of this machine) and the pollers. "
        "The load is a closed loop, so it takes every cycle left over: the deploy competes "
        "with the load it is measured under, requests/s is set by the CPU rather than by the "
        "app, and wall times are longer than on an idle machine." % m["nproc"])
    say("- Other sessions' tests and labs may run on the same machine at the same time (see "
        "the load average and the other labs above); the min-max of the wall times shows "
        "how much that moved them.")
    say("- A closed loop answers an outage with more failures, not fewer requests: when a "
        "HAProxy host has no server UP it answers 503 at once and each connection sends its "
        "next request straight away, so failed requests pile up far faster than OK ones. "
        "Compare the failure counts between strategies, not with real traffic.")
    say("- HAProxy's checks run every %d ms: when a restarted server is seen down and back "
        "up varies by up to one interval per check, run to run." % st["check_inter_ms"])
    say("- `community.general.haproxy` polls every `wait_interval` seconds, an integer (1 s "
        "here): its steps last whole seconds, and an `enabled` + `wait` right after a restart "
        "can see the old process's UP before the checks notice the restart.")
    say("- SSH connections are multiplexed with ControlPersist 60 s: a deploy that starts more "
        "than 60 s after the last one to the same host opens new connections.")
    return "\n".join(out) + "\n"


# --- main ------------------------------------------------------------------------------------------

def serials_for(size, large):
    return ["1"] if size <= 2 else large


def bench_size(size, args, stamp_dir, runs_out):
    name = lab_name(size)
    lab_seconds = None
    try:
        lab_seconds = lab_up(name, size, args.lb_hosts, stamp_dir)
        lab = demo.Lab(name)
        if args.lb_hosts > 1 and len(lab.lb_hosts) != args.lb_hosts:
            raise demo.DemoError("lab %s has %d LB hosts, not %d (an older lab of that name? "
                                 "tear it down first)" % (name, len(lab.lb_hosts), args.lb_hosts))
        for run in range(1, args.runs + 1):
            shift = (run - 1) % len(args.strategies)
            order = args.strategies[shift:] + args.strategies[:shift]
            for serial in serials_for(size, args.large_serials):
                for strategy in order:
                    tag = "%s-serial%s-%s-run%d" % (name, serial.replace("%", "pct").replace("+", "-"),
                                                    strategy, run)
                    workdir = os.path.join(stamp_dir, tag)
                    reset_s = reset(lab)
                    cmd, binary = deploy_command(strategy, lab, serial, workdir, args.bench_venv,
                                                 args.startup_delay)
                    result = run_deploy(lab, cmd, binary, workdir, args)
                    figures = analyse(lab, strategy, serial, run, result, workdir, args.before)
                    figures["reset_s"] = reset_s
                    runs_out.append(figures)
                    log("%-8s serial %-4s run %d %-17s rc %d, wall %6.1f s, %7d requests, "
                        "%6d failed (%.2f %%), no UP %.2f s, below full %.2f s, p50/p99 %s/%s ms"
                        % (name, serial, run, strategy, figures["playbook_rc"], figures["wall_s"],
                           figures["requests"], figures["failed"], figures["failed_pct"] or 0,
                           figures["no_up_s"], figures["below_full_s"],
                           figures["latency_during"]["p50_ms"],
                           figures["latency_during"]["p99_ms"]))
                    if figures["playbook_rc"] != 0:
                        log("  the playbook failed; its output: %s"
                            % os.path.relpath(os.path.join(workdir, "playbook.log"), REPO))
    finally:
        if not args.keep_labs:
            rb.lab_down(name, stamp_dir)
    return lab_seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--sizes", default="1,2,10", help="app hosts per lab (1,2,10)")
    parser.add_argument("--runs", type=int, default=3, help="runs per size (default 3)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES),
                        help="comma-separated, of %s" % ", ".join(STRATEGIES))
    parser.add_argument("--large-serials", default="50%,25%,1+100%",
                        help="serial values for sizes above 2 (50%%,25%%,1+100%%: [1, \"100%%\"])")
    parser.add_argument("--lb-hosts", type=int, default=2, help="HAProxy hosts per lab (2)")
    parser.add_argument("--connections", type=int, default=16,
                        help="wrk keep-alive connections, split over the HAProxy hosts (16)")
    # Without a pause, 16 connections to an app that answers in 0.3 ms keep both cores busy
    # with wrk and HAProxy, and the deploys measure CPU starvation (each remote task 2-5 s).
    # 30 ms per connection is about the load of the baseline in issue 8 (~500 requests/s).
    parser.add_argument("--think-ms", type=float, default=30.0,
                        help="pause of each connection between two requests, ms (30; 0: none)")
    parser.add_argument("--before", type=float, default=5.0,
                        help="seconds of load before each playbook (latency 'before')")
    parser.add_argument("--tail", type=float, default=2.0, help="seconds of load after it")
    parser.add_argument("--timeout", type=int, default=1800, help="longest playbook run (s)")
    parser.add_argument("--startup-delay", type=float, default=None,
                        help="seconds the new release takes to bind (a slow start, as a JVM or "
                             "Rails app's); default: the lab's own")
    parser.add_argument("--bench-venv", default=BENCH_VENV,
                        help="virtualenv with requirements-bench.txt (community.general)")
    parser.add_argument("--keep-labs", action="store_true", help="leave the labs up afterwards")
    parser.add_argument("--out", default=OUT)
    parser.add_argument("--report", metavar="FILE.json",
                        help="only write docs/benchmarks.md and the plots from FILE.json")
    parser.add_argument("--docs", default=DOCS, help="with --report: the Markdown file")
    parser.add_argument("--img-dir", default=IMG, help="with --report: where the SVGs go")
    parser.add_argument("--companion", metavar="FILE.md",
                        help="with --report: the same bench's report for the other app, linked")
    args = parser.parse_args(argv)
    if args.report:
        return write_report(args.report, args.docs, args.img_dir, args.companion)
    if args.startup_delay is not None:
        # A restart that does not wait for the app ends its playbook before the new release
        # binds: the load must outlast the start-up, or that downtime goes unmeasured.
        args.tail = max(args.tail, args.startup_delay + 5.0)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error("--sizes: comma-separated numbers, e.g. 1,2,10")
    args.strategies = [s for s in args.strategies.split(",") if s]
    args.large_serials = [s for s in args.large_serials.split(",") if s]
    if not all(1 <= s <= 20 for s in sizes) or not 1 <= args.runs <= 20:
        parser.error("--sizes in 1..20, --runs in 1..20")
    if not args.strategies or any(s not in STRATEGIES for s in args.strategies):
        parser.error("--strategies: some of %s" % ", ".join(STRATEGIES))
    one = r"([1-9][0-9]?%|100%|[1-9][0-9]*)"
    if not all(re.match(r"^%s(\+%s)*$" % (one, one), s) for s in args.large_serials):
        parser.error("--large-serials: numbers or percentages, or batches joined by + (1+100%%: "
                     "Ansible's serial [1, \"100%%\"], the canary then the rest), e.g. 50%%,1+100%%")
    if not 1 <= args.lb_hosts <= 4 or not 1 <= args.connections <= 256:
        parser.error("--lb-hosts in 1..4, --connections in 1..256")
    if args.connections < args.lb_hosts:
        parser.error("--connections must be at least --lb-hosts")
    if os.geteuid() != 0:
        parser.error("run as root (the labs need it)")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk, or make bench)")
    if "community_general" in args.strategies and not os.path.exists(
            os.path.join(args.bench_venv, "bin", "ansible-playbook")):
        parser.error("no %s/bin/ansible-playbook: pip install -r "
                     "benchmarks/requirements-bench.txt there (make bench does)" % args.bench_venv)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    stamp_dir = os.path.join(args.out, stamp)
    os.makedirs(stamp_dir, exist_ok=True)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, rb._on_signal)
    machine = machine_info(args.bench_venv)
    log("fleet benchmark %s: sizes %s, %d run(s), strategies %s; %d CPU(s), load %s"
        % (stamp, ",".join(map(str, sizes)), args.runs, ",".join(args.strategies),
           machine["nproc"], " ".join("%.2f" % v for v in machine["loadavg_start"])))
    runs, error, lab_boot = [], None, {}
    began = time.monotonic()
    try:
        for size in sizes:
            lab_boot[str(size)] = bench_size(size, args, stamp_dir, runs)
    except (demo.DemoError, rb.Interrupted, KeyboardInterrupt, subprocess.TimeoutExpired,
            OSError) as exc:
        error = "%s: %s" % (type(exc).__name__, exc)
        log("benchmark stopped: %s" % error)
    machine["loadavg_end"] = os.getloadavg()
    report = {
        "started": stamp, "elapsed_s": round(time.monotonic() - began, 1),
        "machine": machine, "sizes": sizes, "runs_per_size": args.runs,
        "strategies": args.strategies, "large_serials": args.large_serials,
        "lab_boot_s": lab_boot,
        "settings": {
            "startup_delay_s": rb.STARTUP_DELAY if args.startup_delay is None else args.startup_delay,
            "check_inter_ms": rb.CHECK_INTER_MS,
            "check_rise": rb.CHECK_RISE, "check_fall": 2,
            "drain_grace_s": demo.DEPLOY_VARS["rolling_drain_grace"],
            "lb_hosts": args.lb_hosts, "connections": args.connections, "think_ms": args.think_ms,
            "wrk_timeout_s": WRK_TIMEOUT_S, "poll_interval_ms": 50,
            "before_s": args.before, "tail_s": args.tail, "bin_s": BIN_S,
            "release_from": FROM_RELEASE, "release_to": TO_RELEASE,
            "pipelining": "True", "playbook_timeout_s": args.timeout,
            "forks": {str(n): forks_for(n) for n in sizes}},
        "error": error, "runs": runs}
    path = os.path.join(args.out, "fleet-%s.json" % stamp)
    with open(path, "w") as handle:
        json.dump(report, handle, indent=1)
    latest = os.path.join(args.out, "fleet-latest.json")
    if os.path.lexists(latest):
        os.unlink(latest)
    os.symlink(os.path.basename(path), latest)
    log()
    log("JSON: %s (raw wrk, poller, playbook and timing files under %s)"
        % (os.path.relpath(path, REPO), os.path.relpath(stamp_dir, REPO)))
    log("report: %s/bin/python benchmarks/fleet_benchmark.py --report %s"
        % (os.path.relpath(args.bench_venv, REPO), os.path.relpath(path, REPO)))
    ok = not error and runs and all(r["playbook_rc"] == 0 for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
