"""Background workers move with the release, under web load and a steady stream of jobs.

The lab ``itest-wrk`` (1 HAProxy host, 1 app host) runs the sample app and two workers
``demo-worker@1`` and ``@2`` (tests/sample_app/worker.py: a spool queue under shared/, each job
claimed by one atomic rename, its result naming the release that ran it). While a deploy runs,
a feeder on the app host enqueues a job every 0.25 s. Each test checks: no job lost, none run
twice, no job waited as long as a worker takes to start (a gap in consumption would show as
that wait), which release ran the jobs, 0 failed web requests, and the state left behind.

The cases: a plain deploy moves the workers; a release whose worker cannot start rolls the host
back with the old workers never stopped; the controller SIGKILLed (its whole process group, as
a dying CI runner) while app_worker runs on the host, once overlapping the workers on the new
release (post_start, before route back) and once moving them (cleanup, after route back), then
a plain re-run repairs forward from the journal and leaves both workers on the new release.
The module on the host outlives the controller and finishes its move, possibly while the
re-run's own move runs; so each kill point runs twice, the module left to run on and killed
on the host too (the move left half done for the re-run).
"""
import json
import os
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _deploy import (APP, FAST, NEXT, ROOT, Run, base_name, install_apps,  # noqa: E402
                     check_clean, check_under_load, current_release, deploy_runs, kill_group,
                     role_failures, sh, task_line)
from _status_workers import check_worker_findings, check_workers_shown  # noqa: E402
from _workers import Feeder, check_workers_on, worker_pids, worker_releases  # noqa: E402
from _labs import LabError, booted_lab  # noqa: E402

WORKERS = ["1", "2"]
WORKER_STARTUP_S = 3
QUEUE = ROOT + "/shared/queue"
WORKER_VARS = {"rolling_workers": WORKERS, "rolling_worker_settle": WORKER_STARTUP_S + 1,
               "rolling_environment": dict(FAST["rolling_environment"], WORKER_STARTUP_DELAY=str(WORKER_STARTUP_S))}
# Enqueues a job every 0.25 s until the stop file appears (at most 300 s: a killed run and its
# re-run feed into one queue), printing each name.
FEEDER = r"""
import json, os, time
new = "%(queue)s/new"
stop, started, n = "%(queue)s/stop-feeder", time.time(), 0
while not os.path.exists(stop) and time.time() - started < 300:
    n += 1
    name = "job-%%06d" %% n
    with open(os.path.join(new, "." + name), "w") as f:
        json.dump({"enqueued": time.time()}, f)
    os.rename(os.path.join(new, "." + name), os.path.join(new, name))
    print(name, flush=True)
    time.sleep(0.25)
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (overlay mounts, bridges, systemd-nspawn)")
    try:
        with booted_lab("itest-wrk", "--app-hosts", "1", "--topology", "lb") as booted:
            apps = [{"name": APP, "port": 8080, "clone_port": 8081, "workers": WORKERS}]
            install_apps(booted, apps, tmp_path_factory.mktemp("wrk") / "site.log")
            yield booted
    except LabError as error:
        pytest.fail(str(error), pytrace=False)


class Jobs(Feeder):
    """The feeder on ``host`` while a deploy runs; then every job's result."""

    def __init__(self, lab, host):
        # The workers make the queue's directories (as the app user, who must rename in them).
        sh(lab, host, "for i in $(seq 50); do test -d %s/new && break; sleep 0.2; done; test -d %s/new; "
                      "rm -f %s/stop-feeder" % (QUEUE, QUEUE, QUEUE))
        super().__init__(lab, host, "python3", FEEDER % {"queue": QUEUE})

    def finish(self):
        """Stop feeding, wait for the queue to drain (at most 30 s), return {job: [results]}."""
        sh(self.lab, self.host, "touch %s/stop-feeder" % QUEUE)
        self.wait()
        deadline = time.time() + 30
        while time.time() < deadline:
            left = sh(self.lab, self.host, "ls %s/new %s/claimed | grep -c job- || true" % (QUEUE, QUEUE))
            if left == "0":
                break
            time.sleep(0.5)
        results = {}
        text = sh(self.lab, self.host, "for f in %s/done/*.json; do cat $f; echo; done; "
                                       "rm -rf %s/done/* %s/stop-feeder" % (QUEUE, QUEUE, QUEUE))
        for line in text.splitlines():
            if line.strip():
                result = json.loads(line)
                results.setdefault(result["job"], []).append(result)
        return results


