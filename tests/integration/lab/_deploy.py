"""Run a deploy playbook against a lab under the load probe and the ``show stat`` poller.

``deploy(lab, ...)`` starts one probe per LB host (the rate split between them, each with its
SSE client) and one poller per LB host, runs ``ansible-playbook``, lets the probes watch the
result for a moment, then stops them through their stop file; every process is bounded in time
and stopped in ``finally``. ``check_clean(lab, ...)`` reads the hosts afterwards.
"""
import concurrent.futures
import glob
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
BIN = os.path.dirname(sys.executable)
PROBE = os.path.join(REPO, "tests", "probe", "loadprobe.py")
POLLER = os.path.join(REPO, "tests", "probe", "statpoller.py")
COLLECTIONS = os.path.join(REPO, ".tmp", "collections")
sys.path.insert(0, os.path.dirname(PROBE))

from _processes import load_result, spawn, stop  # noqa: E402
# The client the modules use; tests/conftest.py puts the collection on sys.path.
from ansible_collections.hitless.deploy.plugins.module_utils._haproxy_runtime import (  # noqa: E402
    RuntimeClient)

APP = "demo"
PORT = 8080
CLONE_PORT = 8081
ROOT = "/srv/demo"
ADMIN_PORT = 9999
LOCK_DIR = "/var/lib/hitless-deploy/locks"
# Quick deploys for tests: drain grace and check deadline short, the app starts in 1 s.
FAST = {"rolling_environment": {"STARTUP_DELAY": "1"}, "rolling_drain_grace": 3,
        "rolling_check_deadline": 8}
RATE = 50.0
PLAYBOOK_TIMEOUT = 300
WARMUP_S = 1.0   # the probes and pollers must watch the state before the deploy
TAIL_S = 1.5     # ... and after it, to see who serves at the end

RECAP_RE = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                      r"failed=(\d+)\s+skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)", re.M)
RECAP_KEYS = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")
FATAL_RE = re.compile(r"^fatal: \[(\S+)\]: FAILED! => (\{.*\})$", re.M)


def role_failures(output):
    """``{host: msg}`` of the play's final failure messages (the role's own ``fail``), not the
    failed task's own message that comes before it."""
    found = {}
    for match in FATAL_RE.finditer(output):
        msg = json.loads(match.group(2)).get("msg", "")
        if msg.startswith("hitless.deploy.rolling failed on "):
            found[match.group(1)] = msg
    return found


class DeployResult:
    """What one playbook run did and what the probes and pollers saw meanwhile."""

    def __init__(self, rc, output, probes, pollers, records, started, ended, seconds):
        self.rc = rc
        self.output = output
        self.probes = probes      # LB host -> probe result
        self.pollers = pollers    # LB host -> poller result
        self.records = records    # app host -> deploy record (rolling_report_dir)
        self.started = started    # epoch seconds of the playbook's start and end
        self.ended = ended
        self.seconds = seconds
        self.recap = {m.group(1): dict(zip(RECAP_KEYS, map(int, m.groups()[1:])))
                      for m in RECAP_RE.finditer(output)}

    @property
    def requests(self):
        return sum(p["requests"] for p in self.probes.values())

    @property
    def failed(self):
        return sum(p["failed"] for p in self.probes.values())

    @property
    def failures(self):
        return [dict(f, lb=lb) for lb, p in self.probes.items() for f in p["failures"]]

    def _counts(self, field):
        """The probes' ``field`` counters, summed over every LB host's probe."""
        merged = {}
        for probe in self.probes.values():
            for key, count in probe[field].items():
                merged[key] = merged.get(key, 0) + count
        return merged

    @property
    def by_instance(self):
        return self._counts("by_instance")

    @property
    def by_version(self):
        return self._counts("by_version")

    def versions_from(self, host, port):
        """Versions that answered from instance ``host:port``."""
        return {r["version"] for probe in self.probes.values() for r in probe["records"]
                if r["ok"] and (r["host"], r["port"]) == (host, port)}

    def answered_after_end(self):
        """``{(host, version)}`` of the answers to requests sent after the playbook ended."""
        seen = set()
        for probe in self.probes.values():
            after = self.ended - probe["t0_epoch"]
            seen.update((r["host"], r["version"]) for r in probe["records"]
                        if r["ok"] and r["start"] > after)
        return seen

    def tail(self, lines=40):
        return "\n".join(self.output.splitlines()[-lines:])

    def summary(self):
        return ("rc %d in %.1f s; requests %d, failed %d, versions %s, instances %s, min UP %s, "
                "servers seen %s" % (
                    self.rc, self.seconds, self.requests, self.failed, self.by_version,
                    self.by_instance, {lb: p["min_up"] for lb, p in self.pollers.items()},
                    {lb: p["servers_seen"] for lb, p in self.pollers.items()}))


