#!/usr/bin/env python
"""Rolling deploy of a running lab under the load probe, with its timeline and a picture.

    demo.py --name lab [--release v2]

Starts one load probe and one ``show stat`` poller per load balancer of the lab, runs
``hitless.deploy.rolling`` to the release, stops them, then prints each host's step timeline,
its clone's lifetime, ``requests: N, failed: F``, the latency before and during the deploy and
the fewest UP servers seen, and writes ``.tmp/demo/deploy.svg``. Exits non-zero when a request
failed or the playbook failed.

Without ``--release`` the demo deploys v2, or, when every host already serves it, the next
release of v1 -> v2 -> v3 -> v1, so each run shows a real swap. The functions here are also
used by ``benchmarks/rolling_benchmark.py``.
"""
import argparse
import glob
import json
import math
import os
import shlex
import subprocess
import sys
import threading
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "probe"))

import plot  # noqa: E402
from _processes import load_result, spawn, stop  # noqa: E402

BIN = os.path.dirname(os.path.abspath(sys.executable))
PROBE = os.path.join(REPO, "tests", "probe", "loadprobe.py")
POLLER = os.path.join(REPO, "tests", "probe", "statpoller.py")
PLAYBOOK = "hitless.deploy.rolling"  # by its FQCN, as users run it
COLLECTIONS = os.path.join(REPO, ".tmp", "collections")
RELEASES = os.environ.get("HITLESS_RELEASES") or os.path.join(REPO, ".tmp", "releases")

APP, ROOT, PORT, CLONE_PORT, ADMIN_PORT = "demo", "/srv/demo", 8080, 8081, 9999
CYCLE = ("v1", "v2", "v3")
STEPS = ("preflight", "prepare", "clone", "route_to_clone", "upgrade", "post_start",
         "route_back", "cleanup")
# The lab's app starts in 1 s (tests/lab/site.yml); drains wait at most 3 s for the SSE stream.
DEPLOY_VARS = {"rolling_environment": {"STARTUP_DELAY": "1"}, "rolling_drain_grace": 3}
RATE = 50.0
PLAYBOOK_TIMEOUT = 240
BIN_S = 0.5


class DemoError(Exception):
    pass


# --- the lab -----------------------------------------------------------------------------------

class Lab:
    """A running lab as its inventory describes it."""

    def __init__(self, name):
        self.name = name
        self.inventory = os.path.join(REPO, ".lab", name, "inventory.yml")
        if not os.path.exists(self.inventory):
            raise DemoError("lab %s is not up (no %s): run 'make lab-up LAB_NAME=%s'"
                            % (name, os.path.relpath(self.inventory, REPO), name))
        with open(self.inventory) as handle:
            data = yaml.safe_load(handle)["all"]
        self.vars = data.get("vars", {})
        self.lb_url = self.vars["lab_lb_url"]
        self.key = self.vars["ansible_ssh_private_key_file"]
        self.hosts, self.groups = {}, {}
        for group, body in data.get("children", {}).items():
            members = (body or {}).get("hosts") or {}
            self.groups[group] = list(members)
            for host, hostvars in members.items():
                self.hosts[host] = (hostvars or {}).get("ansible_host", host)
        self.app_hosts = self.groups.get("app", [])
        self.lb_hosts = self.groups.get("haproxy", [])
        # lab.py up --instances N gives the app group the ports of N instances per host, each
        # its own HAProxy server: capacity is app hosts x instances.
        app_vars = ((data.get("children") or {}).get("app") or {}).get("vars") or {}
        self.ports = [int(p) for p in app_vars.get("rolling_ports") or [PORT]]
        self.clone_ports = [int(p) for p in app_vars.get("rolling_clone_ports")
                            or [p + 1 for p in self.ports]]
        self.servers = len(self.app_hosts) * len(self.ports)

    def ssh(self, host, command, timeout=20):
        argv = ["ssh", "-i", self.key, "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "ConnectTimeout=5", "root@" + self.hosts[host], command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def serving(self):
        """``{app host: release name current points to}``."""
        releases = {}
        for host in self.app_hosts:
            proc = self.ssh(host, "readlink %s/current" % ROOT)
            if proc.returncode != 0:
                raise DemoError("%s: cannot read %s/current: %s"
                                % (host, ROOT, (proc.stderr or proc.stdout).strip()))
            releases[host] = os.path.basename(proc.stdout.strip())
        return releases


def pick_release(requested, serving, explicit):
    """The release to deploy: ``requested``, or when every host serves it already (and it was
    not asked for explicitly) the next one of the cycle that no host serves."""
    if explicit or requested not in CYCLE or any(r != requested for r in serving.values()):
        return requested
    start = CYCLE.index(requested)
    for step in range(1, len(CYCLE)):
        candidate = CYCLE[(start + step) % len(CYCLE)]
        if candidate not in serving.values():
            return candidate
    return requested


def ansible_env(extra=None):
    env = dict(os.environ)
    env.update({
        "PATH": BIN + os.pathsep + env.get("PATH", ""),
        "ANSIBLE_COLLECTIONS_PATH": env.get("ANSIBLE_COLLECTIONS_PATH") or COLLECTIONS,
        "ANSIBLE_PIPELINING": env.get("ANSIBLE_PIPELINING", "True"),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
    })
    env.update(extra or {})
    return env


# --- one deploy under the probe ------------------------------------------------------------------

def _run_playbook(cmd, env, log_path, timeout, echo):
    """Run ansible-playbook, its whole output to ``log_path``; with ``echo``, print each task's
    name as it starts and the lines that tell a failure. Returns (rc, output)."""
    lines = []
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env, cwd=REPO, stdin=subprocess.DEVNULL)
        # The timer ends a playbook that hangs; the loop below then sees EOF.
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        started = time.monotonic()
        try:
            for line in proc.stdout:
                lines.append(line)
                log.write(line)
                if echo and (line.startswith(("TASK [", "PLAY [", "PLAY RECAP"))
                             or line.startswith(("fatal:", "failed:"))
                             or "hitless.deploy.rolling failed" in line):
                    print("  %6.1f s  %s" % (time.monotonic() - started,
                                             line.rstrip().rstrip("*").rstrip()), flush=True)
            rc = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if rc == -9 and time.monotonic() - started >= timeout:
        lines.append("TIMEOUT after %d s\n" % timeout)
    return rc, "".join(lines)