def check_jobs(jobs, results, before, after, old, new):
    """None lost, none twice, none waited a worker's start-up; ``old`` ran the jobs claimed
    before the deploy started, ``new`` those claimed after it ended."""
    assert len(jobs.names) > 40, ("jobs enqueued", len(jobs.names), jobs.proc.returncode, jobs.other_output[-10:])
    lost = [name for name in jobs.names if name not in results]
    twice = {name: r for name, r in results.items() if len(r) > 1}
    assert not lost and not twice, ("lost", lost[:10], "twice", list(twice.items())[:3])
    done = [r[0] for r in results.values()]
    # A job arrives every 0.25 s and takes 0.3 s: with a worker always consuming, none waits
    # long. A worker takes WORKER_STARTUP_S to start, so a gap in consumption would make the
    # jobs enqueued meanwhile wait at least that.
    longest = max(r["claimed_at"] - r["enqueued"] for r in done)
    assert longest < WORKER_STARTUP_S - 1, ("the longest a job waited, s", longest)
    claimed = sorted(done, key=lambda r: r["claimed_at"])
    assert {r["version"] for r in claimed if r["claimed_at"] < before} <= {old}
    assert {r["version"] for r in claimed if r["claimed_at"] > after} == {new}, [
        (r["job"], r["version"]) for r in claimed if r["claimed_at"] > after][:10]
    return {"jobs": len(jobs.names), "by_version": {v: sum(1 for r in done if r["version"] == v)
                                                    for v in {r["version"] for r in done}},
            "longest_wait_s": round(longest, 2)}


def worker_run(release, triggers=()):
    return Run("rolling", release, extra_vars=WORKER_VARS, triggers=triggers)


def deploy_with_jobs(lab, tmp_path, *runs):
    """``runs`` one after the other under the probes, the feeder enqueuing throughout."""
    host = lab.groups["app"][0]
    jobs = Jobs(lab, host)
    time.sleep(2)
    started = time.time()
    result = deploy_runs(lab, tmp_path, list(runs))
    ended = time.time()
    time.sleep(2)
    return result, jobs, jobs.finish(), started, ended


def test_workers_move_to_the_new_release_without_a_gap_and_no_job_is_lost_or_run_twice(lab, tmp_path):
    host = lab.groups["app"][0]
    old = current_release(lab, host)
    new = NEXT[old]
    workers = worker_releases(lab, host, WORKERS)
    assert [base_name(workers["%s-worker@%s" % (APP, w)]) for w in WORKERS] == [old] * len(WORKERS), workers
    result, jobs, results, started, ended = deploy_with_jobs(lab, tmp_path, worker_run(new))
    assert result.rc == 0, result.tail(60)
    check_under_load(result, swapped=[host], app_hosts=[host])
    check_clean(lab, new)
    figures = check_jobs(jobs, results, started, ended, old, new)
    print("jobs", figures)
    check_workers_on(lab, host, WORKERS, new)


