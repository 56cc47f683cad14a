"""RQ workers on a real Redis move with the release: no job lost, none run twice.

The lab ``itest-rq`` (1 HAProxy host; ``app1``, a web host; ``app2``, a worker-only host in
group ``workers``; the queue host ``queue1`` running Debian's ``redis-server``) runs the RQ app
of tests/real_apps/build_rq_release.py: Flask under gunicorn for the web on app1, and on both
hosts two workers ``demo-worker@1``/``@2`` running ``rq worker`` from the release's venv (RQ and
its Redis client from PyPI). Each job (``jobs.record``, 0.3 s) appends to a Redis
list the release of its code and of the library ``releasemark`` in the venv that ran it.

While a deploy runs, a feeder enqueues a job every 0.25 s with RQ itself (the venv of the
release serving when the test starts, run on the app host). Afterwards: every job enqueued has
exactly one result, none failed, none is left queued or started; the jobs started before the
deploy ran on the old release, those started after it on the new one, each on code and library
of one release; no job waited as long as a worker takes to start; the web lost no request and
each answer came from one release; every worker of both hosts runs the new release, no overlap
is left; the worker-only host moved after the web host, and a deploy that finds it moved
changes nothing there (checked, then applied).
"""
import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _deploy import (APP, FAST, REPO, ROOT, Run, check_clean, check_under_load, current_release,  # noqa: E402
                     deploy_runs, install_apps, kill_group, sh, task_line)
from _workers import Feeder, check_workers_on, ssh_argv, worker_pids  # noqa: E402
from _labs import BootedLab, LabError, booted_lab  # noqa: E402
from _real_apps import BuildError, check_one_release_per_answer  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "tests", "real_apps"))
import build_rq_release  # noqa: E402

WORKERS = ["1", "2"]
WORKER_HOST = "app2"
NEXT = {"rq-v1": "rq-v2", "rq-v2": "rq-v1"}
# An rq worker of these releases is ready WORKER_STARTUP_S after its start (worker_settings.py
# stands for a real app's framework loading), so a gap in consumption would make the jobs
# enqueued meanwhile wait at least that. A job arrives every 0.25 s and takes 0.3 s (plus RQ's
# fork): with a worker always consuming, none waits long.
WORKER_STARTUP_S = 3
WORKER_VARS = {"rolling_workers": WORKERS, "rolling_worker_settle": WORKER_STARTUP_S + 1,
               "rolling_environment": dict(FAST["rolling_environment"], WORKER_STARTUP_DELAY=str(WORKER_STARTUP_S))}
RESULTS = "hitless:results"
STOP = "hitless:stop-feeder"