def run_deploy(lab, release, workdir, extra_vars=None, before_s=5.0, tail_s=2.0, rate=RATE,
               timeout=PLAYBOOK_TIMEOUT, env=None, echo=True):
    """Deploy ``release`` (a name of $HITLESS_RELEASES) to ``lab`` under one probe and one poller
    per load balancer. Returns a dict: rc, output, started/ended (epoch), probes, pollers,
    records (app host -> deploy record)."""
    os.makedirs(workdir, exist_ok=True)
    report_dir = os.path.join(workdir, "records")
    for old in glob.glob(os.path.join(report_dir, "*.json")):
        os.unlink(old)
    stop_file = os.path.join(workdir, "stop")
    if os.path.exists(stop_file):
        os.unlink(stop_file)
    archive = os.path.join(RELEASES, release + ".tar.gz")
    if not os.path.exists(archive):
        raise DemoError("no release archive %s (run 'make releases')" % archive)
    variables = dict(DEPLOY_VARS, rolling_report_dir=report_dir, hitless_release_src=archive)
    variables.update(extra_vars or {})
    cmd = [os.path.join(BIN, "ansible-playbook"), "-i", lab.inventory, PLAYBOOK,
           "-e", json.dumps(variables)]
    bound = before_s + timeout + tail_s + 30
    procs, outputs = [], {}
    try:
        for lb in lab.lb_hosts:
            address = lab.hosts[lb]
            out = os.path.join(workdir, "probe-%s.json" % lb)
            procs.append(spawn([sys.executable, PROBE, "--url", "http://%s:80" % address,
                                "--duration", str(bound), "--rate", str(rate / len(lab.lb_hosts)),
                                "--stop-file", stop_file, "--out", out], out[:-5] + ".log"))
            outputs[("probe", lb)] = (out, out[:-5] + ".log")
            out = os.path.join(workdir, "poll-%s.json" % lb)
            procs.append(spawn([sys.executable, POLLER,
                                "--admin", "%s:%d" % (address, ADMIN_PORT), "--backend", APP,
                                "--duration", str(bound), "--stop-file", stop_file,
                                "--out", out], out[:-5] + ".log"))
            outputs[("poll", lb)] = (out, out[:-5] + ".log")
        time.sleep(before_s)
        if echo:
            print("ansible-playbook -i %s %s -e %s" % (
                os.path.relpath(lab.inventory, REPO), PLAYBOOK,
                shlex.quote(json.dumps(variables))), flush=True)
        started = time.time()
        rc, output = _run_playbook(cmd, ansible_env(env), os.path.join(workdir, "playbook.log"),
                                   timeout, echo)
        ended = time.time()
        time.sleep(tail_s)
    finally:
        stop(procs, stop_file)
    probes = {lb: load_result(*outputs[("probe", lb)], error=DemoError) for lb in lab.lb_hosts}
    pollers = {}
    for lb in lab.lb_hosts:
        pollers[lb] = load_result(*outputs[("poll", lb)], error=DemoError)
    records = {}
    for path in sorted(glob.glob(os.path.join(report_dir, "*.json"))):
        with open(path) as handle:
            records[os.path.basename(path)[:-5]] = json.load(handle)
    return {"release": release, "rc": rc, "output": output, "started": started, "ended": ended,
            "probes": probes, "pollers": pollers, "records": records, "workdir": workdir}