def ansible_env():
    env = dict(os.environ)
    env.update({
        "PATH": BIN + os.pathsep + env.get("PATH", ""),
        # As tests/conftest.py: a collections path set by the caller wins.
        "ANSIBLE_COLLECTIONS_PATH": env.get("ANSIBLE_COLLECTIONS_PATH") or COLLECTIONS,
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
    })
    return env


def install_apps(lab, apps, log):
    """tests/lab/site.yml on ``lab`` with ``lab_apps`` = ``apps`` (several apps, workers, a real
    app's release); its output goes to the file ``log``, named by the assertion if it fails."""
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", lab.inventory,
                           os.path.join(REPO, "tests", "lab", "site.yml"), "-e", json.dumps({"lab_apps": apps})],
                          capture_output=True, text=True, env=ansible_env(), cwd=REPO, timeout=600,
                          stdin=subprocess.DEVNULL, check=False)
    log.write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, "tests/lab/site.yml with %s failed, see %s" % ([a["name"] for a in apps], log)


def lb_hosts(lab):
    return lab.groups["haproxy"]


class Run:
    """One ansible-playbook run of a deploy: its variables, and what to do to it meanwhile.

    ``triggers`` are ``(regex, action)`` pairs: the first output line matching ``regex`` calls
    ``action(proc)`` once (from the reader thread), for example :func:`kill_group` to SIGKILL
    the controller's whole process group as a dying CI runner would, or a ``systemctl reload
    haproxy`` on an LB host. ``wait`` False starts it and lets the next run start at once
    (two deploys at the same time). ``argv``, when set, is run instead of ansible-playbook
    (an ``ansible-runner run`` of an AWX-style private data directory), under the same probes.
    """
    argv = None

    def __init__(self, playbook="rolling", release=None, extra_vars=None, triggers=(),
                 wait=True, timeout=PLAYBOOK_TIMEOUT, args=()):
        self.playbook = playbook
        self.release = release
        self.extra_vars = extra_vars or {}
        self.triggers = list(triggers)
        self.wait = wait
        self.timeout = timeout
        self.args = list(args)
        self.fired = []
        self.rc = None
        self.output = ""


def kill_group(proc):
    os.killpg(proc.pid, signal.SIGKILL)


def task_line(name):
    """Regex of the line Ansible prints when the rolling role's task ``name`` starts."""
    return r"^TASK \[hitless\.deploy\.rolling : %s" % re.escape(name)


def _command(lab, run, report_dir):
    if run.argv:
        return run.argv
    variables = dict(FAST, rolling_report_dir=report_dir)
    if run.release:
        variables["hitless_release_src"] = os.path.join(os.environ["HITLESS_RELEASES"],
                                                        run.release + ".tar.gz")
    variables.update(run.extra_vars)
    return [os.path.join(BIN, "ansible-playbook"), "-i", lab.inventory,
            "hitless.deploy." + run.playbook, "-e", json.dumps(variables)] + run.args


def _start(lab, run, report_dir):
    proc = subprocess.Popen(_command(lab, run, report_dir), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=ansible_env(), cwd=REPO, start_new_session=True)
    lines = []

    def read():
        pending = list(run.triggers)
        for line in proc.stdout:
            lines.append(line)
            for trigger in list(pending):
                if re.search(trigger[0], line):
                    pending.remove(trigger)
                    run.fired.append(trigger[0])
                    trigger[1](proc)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return proc, reader, lines


