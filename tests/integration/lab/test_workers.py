"""Background workers move with the release, under web load and a steady stream of jobs.

The lab ``itest-wrk`` (1 HAProxy host, 1 app host) runs the sample app and two workers
``demo-worker@1`` and ``@2`` (tests/sample_app/worker.py: a spool queue under shared/, each job
claimed by one atomic rename, its result naming the release that ran it). While a deploy runs,
a feeder on the app host enqueues a job every 0.25 s. Each test checks: no job lost, none run
twice, no job waited as long as a worker takes to start (a gap in consumption would show as
that wait), which release ran the jobs, 0 failed web requests, and the state left behind.
"""
import json
import os
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _deploy import (APP, BIN, FAST, NEXT, REPO, ROOT, Run, ansible_env, base_name,  # noqa: E402
                     check_clean, check_under_load, current_release, deploy_runs, role_failures, sh)
from _labs import LabError, booted_lab  # noqa: E402

WORKERS = ["1", "2"]
WORKER_STARTUP_S = 3
QUEUE = ROOT + "/shared/queue"
WORKER_VARS = {"rolling_workers": WORKERS, "rolling_worker_settle": WORKER_STARTUP_S + 1,
               "rolling_environment": dict(FAST["rolling_environment"], WORKER_STARTUP_DELAY=str(WORKER_STARTUP_S))}
# Enqueues a job every 0.25 s until the stop file appears (at most 180 s), printing each name.
FEEDER = r"""
import json, os, time
new = "%(queue)s/new"
stop, started, n = "%(queue)s/stop-feeder", time.time(), 0
while not os.path.exists(stop) and time.time() - started < 180:
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
            proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", booted.inventory,
                                   os.path.join(REPO, "tests", "lab", "site.yml"), "-e", json.dumps({"lab_apps": apps})],
                                  capture_output=True, text=True, env=ansible_env(), cwd=REPO, timeout=600,
                                  stdin=subprocess.DEVNULL, check=False)
            log = tmp_path_factory.mktemp("wrk") / "site.log"
            log.write_text(proc.stdout + proc.stderr)
            assert proc.returncode == 0, "site.yml with workers failed, see %s" % log
            yield booted
    except LabError as error:
        pytest.fail(str(error), pytrace=False)


def worker_releases(lab, host):
    """{unit: release directory its main process runs in, or its state} of workers and overlaps."""
    found = {}
    for worker in WORKERS + [w + "-next" for w in WORKERS]:
        unit = "%s-worker@%s" % (APP, worker)
        pid = sh(lab, host, "systemctl show -p MainPID --value %s" % unit)
        if pid == "0":
            found[unit] = sh(lab, host, "systemctl is-active %s || true" % unit)
            continue
        found[unit] = sh(lab, host, "cd %s/releases && for d in *; do [ \"$(stat -Lc %%d:%%i /proc/%s/cwd)\" = "
                                    "\"$(stat -c %%d:%%i $d)\" ] && echo $d; done; true" % (ROOT, pid))
    return found


def pids(lab, host):
    return {w: sh(lab, host, "systemctl show -p MainPID --value %s-worker@%s" % (APP, w)) for w in WORKERS}


class Jobs:
    """The feeder on ``host`` while a deploy runs; then every job's result."""

    def __init__(self, lab, host):
        self.lab, self.host, self.names = lab, host, []
        # The workers make the queue's directories (as the app user, who must rename in them).
        sh(lab, host, "for i in $(seq 50); do test -d %s/new && break; sleep 0.2; done; test -d %s/new; "
                      "rm -f %s/stop-feeder" % (QUEUE, QUEUE, QUEUE))
        self.proc = subprocess.Popen(["ssh", "-i", lab.vars["ansible_ssh_private_key_file"],
                                      "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                                      "-o", "BatchMode=yes", "root@" + lab.hosts[host], "python3", "-"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.proc.stdin.write(FEEDER % {"queue": QUEUE})
        self.proc.stdin.close()
        self.other_output = []
        self.reader = threading.Thread(target=self._read)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            (self.names if line.startswith("job-") else self.other_output).append(line.strip())

    def finish(self):
        """Stop feeding, wait for the queue to drain (at most 30 s), return {job: [results]}."""
        sh(self.lab, self.host, "touch %s/stop-feeder" % QUEUE)
        self.proc.wait(timeout=30)
        self.reader.join(timeout=10)
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


def deploy_with_jobs(lab, tmp_path, release, extra=None):
    host = lab.groups["app"][0]
    jobs = Jobs(lab, host)
    time.sleep(2)
    started = time.time()
    result = deploy_runs(lab, tmp_path, [Run("rolling", release, extra_vars=dict(WORKER_VARS, **(extra or {})))])
    ended = time.time()
    time.sleep(2)
    return result, jobs, jobs.finish(), started, ended


def test_workers_move_to_the_new_release_without_a_gap_and_no_job_is_lost_or_run_twice(lab, tmp_path):
    host = lab.groups["app"][0]
    old = current_release(lab, host)
    new = NEXT[old]
    workers = worker_releases(lab, host)
    assert [base_name(workers["%s-worker@%s" % (APP, w)]) for w in WORKERS] == [old] * len(WORKERS), workers
    result, jobs, results, started, ended = deploy_with_jobs(lab, tmp_path, new)
    assert result.rc == 0, result.tail(60)
    check_under_load(result, swapped=[host], app_hosts=[host])
    check_clean(lab, new)
    figures = check_jobs(jobs, results, started, ended, old, new)
    print("jobs", figures)
    workers = worker_releases(lab, host)
    for worker in WORKERS:
        assert base_name(workers["%s-worker@%s" % (APP, worker)]) == new, workers
        assert workers["%s-worker@%s-next" % (APP, worker)] == "inactive", (
            workers, sh(lab, host, "systemctl status --no-pager '%s-worker@*' 2>&1 | tail -40; true" % APP))
    assert sh(lab, host, "ls /run/systemd/system | grep -c worker || true") == "0"


def test_a_release_whose_worker_cannot_start_rolls_the_host_back_and_the_old_workers_never_stop(lab, tmp_path):
    host = lab.groups["app"][0]
    serving = current_release(lab, host)
    before = pids(lab, host)
    result, jobs, results, _started, _ended = deploy_with_jobs(lab, tmp_path, "noworker")
    assert result.rc != 0, result.tail(60)
    failure = role_failures(result.output).get(host, result.tail(40))
    assert "post_start" in failure and "did not stay up" in failure, failure
    check_under_load(result, swapped=[host], app_hosts=[host])
    check_clean(lab, serving)
    assert pids(lab, host) == before
    workers = worker_releases(lab, host)
    assert all(workers["%s-worker@%s-next" % (APP, w)] == "inactive" for w in WORKERS), (
        workers, sh(lab, host, "systemctl status --no-pager '%s-worker@*' 2>&1 | tail -40; true" % APP))
    marks = sh(lab, host, "ls %s/.hitless/bad" % ROOT).split()
    assert [base_name(m) for m in marks] == ["noworker"], marks
    sh(lab, host, "rm -rf %s/.hitless/bad/*" % ROOT)
    figures = check_jobs(jobs, results, 0, 0, serving, serving)
    print("jobs", figures)