# --- what it shows ---------------------------------------------------------------------------

def percentile(values, fraction):
    # The probe's own definition, so the figures compare with its summary.
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def _latency(records):
    values = [r["end"] - r["start"] for r in records]
    return {"p50_ms": _ms(percentile(values, 0.5)), "p99_ms": _ms(percentile(values, 0.99)),
            "count": len(values)}


def _ms(seconds):
    return None if seconds is None else round(seconds * 1000.0, 1)


def analyse(result):
    """Figures of one deploy: requests and failures (all, and sent during the deploy), latency
    before and during, the fewest UP servers, per-host steps and clone lifetimes."""
    total = failed = during_total = during_failed = 0
    before_lat, during_lat = [], []
    for probe in result["probes"].values():
        start = result["started"] - probe["t0_epoch"]
        end = result["ended"] - probe["t0_epoch"]
        total += probe["requests"]
        failed += probe["failed"]
        for rec in probe["records"]:
            in_deploy = start <= rec["start"] <= end
            if in_deploy:
                during_total += 1
                during_failed += 0 if rec["ok"] else 1
            # /slow answers take their N ms by design; they would only hide the latency.
            if rec["ok"] and rec["kind"] != "slow":
                if rec["start"] < start:
                    before_lat.append(rec)
                elif in_deploy:
                    during_lat.append(rec)
    min_up = {}
    for lb, poller in result["pollers"].items():
        start = result["started"] - poller["t0_epoch"]
        end = result["ended"] - poller["t0_epoch"]
        counts = [s[1] for s in poller["samples"] if start <= s[0] <= end]
        min_up[lb] = min(counts) if counts else None
    sse = {lb: p["sse"] for lb, p in result["probes"].items()}
    return {
        "release": result["release"],
        "rc": result["rc"],
        "wall_s": round(result["ended"] - result["started"], 2),
        "requests": total, "failed": failed,
        "during": {"requests": during_total, "failed": during_failed},
        "latency_before": _latency(before_lat), "latency_during": _latency(during_lat),
        "min_up": min_up,
        "poller_errors": {lb: p["errors"] for lb, p in result["pollers"].items()},
        "by_instance": _merged(result["probes"], "by_instance"),
        "by_version": _merged(result["probes"], "by_version"),
        "sse": sse,
        "hosts": {host: {"outcome": rec.get("outcome"), "from": rec.get("from_release"),
                         "to": rec.get("release"),
                         "clone_lifetime": _float(rec.get("clone_lifetime")),
                         "steps": rec.get("steps", []), "marks": rec.get("marks", []),
                         "failure": rec.get("failure") or None,
                         "canary": rec.get("canary") or None}
                  for host, rec in result["records"].items()},
    }