def _finish(run, proc, reader, lines):
    try:
        proc.wait(timeout=run.timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        proc.wait()
        lines.append("\nTIMEOUT after %d s\n" % run.timeout)
    reader.join(10)
    run.rc, run.output = proc.returncode, "".join(lines)


def deploy_runs(lab, workdir, runs, other_apps=()):
    """Run ``runs`` (:class:`Run`) one after another, all under the same probes and pollers;
    return a DeployResult whose rc and output are the last run's (``.runs`` has them all).

    ``other_apps`` names apps beside APP on the same hosts (its backend and Host header): each
    gets its own probe and poller on every HAProxy host, and its own DeployResult in
    ``.apps[name]`` (``.apps[APP]`` is the result itself)."""
    workdir = str(workdir)
    os.makedirs(workdir, exist_ok=True)
    report_dir = os.path.join(workdir, "records")
    stop_file = os.path.join(workdir, "stop")
    bound = sum(run.timeout for run in runs) + WARMUP_S + TAIL_S + 30
    lbs = lb_hosts(lab)
    procs, outputs, started_runs = [], {}, []
    try:
        for lb, app in [(lb, app) for app in (APP,) + tuple(other_apps) for lb in lbs]:
            address = lab.hosts[lb]
            suffix = lb if app == APP else "%s-%s" % (lb, app)
            out = os.path.join(workdir, "probe-%s.json" % suffix)
            log = out[:-5] + ".log"
            procs.append(spawn([sys.executable, PROBE, "--url", "http://%s:80" % address,
                                "--duration", str(bound), "--rate", str(RATE / len(lbs)),
                                "--stop-file", stop_file, "--out", out]
                               + ([] if app == APP else ["--host-header", app]), log))
            outputs[("probe", lb, app)] = (out, log)
            out = os.path.join(workdir, "poll-%s.json" % suffix)
            log = out[:-5] + ".log"
            procs.append(spawn([sys.executable, POLLER,
                                "--admin", "%s:%d" % (address, ADMIN_PORT),
                                "--backend", app, "--duration", str(bound),
                                "--stop-file", stop_file, "--out", out], log))
            outputs[("poll", lb, app)] = (out, log)
        time.sleep(WARMUP_S)
        started = time.time()
        for run in runs:
            started_runs.append((run,) + _start(lab, run, report_dir))
            if run.wait:
                for item in started_runs:
                    if item[0].rc is None:
                        _finish(*item)
        for item in started_runs:
            if item[0].rc is None:
                _finish(*item)
        ended = time.time()
        with open(os.path.join(workdir, "playbook.log"), "w") as handle:
            for number, run in enumerate(runs):
                handle.write("=== run %d: rc %s, fired %s\n%s" % (number, run.rc, run.fired, run.output))
        time.sleep(TAIL_S)
    finally:
        for item in started_runs:
            if item[1].poll() is None:
                kill_group(item[1])
        stop(procs, stop_file)
    probes = {lb: load_result(*outputs[("probe", lb, APP)]) for lb in lbs}
    pollers = {lb: load_result(*outputs[("poll", lb, APP)]) for lb in lbs}
    records = {}
    for path in glob.glob(os.path.join(report_dir, "*.json")):
        with open(path) as handle:
            records[os.path.basename(path)[:-5]] = json.load(handle)
    result = DeployResult(runs[-1].rc, runs[-1].output, probes, pollers, records, started, ended,
                          ended - started)
    result.runs = runs
    result.apps = {APP: result}
    for app in other_apps:
        result.apps[app] = DeployResult(
            runs[-1].rc, runs[-1].output, {lb: load_result(*outputs[("probe", lb, app)]) for lb in lbs},
            {lb: load_result(*outputs[("poll", lb, app)]) for lb in lbs}, records, started, ended,
            ended - started)
        result.apps[app].runs = runs
    # What tests/integration/lab/fault_matrix.py tabulates into docs/reliability.md.
    with open(os.path.join(workdir, "summary.json"), "w") as handle:
        test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0].split("::", 1)[-1]
        json.dump({"test": test, "requests": result.requests, "failed": result.failed,
                   "min_up": min(p["min_up"] for p in pollers.values() if p["min_up"] is not None)
                   if any(p["min_up"] is not None for p in pollers.values()) else None,
                   "rcs": [run.rc for run in runs], "fired": [run.fired for run in runs],
                   "seconds": round(result.seconds, 1)}, handle)
    return result