def test_a_release_whose_worker_cannot_start_rolls_the_host_back_and_the_old_workers_never_stop(lab, tmp_path):
    host = lab.groups["app"][0]
    serving = current_release(lab, host)
    before = worker_pids(lab, host, WORKERS)
    result, jobs, results, _started, _ended = deploy_with_jobs(lab, tmp_path, worker_run("noworker"))
    assert result.rc != 0, result.tail(60)
    failure = role_failures(result.output).get(host, result.tail(40))
    assert "post_start" in failure and "did not stay up" in failure, failure
    check_under_load(result, swapped=[host], app_hosts=[host])
    check_clean(lab, serving)
    assert worker_pids(lab, host, WORKERS) == before
    workers = worker_releases(lab, host, WORKERS)
    assert all(workers["%s-worker@%s-next" % (APP, w)] == "inactive" for w in WORKERS), (
        workers, sh(lab, host, "systemctl status --no-pager '%s-worker@*' 2>&1 | tail -40; true" % APP))
    marks = sh(lab, host, "ls %s/.hitless/bad" % ROOT).split()
    assert [base_name(m) for m in marks] == ["noworker"], marks
    sh(lab, host, "rm -rf %s/.hitless/bad/*" % ROOT)
    figures = check_jobs(jobs, results, 0, 0, serving, serving)
    print("jobs", figures)


# The module's payload directory on the host (the AnsiballZ wrapper's, under the host's /tmp)
# exists from the module's start to its end: while it does, app_worker runs there.
MODULE_RUNNING = "ls -d /tmp/ansible_*app_worker_payload_* 2>/dev/null || true"
# The module's SSH session on the host (Ansible runs a pipelined module as
# "sh -c 'PYTHON && sleep 0'", its session's leader), SIGKILLed whole; and the payload
# directory a killed wrapper leaves behind. Prints how many sessions it killed.
KILL_MODULE = ("n=0; for pid in $(pgrep -f -- '-c .*python[0-9.]* && sleep 0$'); do "
               "pkill -KILL -s $(ps -o sid= -p $pid) && n=$((n + 1)); done; sleep 0.5; "
               "rm -rf /tmp/ansible_*app_worker_payload_*; echo $n")


class KillMidModule:
    """A trigger action for the start line of a "Make the workers ..." task: the line is printed
    before the module even reaches the host, so wait (at most 60 s) until the host shows the
    module at work (``acting``, and its payload there), then SIGKILL the controller's process
    group. That does not stop the module on the host (its SSH session only loses its client:
    no terminal, no SIGHUP), so it finishes the move on its own unless ``module_too`` kills its
    session there as well (as a host that lost it would), leaving the move half done.
    Afterwards, in a thread of its own, how long the module went on running on the host."""

    def __init__(self, lab, host, acting, module_too):
        self.lab, self.host, self.acting, self.module_too = lab, host, acting, module_too
        self.seen_acting = self.killed_at = self.module_ended_at = self.sessions_killed = None
        self.payloads, self.watcher, self.rerun_moves_at = [], None, None

    def _check(self, command):
        proc = self.lab.ssh(self.host, command, timeout=20)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def __call__(self, proc):
        try:
            deadline = time.time() + 60
            while time.time() < deadline:
                self.payloads = (self._check(MODULE_RUNNING) or "").split()
                if self.payloads and self.acting(self):
                    self.seen_acting = time.time()
                    break
                time.sleep(0.2)
        finally:
            kill_group(proc)
            self.killed_at = time.time()
            if self.module_too:
                self.sessions_killed = self._check(KILL_MODULE)
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()

    def _watch(self):
        # This module's payload only: the re-run's own app_worker may run meanwhile.
        deadline = time.time() + 180
        while self.payloads and time.time() < deadline:
            if self._check("ls -d %s 2>/dev/null || true" % " ".join(self.payloads)) == "":
                self.module_ended_at = time.time()
                return
            time.sleep(0.5)

    def rerun_moves(self, _proc):
        """A trigger action for the re-run: when its converge starts moving the workers."""
        self.rerun_moves_at = time.time()


def overlap_started(killer):
    """app_worker overlapping: the first overlap has been started (it is now settling)."""
    return killer._check("systemctl is-active %s-worker@%s-next || true" % (APP, WORKERS[0])) == "active"