def _merged(probes, key):
    merged = {}
    for probe in probes.values():
        for name, count in probe[key].items():
            merged[name] = merged.get(name, 0) + count
    return merged


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def print_report(lab, figures, out=sys.stdout):
    def say(text=""):
        print(text, file=out, flush=True)

    say()
    say("Step timeline (seconds since the playbook started):")
    say("  %-6s %-15s %8s %8s" % ("host", "step", "at", "seconds"))
    started = figures["started"]
    for host, info in sorted(figures["hosts"].items()):
        marks = {m["step"]: float(m["at"]) for m in info["marks"]}
        for step in info["steps"]:
            at = marks.get(step["step"])
            offset = "%.2f" % (at - started) if at else "-"
            say("  %-6s %-15s %8s %8.2f" % (host, step["step"], offset, step["seconds"]))
        total = sum(s["seconds"] for s in info["steps"])
        say("  %-6s %-15s %8s %8.2f   %s %s -> %s, clone lifetime %s s" % (
            host, "total", "", total, info["outcome"], info["from"], info["to"],
            "-" if info["clone_lifetime"] is None else "%.2f" % info["clone_lifetime"]))
        if info["canary"]:
            say("  %-6s canary: %s after a %s s bake: %s" % (
                host, info["canary"]["verdict"], info["canary"]["seconds"], info["canary"]["message"]))
        if info["failure"]:
            say("  %-6s failure: %s" % (host, json.dumps(info["failure"])))
    say()
    say("playbook: rc %d in %.1f s, release %s" % (figures["rc"], figures["wall_s"],
                                                   figures["release"]))
    say("answered by: %s" % ", ".join("%s %d" % kv
                                      for kv in sorted(figures["by_instance"].items())))
    say("during the deploy: %d requests, %d failed" % (figures["during"]["requests"],
                                                       figures["during"]["failed"]))
    before, during = figures["latency_before"], figures["latency_during"]
    say("latency before the deploy: p50 %s ms, p99 %s ms (%d requests)"
        % (before["p50_ms"], before["p99_ms"], before["count"]))
    say("latency during the deploy: p50 %s ms, p99 %s ms (%d requests)"
        % (during["p50_ms"], during["p99_ms"], during["count"]))
    say("min UP servers during the deploy: %s (app hosts: %d, servers: %d)" % (
        ", ".join("%s %s" % kv for kv in sorted(figures["min_up"].items())), len(lab.app_hosts),
        lab.servers))
    say("SSE: %s" % ", ".join("%s %d connects, %d events, %d errors" % (
        lb, s["connects"], s["events"], s["errors"]) for lb, s in sorted(figures["sse"].items())))
    say("requests: %d, failed: %d" % (figures["requests"], figures["failed"]))


def chart(lab, result, figures, path):
    """Write the SVG: OK requests/s by version (clone answers apart), failures, UP servers and
    the step marks."""
    t_ref = result["started"]
    stacks, failures = {}, {}
    order = []
    low = high = 0.0
    for probe in result["probes"].values():
        shift = probe["t0_epoch"] - t_ref
        for rec in probe["records"]:
            t = rec["end"] + shift
            low, high = min(low, t), max(high, t)
            start = round(math.floor(t / BIN_S) * BIN_S, 3)
            if not rec["ok"]:
                failures[start] = failures.get(start, 0.0) + 1.0 / BIN_S
                continue
            name = str(rec["version"])
            if rec.get("port") in lab.clone_ports:
                name += " via clone"
            if name not in stacks:
                stacks[name] = {}
                order.append(name)
            stacks[name][start] = stacks[name].get(start, 0.0) + 1.0 / BIN_S
    order.sort(key=lambda n: (n.replace(" via clone", ""), n.endswith(" via clone")))
    up_lines = []
    for lb, poller in sorted(result["pollers"].items()):
        shift = poller["t0_epoch"] - t_ref
        up_lines.append(("UP servers on %s" % lb,
                         [(s[0] + shift, s[1]) for s in poller["samples"]]))
    marks = []
    for host, info in figures["hosts"].items():
        for mark in info["marks"]:
            marks.append((float(mark["at"]) - t_ref, "%s %s" % (host, mark["step"]), host))
    failed = figures["failed"]
    title = "Rolling deploy to %s: %d requests, %d failed" % (
        figures["release"], figures["requests"], failed)
    # The bake shows as the canary's marks `bake` .. `cleanup` (or `rollback`); its verdict here.
    for host, info in sorted(figures["hosts"].items()):
        if info["canary"]:
            title += "; canary %s %s: %s" % (host, info["canary"]["verdict"],
                                             info["canary"]["message"])
    subtitle = ("lab %s: %d app host(s)%s behind %s; playbook %.1f s; min UP servers %s; "
                "p99 before %s ms, during %s ms" % (
                    lab.name, len(lab.app_hosts),
                    " x %d instances" % len(lab.ports) if len(lab.ports) > 1 else "",
                    ", ".join(lab.lb_hosts), figures["wall_s"],
                    min([v for v in figures["min_up"].values() if v is not None] or [None]),
                    figures["latency_before"]["p99_ms"], figures["latency_during"]["p99_ms"]))
    return plot.deploy_chart(
        path, title, subtitle, BIN_S, [(name, stacks[name]) for name in order], failures,
        up_lines, lab.servers, marks, (0.0, figures["wall_s"]),
        (min(low, -0.5), max(high, figures["wall_s"]) + 0.5))