def deploy(lab, workdir, playbook="rolling", release=None, extra_vars=None,
           timeout=PLAYBOOK_TIMEOUT):
    """Run the playbook ``hitless.deploy.PLAYBOOK`` on ``lab`` under probes and pollers, by its
    FQCN as users do; return a DeployResult.

    ``release`` names an archive of $HITLESS_RELEASES (``v2`` -> ``v2.tar.gz``) passed as
    ``hitless_release_src``; ``extra_vars`` are added to the quick test settings (FAST).
    ``workdir`` (a test's tmp_path) keeps the probe and poller results, their logs, the
    playbook's output and the deploy records for a look after a failure.
    """
    return deploy_runs(lab, workdir, [Run(playbook, release, extra_vars, timeout=timeout)])


# --- checks on the hosts afterwards --------------------------------------------------------

def sh(lab, host, command):
    proc = lab.ssh(host, command)
    assert proc.returncode == 0, (host, command, proc.stdout, proc.stderr)
    return proc.stdout.strip()


def show_stat(lab, lb):
    """``{(backend, server): status}`` of every server of every backend of HAProxy on ``lb``."""
    rows = RuntimeClient("%s:%d" % (lab.hosts[lb], ADMIN_PORT), timeout=5).show_stat()
    return {(row["pxname"], row["svname"]): row.get("status") or ""
            for row in rows if row["svname"] not in ("FRONTEND", "BACKEND")}


# What serves on an app host: its links, bad marks and units, as text.
SERVING_STATE = ("readlink current previous; ls -A .hitless/bad 2>&1; "
                 "systemctl list-units '%s@*' --all --plain --no-legend | sort" % APP)


def host_state(lab, host):
    """What a deploy may change on an app host, as text, to compare before and after."""
    return sh(lab, host, "cd %s && ls -A releases 2>&1; %s" % (ROOT, SERVING_STATE))


def serving_state(lab, host):
    """What serves on an app host, as text; a release staged beside it by a rollout that
    stopped before this host's swap does not count."""
    return sh(lab, host, "cd %s && %s" % (ROOT, SERVING_STATE))


def base_name(release_dir):
    """The release a directory was made from: ``v2+1a2b3c4d`` (with its configuration) -> ``v2``."""
    return release_dir.split("+", 1)[0]


def current_dir(lab, host):
    return os.path.basename(sh(lab, host, "readlink %s/current" % ROOT))


def current_release(lab, host):
    return base_name(current_dir(lab, host))


# Tests deploy the release after whichever serves, so that none depends on another having run.
NEXT = {"v1": "v2", "v2": "v3", "v3": "v1"}


def forget_bad_marks_of_good_releases(lab):
    """Remove the bad marks of the releases in NEXT on every app host of ``lab``.

    A test that fails by mistake (a verdict on a machine too loaded to judge) rolls back and
    marks its good release bad; without this, every later test of the lab deploying that
    release would fail too, hiding which failure came first."""
    marks = " ".join("%s/.hitless/bad/%s+*" % (ROOT, release) for release in NEXT)
    for host in lab.groups["app"]:
        sh(lab, host, "rm -f %s" % marks)


def serving_release(lab):
    """The one release every app host of ``lab`` serves."""
    releases = {current_release(lab, host) for host in lab.groups["app"]}
    assert len(releases) == 1, "the app hosts serve different releases: %s" % releases
    return releases.pop()


# One ssh round trip per host: the state check_clean needs, as KEY=VALUE lines.
KEPT_RELEASES = 5
CLEAN_STATE = (
    "echo clone=$(systemctl is-active {app}@{clone}); "
    "echo drop_in=$(test -e /run/systemd/system/{app}@{clone}.service.d && echo yes || echo no); "
    "echo current=$(readlink {root}/current); "
    "echo journal=$(test -e {root}/.hitless/journal.json && echo open || echo closed); "
    "echo releases=$(ls -A {root}/releases | grep -vc '^[.]'); "
    "echo running=$(systemctl list-units '{app}@*' --all --plain --no-legend "
    "| awk '$3 != \"inactive\" {{print $1}}')"
)