def first_worker_replaced(before):
    """app_worker moving: the first worker's original was stopped and started again."""
    def acting(killer):
        pid = killer._check("systemctl show -p MainPID --value %s-worker@%s" % (APP, WORKERS[0]))
        return pid not in (None, before[WORKERS[0]])
    return acting


# Two of the four combinations, for CI's time (all four passed 3 to 5 times each, docs/reliability.md):
# the module killed too leaves the overlaps half started for the re-run; the module left to run
# moves the workers while the re-run's converge waits for it (app_worker's lock on the units).
@pytest.mark.parametrize("state,module", [("overlapped", "module-killed-too"), ("moved", "module-runs-on")])
def test_controller_killed_while_the_workers_move_then_a_plain_rerun_converges(lab, tmp_path, state, module):
    host = lab.groups["app"][0]
    old = current_release(lab, host)
    new = NEXT[old]
    before = worker_pids(lab, host, WORKERS)
    workers = worker_releases(lab, host, WORKERS)
    assert [base_name(workers["%s-worker@%s" % (APP, w)]) for w in WORKERS] == [old] * len(WORKERS), workers
    # overlapped: post_start, the original on the new release but drained, the clone serving;
    # killed there, the first overlap is up and the second not yet. moved: cleanup, after
    # route back, both overlaps up; killed there, the first worker runs the new release and
    # the second the old one.
    acting = overlap_started if state == "overlapped" else first_worker_replaced(before)
    killer = KillMidModule(lab, host, acting, module == "module-killed-too")
    # The name as Ansible prints it, templated: "Make the workers moved on release v2+1a2b3c4d".
    # Only the deploy's own task matches in the killed run: the converge's (the same task
    # file) is included only when a journal is open, and it is closed before this run.
    trigger = task_line("Make the workers %s on release %s" % (state, new))
    result, jobs, results, started, ended = deploy_with_jobs(
        lab, tmp_path, worker_run(new, triggers=[(trigger, killer)]),
        worker_run(new, triggers=[(task_line("Make the workers moved"), killer.rerun_moves)]))
    killed, rerun = result.runs
    assert killed.fired, "the kill point %r was never reached:\n%s" % (trigger, killed.output[-3000:])
    assert killed.rc == -9, (killed.rc, killed.output[-2000:])
    assert killer.seen_acting, ("app_worker was not seen at work on the host before the kill",
                                killed.output[-2000:])
    if module == "module-killed-too":
        assert killer.sessions_killed == "1", ("the module's session on the host", killer.sessions_killed)
    assert rerun.rc == 0, result.tail(60)
    check_under_load(result, swapped=[host], app_hosts=[host])
    check_clean(lab, new)
    assert set(result.by_version) <= {old, new}, result.by_version
    assert result.answered_after_end() == {(host, new)}, result.answered_after_end()
    check_workers_on(lab, host, WORKERS, new)
    # The re-run found the journal open (the clone is removed and the journal closed only
    # after the move) and finished the deploy forward: the new release ran and passed its
    # checks. Nothing was left to deploy after that.
    record = result.records[host]
    assert record["outcome"] == "unchanged" and record["repaired"].endswith("forward"), record
    figures = check_jobs(jobs, results, started, ended, old, new)
    killer.watcher.join(timeout=5)
    # Whether the killed run's module was still at work when the re-run's converge began its
    # own move (its task starts; its module then waits on app_worker's lock on the units).
    after_kill = {"module ended": killer.module_ended_at, "re-run moves": killer.rerun_moves_at}
    print(state, module, "jobs", figures, "s after the kill:",
          {k: round(v - killer.killed_at, 1) if v else None for k, v in after_kill.items()},
          result.summary())


def test_the_status_shows_each_worker_on_the_release_it_runs_and_flags_what_is_left_behind(lab, tmp_path):
    host = lab.groups["app"][0]
    check_workers_shown(lab, host, WORKERS, tmp_path)
    check_worker_findings(lab, host, WORKERS)