def _shown(path):
    relative = os.path.relpath(path, REPO)
    return path if relative.startswith("..") else relative


def slow_start_vars(delay):
    """Deploy variables and playbook timeout for instances that take ``delay`` s to bind: the
    clone's and the original's starts, their checks and HAProxy's fresh checks each wait longer
    (docs/apps.md), and the playbook is given two such starts per host more."""
    if delay is None:
        return {}, PLAYBOOK_TIMEOUT
    wait = int(math.ceil(delay)) + 30
    return ({"rolling_environment": dict(DEPLOY_VARS["rolling_environment"], STARTUP_DELAY="%g" % delay),
             "rolling_start_timeout": wait, "rolling_check_deadline": wait,
             "rolling_ready_timeout": wait},
            PLAYBOOK_TIMEOUT + int(4 * delay))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--name", default="lab", help="lab name (default lab)")
    parser.add_argument("--release", help="v1, v2, v3, broken, crash, flaky or slow (default: v2, "
                                          "or the next release when every host serves v2 already)")
    parser.add_argument("--bake", type=int, default=0,
                        help="seconds the first batch bakes, judged by HAProxy's counters "
                             "(hitless_bake; docs/canary.md)")
    parser.add_argument("--serial", default=None,
                        help="hosts per batch (hitless_serial): a number, a percentage, or batches "
                             "joined by + (1+100%%: the canary, then the rest at once)")
    parser.add_argument("--out", default=os.path.join(REPO, ".tmp", "demo"),
                        help="directory for deploy.svg and the raw results")
    parser.add_argument("--before", type=float, default=5.0,
                        help="seconds the probe runs before the playbook starts")
    parser.add_argument("--rate", type=float, default=RATE, help="requests/s of the probe")
    parser.add_argument("--startup-delay", type=float, default=None,
                        help="seconds the new release's instances take before they bind (its "
                             "STARTUP_DELAY; default %s s as in the lab), like a JVM or Rails app's "
                             "start; the deploy's timeouts are raised to match"
                             % DEPLOY_VARS["rolling_environment"]["STARTUP_DELAY"])
    args = parser.parse_args(argv)
    releases = CYCLE + ("broken", "crash", "flaky", "slow")
    if args.release and args.release not in releases:
        parser.error("--release %s: one of %s" % (args.release, ", ".join(releases)))
    if not 0 <= args.before <= 30:
        parser.error("--before must be in [0, 30] s")
    if args.startup_delay is not None and not 0 <= args.startup_delay <= 120:
        parser.error("--startup-delay must be in [0, 120] s")
    try:
        lab = Lab(args.name)
        serving = lab.serving()
        release = pick_release(args.release or "v2", serving, explicit=bool(args.release))
        served = ", ".join("%s %s" % kv for kv in sorted(serving.items()))
        print("lab %s serves %s; deploying %s under the probe (%g requests/s, %s, SSE) and the "
              "show stat poller" % (lab.name, served, release, args.rate, lab.lb_url), flush=True)
        if all(r == release for r in serving.values()):
            print("note: every app host serves %s already, so the deploy swaps nothing" % release)
        extra, timeout = slow_start_vars(args.startup_delay)
        if args.bake:
            extra["hitless_bake"] = args.bake
            timeout += args.bake
        if args.serial:
            extra["hitless_serial"] = [int(p) if p.isdigit() else p for p in args.serial.split("+")]
        result = run_deploy(lab, release, args.out, extra_vars=extra, before_s=args.before,
                            rate=args.rate, timeout=timeout)
        figures = analyse(result)
        figures["started"] = result["started"]
        with open(os.path.join(args.out, "figures.json"), "w") as handle:
            json.dump(figures, handle, indent=2)
        svg = chart(lab, result, figures, os.path.join(args.out, "deploy.svg"))
        print_report(lab, figures)
        print("picture: %s; raw results and the playbook's output: %s"
              % (_shown(svg), _shown(args.out)))
    except DemoError as exc:
        print("demo.py: %s" % exc, file=sys.stderr)
        return 2
    if result["rc"] != 0:
        print("demo.py: the playbook failed (rc %d); its output is in %s"
              % (result["rc"], os.path.join(args.out, "playbook.log")), file=sys.stderr)
        print("\n".join(result["output"].splitlines()[-25:]), file=sys.stderr)
        return 1
    if figures["failed"]:
        print("demo.py: %d request(s) failed" % figures["failed"], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