def check_clean(lab, release, app_hosts=None, app=APP, port=PORT, clone_port=CLONE_PORT):
    """No clone anywhere, every original in service, ``current`` -> ``release`` on each host
    (of ``app``, by default the lab's app, whose root is /srv/APP)."""
    app_hosts = app_hosts or lab.groups["app"]
    command = CLEAN_STATE.format(app=app, clone=clone_port, root="/srv/" + app)
    with concurrent.futures.ThreadPoolExecutor(len(app_hosts)) as pool:
        states = dict(zip(app_hosts, pool.map(lambda h: lab.ssh(h, command), app_hosts)))
    for host, proc in states.items():
        assert proc.returncode == 0, (host, proc.stdout, proc.stderr)
        state = dict(line.split("=", 1) for line in proc.stdout.splitlines())
        assert state["clone"] != "active", "%s: the clone %s@%d still runs" % (
            host, app, clone_port)
        assert state["drop_in"] == "no", "%s: the clone's drop-in directory is still there" % host
        assert state["journal"] == "closed", "%s: the deploy journal is still open" % host
        current = base_name(os.path.basename(state["current"]))
        assert current == release, "%s: current is %s, expected %s" % (host, current, release)
        assert state["running"].split() == ["%s@%d.service" % (app, port)], (host, state)
        # rolling_keep_releases (5, the role's default) and, besides, current and previous.
        assert int(state["releases"]) <= KEPT_RELEASES + 2, (
            "%s: %s releases left, rolling_keep_releases is %d" % (host, state["releases"],
                                                                   KEPT_RELEASES))
    for lb in lb_hosts(lab):
        servers = show_stat(lab, lb)
        # A clone slot declared in the configuration stays, in maint; nothing else may.
        clones = [key for key, status in servers.items()
                  if key[1].endswith("-clone") and status != "MAINT"]
        assert not clones, "%s still has clone servers in service: %s" % (lb, clones)
        lock = lab.ssh(lb, "cat %s/%s.json" % (LOCK_DIR, app))
        assert lock.returncode != 0, "%s: the deploy lock is still held: %s" % (lb, lock.stdout)
        for host in lab.groups["app"]:
            assert servers.get((app, host), "").startswith("UP"), (lb, host, servers)


def check_under_load(result, swapped, app_hosts, clone_ports=(CLONE_PORT,)):
    """Zero failed requests; capacity never below the app hosts; clones seen where swapped (on
    any of ``clone_ports``: a repair may clear a clone on the port an interrupted run used)."""
    assert result.failed == 0, "%d failed of %d requests; first ones: %s" % (
        result.failed, result.requests, result.failures[:5])
    for lb, probe in result.probes.items():
        assert probe["requests"] > 0 and probe["sse"]["connects"] > 0, (lb, probe["sse"])
        assert probe["sse"]["errors"] == 0, (lb, probe["sse"])
    for lb, poller in result.pollers.items():
        # A sample lost is a moment unobserved: the minimum would prove less.
        assert poller["errors"] == 0 and len(poller["samples"]) > 20, (
            lb, poller["errors"], poller.get("error_texts"), len(poller["samples"]))
        assert poller["min_up"] is not None and poller["min_up"] >= len(app_hosts), (
            "%s: %s UP servers at the worst moment, %d app hosts" % (
                lb, poller["min_up"], len(app_hosts)))
        for host in app_hosts:
            # A declared clone slot is always listed (in maint): what counts is serving.
            seen = any(sample[2].get(host + "-clone", "").startswith("UP")
                       for sample in poller["samples"])
            assert seen == (host in swapped), (lb, host, poller["servers_seen"])
    for host in app_hosts:
        answered = any("%s:%d" % (host, port) in result.by_instance for port in clone_ports)
        assert answered == (host in swapped), (host, result.by_instance)