# Enqueues jobs.record(N, now) every 0.25 s until STOP is set (at most 180 s), printing each id.
FEEDER = r"""
import time
from redis import Redis
from rq import Queue
redis = Redis(host="queue1")
queue = Queue(%(queue)r, connection=redis)
started, n = time.time(), 0
while not redis.exists(%(stop)r) and time.time() - started < 180:
    n += 1
    queue.enqueue("jobs.record", n, time.time(), job_id="job-%%06d" %% n, result_ttl=3600)
    print("job-%%06d" %% n, flush=True)
    time.sleep(0.25)
"""
# Waits (at most 30 s) until the queue is empty and no job is started, then prints the results
# and what RQ itself holds: queued, started, failed (with each failure's reason).
COLLECTOR = r"""
import json, time
from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry
redis = Redis(host="queue1")
queue = Queue(%(queue)r, connection=redis)
started, failed = StartedJobRegistry(queue=queue), FailedJobRegistry(queue=queue)
deadline = time.time() + 30
while time.time() < deadline and (queue.count or started.count):
    time.sleep(0.5)
print(json.dumps({
    "results": [json.loads(r) for r in redis.lrange(%(results)r, 0, -1)],
    "queued": queue.job_ids, "started": started.get_job_ids(),
    # Popped by a worker but not started yet (RQ's intermediate queue): a worker stopped in that
    # instant leaves the job there until RQ's maintenance fails it.
    "intermediate": queue.intermediate_queue.get_job_ids(),
    "failed": {j: (queue.fetch_job(j).latest_result().exc_string or "")[-500:]
               for j in failed.get_job_ids()}}))
redis.delete(%(results)r, %(stop)r)
"""
# Before a feeder starts: what an earlier test's jobs left in RQ (a job failed later by RQ's
# maintenance) goes, so that each test counts only its own jobs.
CLEANER = r"""
from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry
redis = Redis(host="queue1")
queue = Queue(%(queue)r, connection=redis)
failed = FailedJobRegistry(queue=queue)
for job_id in failed.get_job_ids() + queue.intermediate_queue.get_job_ids():
    if job_id.startswith("job-"):
        failed.remove(job_id, delete_job=True) if job_id in failed else queue.intermediate_queue.remove(job_id)
redis.delete(%(results)r)
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (overlay mounts, bridges, systemd-nspawn)")
    try:
        paths = build_rq_release.build(build_rq_release._build.RELEASES_DIR)
    except BuildError as error:
        pytest.fail("the RQ releases could not be built: %s" % error, pytrace=False)
    releases = {os.path.basename(p)[:-len(".tar.gz")]: p for p in paths}
    try:
        with booted_lab("itest-rq", "--app-hosts", "2", "--topology", "lb", "--queue-host",
                        "--no-provision") as booted:
            booted = worker_only(booted, WORKER_HOST, tmp_path_factory.mktemp("inventory") / "inventory.yml")
            apps = [{"name": APP, "port": 8080, "clone_port": 8081, "workers": WORKERS,
                     "release_src": releases["rq-v1"], "release_name": "rq-v1",
                     "exec_start": build_rq_release.APP_EXEC_START,
                     "worker_exec_start": build_rq_release.WORKER_EXEC_START}]
            install_apps(booted, apps, tmp_path_factory.mktemp("rq") / "site.log")
            booted.rq_releases = releases
            yield booted
    except LabError as error:
        pytest.fail(str(error), pytrace=False)


def worker_only(booted, host, path):
    """The lab with ``host`` moved from group app to group workers: a worker-only host."""
    with open(booted.inventory) as handle:
        data = yaml.safe_load(handle)
    children = data["all"]["children"]
    children["workers"] = {"hosts": {host: children["app"]["hosts"].pop(host)}}
    path.write_text(yaml.safe_dump(data))
    return BootedLab(booted.name, str(path), booted.lb_url)


class Jobs(Feeder):
    """The feeder (RQ's enqueue, from the venv of the release serving now) while a deploy runs."""

    def __init__(self, lab, host):
        # This release stays on the host through the deploy (it becomes `previous`).
        self.python = sh(lab, host, "readlink -f %s/current" % ROOT) + "/venv/bin/python"
        clean = subprocess.run(ssh_argv(lab, host, self.python, "-"), input=CLEANER % {
            "queue": build_rq_release.QUEUE, "results": RESULTS}, capture_output=True, text=True, timeout=60, check=False)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        super().__init__(lab, host, self.python, FEEDER % {"queue": build_rq_release.QUEUE, "stop": STOP})

    def finish(self):
        """Stop feeding; once RQ has run every job (at most 30 s), what it holds and the results."""
        sh(self.lab, self.host, "%s -c 'from redis import Redis; Redis(host=\"queue1\").set(\"%s\", 1)'"
           % (self.python, STOP))
        self.wait()
        collect = subprocess.run(ssh_argv(self.lab, self.host, self.python, "-"), input=COLLECTOR % {
            "queue": build_rq_release.QUEUE, "results": RESULTS, "stop": STOP},
            capture_output=True, text=True, timeout=60, check=False)
        assert collect.returncode == 0, collect.stdout + collect.stderr
        return json.loads(collect.stdout)


def in_hand_at_sigterm(lab, hosts, done, since, old):
    """The jobs of release ``old`` that a worker had in hand when it was told to stop (RQ's warm
    shutdown finished them): how often the test saw what KillMode=mixed is for."""
    count = 0
    for host in hosts:
        stops = {}
        for line in sh(lab, host, "journalctl -o short-unix --since @%d -u '%s-worker@*' | grep ' Stopping ' || true"
                       % (int(since), APP)).splitlines():
            stamp, unit = float(line.split()[0]), line.split(" Stopping ")[1].split(".service")[0]
            stops.setdefault(unit.split("@", 1)[1], []).append(stamp)
        count += sum(1 for r in done if r["host"] == host and r["version"] == old.split("-")[-1] and any(
            r["claimed_at"] < stop < r["finished_at"] for stop in stops.get(r["worker"], ())))
    return count


def check_jobs(jobs, held, before, after, old, new, moved=None):
    """None lost, failed or run twice, none waited a worker's start; ``old`` ran the jobs started
    before the deploy started, ``new`` those started after it ended (on the hosts ``moved``,
    default all), each on code and library of one release."""
    assert len(jobs.names) > 40, ("jobs enqueued", len(jobs.names), jobs.proc.returncode, jobs.other_output[-10:])
    mine = [name for name in held["queued"] + held["started"] + held["intermediate"] + list(held["failed"])
            if name.startswith("job-")]
    assert not mine, ({name: held["failed"].get(name, "intermediate" if name in held["intermediate"] else "")
                       for name in mine}, len(held["results"]))
    results = {}
    for result in held["results"]:
        results.setdefault("job-%06d" % result["job"], []).append(result)
    lost = [name for name in jobs.names if name not in results]
    twice = {name: r for name, r in results.items() if len(r) > 1}
    assert not lost and not twice, ("lost", lost[:10], "twice", list(twice.items())[:3])
    done = [r[0] for r in results.values()]
    mixed = [r for r in done if r["dependency"] != r["version"]
             or r["dependency_dist"] != {"v1": "1.0", "v2": "2.0"}[r["version"]]]
    assert not mixed, ("jobs run on code of one release and a library of another", mixed[:5])
    longest = max(r["claimed_at"] - r["enqueued"] for r in done)
    assert longest < WORKER_STARTUP_S - 1, ("the longest a job waited, s", longest)
    old, new = old.split("-")[-1], new.split("-")[-1]
    assert {r["version"] for r in done if r["claimed_at"] < before} <= {old}
    late = [r for r in done if r["claimed_at"] > after and (moved is None or r["host"] in moved)]
    assert {r["version"] for r in late} == {new}, sorted((r["job"], r["host"], r["version"]) for r in late)[:10]
    return done, {"jobs": len(jobs.names), "run": len(done), "lost": len(lost), "twice": len(twice),
                  "by_host": {h: sum(1 for r in done if r["host"] == h) for h in {r["host"] for r in done}},
                  "by_version": {v: sum(1 for r in done if r["version"] == v) for v in {r["version"] for r in done}},
                  "longest_wait_s": round(longest, 2)}


def changed_on(output, host):
    """The ``changed=`` count of ``host`` in the play recap."""
    return int(re.search(r"^%s\s*:.*changed=(\d+)" % re.escape(host), output, re.M).group(1))


def test_rq_workers_move_to_the_new_release_and_no_job_is_lost_or_run_twice(lab, tmp_path):
    host = lab.groups["app"][0]
    hosts = [host, WORKER_HOST]
    for round_trip in ("forward", "back"):
        old = current_release(lab, host)
        new = NEXT[old]
        for each in hosts:
            check_workers_on(lab, each, WORKERS, old)
        jobs = Jobs(lab, host)
        time.sleep(2)
        started = time.time()
        result = deploy_runs(lab, tmp_path / round_trip, [Run(
            "rolling", extra_vars=dict(WORKER_VARS, hitless_release_src=lab.rq_releases[new]))])
        ended = time.time()
        time.sleep(2)
        held = jobs.finish()
        assert result.rc == 0, result.tail(60)
        check_under_load(result, swapped=[host], app_hosts=[host])
        check_one_release_per_answer(result)
        check_clean(lab, new)
        done, figures = check_jobs(jobs, held, started, ended, old, new)
        # Both hosts consumed before and after the deploy.
        for each in hosts:
            assert {r["version"] for r in done if r["host"] == each} == {old.split("-")[-1], new.split("-")[-1]}, each
        figures["in_hand_at_sigterm"] = in_hand_at_sigterm(lab, hosts, done, started, old)
        print("rq", round_trip, old, "->", new, "jobs", figures, "web", result.summary())
        for each in hosts:
            check_workers_on(lab, each, WORKERS, new)
        # The worker-only host: current moved, no web instance, and its move came after the web
        # host's whole swap (the clone removed).
        assert current_release(lab, WORKER_HOST) == new
        assert sh(lab, WORKER_HOST, "systemctl is-active %s@8080 || true" % APP) == "inactive"
        output = result.output
        assert output.index("PLAY [Move the workers of worker-only hosts") > output.rindex(
            "TASK [hitless.deploy.rolling : Remove the clone"), output[-3000:]

    # Found moved: nothing to do on the worker-only host, checked then applied.
    release = current_release(lab, host)
    for args in (["--check"], []):
        again = deploy_runs(lab, tmp_path / ("again" + "".join(args)), [Run(
            "rolling", extra_vars=dict(WORKER_VARS, hitless_release_src=lab.rq_releases[release]), args=args)])
        assert again.rc == 0, again.tail(60)
        assert changed_on(again.output, WORKER_HOST) == 0, again.tail(60)
        check_workers_on(lab, WORKER_HOST, WORKERS, release)


# Enqueues one 3 s job, waits until a worker has it in hand, stops demo-worker@1 (the only one
# consuming: the others, the worker-only host's included, are stopped) as a deploy stops an old
# worker, and prints what became of the job.
IN_HAND = r"""
import json, subprocess, time
from redis import Redis
from rq import Queue
redis = Redis(host="queue1")
queue = Queue(%(queue)r, connection=redis)
job = queue.enqueue("jobs.record", %(number)d, time.time(), 3.0, job_id="in-hand-%(number)d")
deadline = time.time() + 30
while job.get_status(refresh=True) != "started" and time.time() < deadline:
    time.sleep(0.05)
in_hand = getattr(job.get_status(), "value", None)
stop = subprocess.run(["systemctl", "stop", "%(unit)s"], capture_output=True, text=True)
deadline = time.time() + 15
while job.get_status(refresh=True) == "started" and time.time() < deadline:
    time.sleep(0.2)
done = [json.loads(r) for r in redis.lrange(%(results)r, 0, -1) if json.loads(r)["job"] == %(number)d]
print(json.dumps({"in_hand": in_hand, "stop_rc": stop.returncode, "status": getattr(job.get_status(), "value", None),
                  "results": [(r["host"], r["worker"]) for r in done]}))
redis.delete(%(results)r)
job.delete()  # and from RQ's failed registry, where the deploy tests look for failed jobs
"""


@pytest.mark.parametrize("kill_mode,finished", [("mixed", True), ("control-group", False)])
def test_a_stopping_rq_worker_finishes_the_job_in_hand_only_with_kill_mode_mixed(lab, kill_mode, finished):
    """The app role's default (app_worker_kill_mode: mixed) is what lets RQ's warm shutdown
    finish a job: with control-group, systemd's SIGTERM also reaches the work horse, which dies."""
    host = lab.groups["app"][0]
    drop_in = "/run/systemd/system/%s-worker@1.service.d" % APP
    python = sh(lab, host, "readlink -f %s/current" % ROOT) + "/venv/bin/python"
    try:
        sh(lab, host, "systemctl stop %s-worker@2" % APP)
        sh(lab, WORKER_HOST, "systemctl stop %s" % " ".join("%s-worker@%s" % (APP, w) for w in WORKERS))
        if kill_mode != "mixed":
            sh(lab, host, "mkdir -p %s && printf '[Service]\\nKillMode=%s\\n' > %s/kill-mode.conf && "
                          "systemctl daemon-reload" % (drop_in, kill_mode, drop_in))
        sh(lab, host, "systemctl restart %s-worker@1 && sleep 2" % APP)
        assert sh(lab, host, "systemctl show -p KillMode --value %s-worker@1" % APP) == kill_mode
        number = int(time.time())
        run = subprocess.run(ssh_argv(lab, host, python, "-"), input=IN_HAND % {
            "queue": build_rq_release.QUEUE, "results": RESULTS, "unit": "%s-worker@1" % APP, "number": number},
            capture_output=True, text=True, timeout=90, check=False)
        assert run.returncode == 0, run.stdout + run.stderr
        seen = json.loads(run.stdout)
        print("kill mode", kill_mode, seen)
        assert (seen["in_hand"], seen["stop_rc"]) == ("started", 0), seen
        if finished:
            assert (seen["status"], seen["results"]) == ("finished", [[host, "1"]]), seen
        else:
            # Cut short: no result; RQ finds its horse killed (failed) or never ends it (started).
            assert seen["status"] != "finished" and seen["results"] == [], seen
    finally:
        sh(lab, host, "rm -rf %s && systemctl daemon-reload && systemctl start %s-worker@1 %s-worker@2"
           % (drop_in, APP, APP))
        sh(lab, WORKER_HOST, "systemctl start %s" % " ".join("%s-worker@%s" % (APP, w) for w in WORKERS))
        # Consuming again before the next test feeds jobs: a worker of these releases is ready
        # WORKER_STARTUP_S after its start.
        time.sleep(WORKER_STARTUP_S + 1)


def test_a_worker_only_host_whose_worker_cannot_start_keeps_its_old_workers_and_a_rerun_moves_them(lab, tmp_path):
    host = lab.groups["app"][0]
    old = current_release(lab, WORKER_HOST)
    new = NEXT[old]
    before = worker_pids(lab, WORKER_HOST, WORKERS)
    # Only this host's overlap of worker 1 cannot start: the release is good on the web host.
    broken = "/etc/systemd/system/%s-worker@1-next.service.d" % APP
    sh(lab, WORKER_HOST, "mkdir -p %s && printf '[Service]\\nExecStartPre=/bin/false\\n' > %s/broken.conf && "
                         "systemctl daemon-reload" % (broken, broken))
    try:
        jobs = Jobs(lab, host)
        time.sleep(2)
        started = time.time()
        result = deploy_runs(lab, tmp_path / "broken", [Run(
            "rolling", extra_vars=dict(WORKER_VARS, hitless_release_src=lab.rq_releases[new]))])
        ended = time.time()
        time.sleep(2)
        held = jobs.finish()
    finally:
        sh(lab, WORKER_HOST, "rm -rf %s && systemctl daemon-reload" % broken)
    assert result.rc != 0, result.tail(60)
    assert "did not start on this worker-only host" in result.output, result.tail(60)
    check_under_load(result, swapped=[host], app_hosts=[host])
    check_clean(lab, new)
    check_workers_on(lab, host, WORKERS, new)
    # The worker-only host: its workers never stopped, no overlap left, current unchanged.
    assert worker_pids(lab, WORKER_HOST, WORKERS) == before
    check_workers_on(lab, WORKER_HOST, WORKERS, old)
    assert current_release(lab, WORKER_HOST) == old
    done, figures = check_jobs(jobs, held, started, ended, old, new, moved=[host])
    assert {r["version"] for r in done if r["host"] == WORKER_HOST} == {old.split("-")[-1]}
    print("rq worker-only host failed", figures, "web", result.summary())

    result = deploy_runs(lab, tmp_path / "again", [Run(
        "rolling", extra_vars=dict(WORKER_VARS, hitless_release_src=lab.rq_releases[new]))])
    assert result.rc == 0, result.tail(60)
    check_workers_on(lab, WORKER_HOST, WORKERS, new)
    assert current_release(lab, WORKER_HOST) == new
    print("rq worker-only host re-run", result.summary())


def kill_after(seconds):
    """A trigger's action: SIGKILL the controller's process group ``seconds`` later, while the
    step that started runs on the host (unless the run has ended by then)."""
    def action(proc):
        def kill():
            if proc.poll() is None:
                kill_group(proc)
        threading.Timer(seconds, kill).start()
    return action


# In the worker-only host's play: while its overlaps start and settle (the play began, the
# release is staged in a second or two), and while its workers are replaced (current moved).
WORKER_HOST_KILLS = {
    "overlapping": (r"^PLAY \[Move the workers of worker-only hosts", 5.0),
    "moving": (task_line("Point current at release"), 2.0),
}


@pytest.mark.parametrize("kill_at", sorted(WORKER_HOST_KILLS))
def test_controller_killed_during_a_worker_only_hosts_move_then_a_plain_rerun_finishes_it(lab, tmp_path, kill_at):
    host = lab.groups["app"][0]
    old = current_release(lab, WORKER_HOST)
    new = NEXT[old]
    pattern, delay = WORKER_HOST_KILLS[kill_at]
    variables = dict(WORKER_VARS, hitless_release_src=lab.rq_releases[new])
    jobs = Jobs(lab, host)
    time.sleep(2)
    started = time.time()
    result = deploy_runs(lab, tmp_path, [Run("rolling", extra_vars=variables, triggers=[(pattern, kill_after(delay))]),
                                         Run("rolling", extra_vars=variables)])
    ended = time.time()
    time.sleep(2)
    held = jobs.finish()
    killed, rerun = result.runs
    assert killed.fired and killed.rc == -9, (killed.rc, killed.output[-3000:])
    assert rerun.rc == 0, rerun.output[-3000:]
    check_under_load(result, swapped=[host], app_hosts=[host])
    check_clean(lab, new)
    for each in (host, WORKER_HOST):
        check_workers_on(lab, each, WORKERS, new)
    assert current_release(lab, WORKER_HOST) == new
    _done, figures = check_jobs(jobs, held, started, ended, old, new)
    print("rq killed while", kill_at, figures, "web", result.summary())
