"""Faults during a rolling deploy, on a lab of their own (lb1 in front of app1 and app2), under
the load probe and the 50 ms ``show stat`` poller. Each test fails on one failed request, on a
sample with fewer UP servers than app hosts, and checks the state left behind (units, links,
HAProxy servers, journal, lock) and who answered.

- the controller SIGKILLed (its whole process group) at each step boundary of app1's sequence,
  then a plain re-run: it repairs and converges to the new release;
- a stray listener on the clone port (answering 200, answering 404): refused in preflight,
  nothing staged on the other host either; a host that cannot stage: no host swaps;
- two deploys at once: one refused naming the holder, the other completes;
- a config-only redeploy: a new release directory, the serving one unchanged, the clone served
  the old configuration; a breaking configuration: rolled back, serving release unchanged;
- `systemctl reload haproxy` in each LB window: the deploy completes;
- `systemctl restart haproxy` while the original is drained: it stays drained, and the only
  failed requests are the restart's own, as with a restart and no deploy;
- a failing hook after route back and after cleanup: no restart of a serving instance, no mark;
  one after upgrade or before route back: rolled back, no mark, a re-run deploys the release.

The tests run in this order and each starts from what the previous one left (FROM below).
"""
import json
import os
import re
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _deploy import (NEXT, APP, CLONE_PORT, FAST, PORT, ROOT, Run, base_name,  # noqa: E402
                     check_clean, check_under_load, current_dir, current_release, deploy,
                     deploy_runs, host_state, kill_group, role_failures, serving_release, sh,
                     task_line)
from _labs import BootedLab, LabError, booted_lab, ensure_releases  # noqa: E402

HOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hooks")
# app1's sequence, each task at whose start the controller dies.
# Each app-host move is one call (app_move): the journal's first write, the clone's start and
# its checks are one task, so are the link and the restart, and the removal and the journal's
# close.
KILL_AT = [
    "Start the clone on the serving release",
    "Put the clone in service after fresh passing checks",
    "Drain the original",
    "Restart the original on release",
    "Run post_start checks on the original",
    "Put the original back in service after fresh passing checks",
    "Take the clone out of backend",
    "Remove the clone instance on port",
]


@pytest.fixture(scope="module")
def flab():
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (overlay mounts, bridges, systemd-nspawn)")
    if os.environ.get("HITLESS_FAULT_LAB"):
        # A lab already up (make lab-up): quicker to iterate on; it is left running. Only
        # booted_lab builds the releases otherwise.
        ensure_releases()
        yield BootedLab("reused", os.environ["HITLESS_FAULT_LAB"], None)
        return
    try:
        with booted_lab("itest-fault", "--app-hosts", "2", "--topology", "lb") as booted:
            yield booted
    except LabError as error:
        pytest.fail(str(error), pytrace=False)


def on_app1(name):
    """Trigger regex for the task ``name`` while app1 runs it (the first batch)."""
    return task_line(name)


def check_converged(flab, result, release, old):
    """``old``: what the serving release answers as (its name, or a set of versions when its
    configuration sets APP_VERSION)."""
    apps = flab.groups["app"]
    assert result.rc == 0, result.tail(60)
    check_under_load(result, swapped=apps, app_hosts=apps)
    check_clean(flab, release)
    olds = set([old] if isinstance(old, str) else old)
    assert set(result.by_version) <= olds | {release}, result.by_version
    assert result.answered_after_end() == {(h, release) for h in apps}, result.answered_after_end()


@pytest.mark.parametrize("task", KILL_AT)
def test_controller_killed_then_a_plain_rerun_converges(flab, tmp_path, task):
    old = serving_release(flab)
    new = NEXT[old]
    result = deploy_runs(flab, tmp_path, [
        Run(release=new, triggers=[(on_app1(task), kill_group)]),
        Run(release=new),
    ])
    killed, rerun = result.runs
    assert killed.fired, "the kill point %r was never reached:\n%s" % (task, killed.output[-3000:])
    assert killed.rc == -9, (killed.rc, killed.output[-2000:])
    check_converged(flab, result, new, old)
    record = result.records["app1"]
    assert record["outcome"] in ("deployed", "unchanged"), record
    if record["outcome"] == "unchanged":
        # Finished forward by the repair: only after the original passed its checks there.
        # The kill lands as the task's line is read; the last move (the clone removed, the
        # journal closed) may have finished by then, and a closed journal leaves nothing to
        # repair.
        closed_in_time = task == "Remove the clone instance on port" and not record["repaired"]
        assert record["repaired"].endswith("forward") or closed_in_time, record
    print(task, result.summary())


def test_tags_repair_only_repairs(flab, tmp_path):
    old = serving_release(flab)
    new = NEXT[old]
    result = deploy_runs(flab, tmp_path, [
        Run(release=new, triggers=[(on_app1("Drain the original"), kill_group)]),
        Run(release=new, args=["--tags", "repair"]),
    ])
    assert result.runs[0].rc == -9 and result.rc == 0, result.tail(60)
    apps = flab.groups["app"]
    # Interrupted before the original was touched (current had moved): back to the release
    # that served; nothing deployed.
    check_under_load(result, swapped=["app1"], app_hosts=apps)
    check_clean(flab, old)
    assert result.records["app1"]["outcome"] == "repaired", result.records["app1"]
    assert result.records["app1"]["repaired"].endswith("backward"), result.records["app1"]
    assert set(result.by_version) == {old}, result.by_version


def test_a_repair_acts_on_what_the_journal_recorded_not_on_this_runs_ports(flab, tmp_path):
    """Killed while app1's clone serves on 8081; the re-run has another clone port (8083). The
    repair still undoes what the journal says was touched (demo@8081, app1-clone at 8081), then
    the deploy clones on 8083. Repairing on this run's ports would leave demo@8081 running."""
    old = serving_release(flab)
    new = NEXT[old]
    apps = flab.groups["app"]
    result = deploy_runs(flab, tmp_path, [
        Run(release=new, triggers=[(on_app1("Drain the original"), kill_group)]),
        Run(release=new, extra_vars={"rolling_clone_port": 8083}),
    ])
    killed, rerun = result.runs
    assert killed.fired and killed.rc == -9, killed.output[-2000:]
    assert rerun.rc == 0, result.tail(60)
    check_under_load(result, swapped=apps, app_hosts=apps, clone_ports=(CLONE_PORT, 8083))
    record = result.records["app1"]
    assert record["repaired"].endswith("backward"), record
    assert {"app1:8081", "app1:8083", "app2:8083"} <= set(result.by_instance), result.by_instance
    assert "app2:8081" not in result.by_instance, result.by_instance
    # Nothing left on either clone port (check_clean: only demo@8080 runs, no drop-in, journal
    # closed, lock free, clone slots in maint).
    check_clean(flab, new)
    for host in apps:
        assert sh(flab, host, "systemctl is-active demo@8083 || true") != "active", host
    assert result.answered_after_end() == {(h, new) for h in apps}


def stray(flab, status):
    """A foreign HTTP server on the clone port of app1, answering ``status`` on /health."""
    root = "/run/stray-%d" % status
    body = "mkdir -p %s && %s" % (root, "touch %s/health" % root if status == 200 else "true")
    sh(flab, "app1", body + " && systemd-run --unit stray-%d --working-directory %s "
                            "python3 -m http.server %d" % (status, root, CLONE_PORT))
    sh(flab, "app1", "for i in $(seq 50); do ss -ltn | grep -q ':%d ' && exit 0; sleep 0.1; done; "
                     "exit 1" % CLONE_PORT)


@pytest.mark.parametrize("status", [200, 404])
def test_stray_listener_on_the_clone_port_is_refused_in_preflight(flab, tmp_path, status):
    old = serving_release(flab)
    apps = flab.groups["app"]
    stray(flab, status)
    try:
        before = {h: host_state(flab, h) for h in apps}
        result = deploy(flab, tmp_path, release=NEXT[old])
        assert result.rc != 0, result.tail()
        message = role_failures(result.output)["app1"]
        assert "at step preflight" in message, message
        assert re.search(r"nothing may listen on the clone port %d \(pid \d+ \(\S*python3 -m "
                         r"http.server %d, unit stray-%d.service\)\)" % (CLONE_PORT, CLONE_PORT, status),
                         message), message
        assert message.endswith("Nothing was changed."), message
        # app2 passed its own preflight, but nothing is staged anywhere while app1 is not fit.
        other = role_failures(result.output)["app2"]
        assert "Preflight failed on app1, so nothing is staged anywhere" in other, other
        assert result.seconds < 30, result.seconds
        check_under_load(result, swapped=(), app_hosts=apps)
        assert {h: host_state(flab, h) for h in apps} == before
    finally:
        flab.ssh("app1", "systemctl stop stray-%d" % status)
    check_clean(flab, old)


def test_a_host_that_cannot_stage_stops_the_rollout_before_any_swap(flab, tmp_path):
    old = serving_release(flab)
    new = NEXT[old]
    apps = flab.groups["app"]
    releases = "%s/releases" % ROOT
    before = {h: host_state(flab, h) for h in apps}
    # app2's release directory read-only: it passes preflight, and its prepare cannot write.
    sh(flab, "app2", "mount --bind %s %s && mount -o remount,ro,bind %s" % (releases, releases, releases))
    # A configuration never deployed before: its release directory (NAME+DIGEST) must be written,
    # where the plain release may still be on the host from an earlier deploy.
    fresh = {"rolling_environment": dict(FAST["rolling_environment"], STAGE_TEST=tmp_path.name)}
    try:
        result = deploy(flab, tmp_path, release=new, extra_vars=fresh)
    finally:
        # Lazy: the mount also propagated into the app units' own mount namespaces.
        sh(flab, "app2", "umount -l %s" % releases)
    assert result.rc != 0, result.tail()
    messages = role_failures(result.output)
    assert "at step prepare" in messages["app2"], messages
    assert "Staging failed on app2, so no host swaps" in messages["app1"], messages
    assert messages["app1"].endswith("Nothing that serves was changed."), messages
    # No host swapped: nobody but the originals answered, the lock is free, app2 unchanged.
    check_under_load(result, swapped=(), app_hosts=apps)
    check_clean(flab, old)
    assert host_state(flab, "app2") == before["app2"]
    assert set(result.by_version) == {old}, result.by_version
    again = deploy(flab, mkdir(tmp_path / "again"), release=new, extra_vars=fresh)
    check_converged(flab, again, new, old)


def test_two_deploys_at_once_one_refused_naming_the_holder(flab, tmp_path):
    old = serving_release(flab)
    first, second = NEXT[old], NEXT[NEXT[old]]
    result = deploy_runs(flab, tmp_path, [Run(release=first, wait=False), Run(release=second)])
    runs = result.runs
    winners = [r for r in runs if r.rc == 0]
    assert len(winners) == 1, [(r.rc, r.output[-1500:]) for r in runs]
    loser = [r for r in runs if r.rc != 0][0]
    message = role_failures(loser.output)["app1"]
    assert "at step preflight" in message and "locked by another rollout: deploy " in message, message
    assert "release %s" % winners[0].release in message, message
    assert message.endswith("Nothing was changed."), message
    apps = flab.groups["app"]
    check_under_load(result, swapped=apps, app_hosts=apps)
    check_clean(flab, winners[0].release)


def tree_digest(flab, host, release_dir):
    return sh(flab, host, "cd %s/releases/%s && find . -type f -o -type l | sort | "
                          "xargs sha256sum | sha256sum" % (ROOT, release_dir))


def test_config_only_redeploy_makes_a_new_release_and_keeps_the_serving_one(flab, tmp_path):
    release = serving_release(flab)
    apps = flab.groups["app"]
    dirs = {h: current_dir(flab, h) for h in apps}
    digests = {h: tree_digest(flab, h, dirs[h]) for h in apps}
    env = dict(FAST["rolling_environment"], APP_VERSION=release + "-cfg")
    result = deploy(flab, tmp_path, extra_vars={"hitless_release_name": release,
                                                "rolling_environment": env})
    assert result.rc == 0, result.tail(60)
    check_under_load(result, swapped=apps, app_hosts=apps)
    for host in apps:
        assert current_dir(flab, host) != dirs[host], "config change did not make a new release"
        assert base_name(current_dir(flab, host)) == release
        assert tree_digest(flab, host, dirs[host]) == digests[host], "%s: serving release changed" % host
        # The clone ran the old configuration: it was a real fallback.
        assert result.versions_from(host, CLONE_PORT) == {release}, result.by_instance
    assert result.answered_after_end() == {(h, release + "-cfg") for h in apps}


def test_breaking_config_is_rolled_back_and_the_serving_release_unchanged(flab, tmp_path):
    apps = flab.groups["app"]
    dirs = {h: current_dir(flab, h) for h in apps}
    digests = {h: tree_digest(flab, h, dirs[h]) for h in apps}
    release = base_name(dirs["app1"])
    env = dict(FAST["rolling_environment"], STARTUP_DELAY="not-a-number")
    result = deploy(flab, tmp_path, extra_vars={"hitless_release_name": release,
                                                "rolling_environment": env})
    assert result.rc != 0
    message = role_failures(result.output)["app1"]
    assert "at step upgrade" in message and "Rolled back" in message, message
    check_under_load(result, swapped=["app1"], app_hosts=apps)
    for host in apps:
        assert current_dir(flab, host) == dirs[host]
        assert tree_digest(flab, host, dirs[host]) == digests[host]
    # The mark names this release with this configuration only.
    marks = sh(flab, "app1", "ls %s/.hitless/bad" % ROOT).split()
    assert len(marks) == 1 and marks[0].startswith(release + "+") and marks[0] != dirs["app1"], marks
    # The same code with its good configuration is not refused; a plain deploy converges.
    result = deploy(flab, mkdir(tmp_path / "again"), release=NEXT[release])
    check_converged(flab, result, NEXT[release], {release, release + "-cfg"})


def reload_haproxy(flab):
    def action(proc):
        threading.Thread(target=flab.ssh, args=("lb1", "systemctl reload haproxy")).start()
    return action


@pytest.mark.parametrize("window", [
    "Drain the original",                   # the clone in service, the original still too
    "Restart the original on release",      # the original drained
    "Take the clone out of backend",        # the original back
])
def test_haproxy_reload_during_the_deploy(flab, tmp_path, window):
    old = serving_release(flab)
    new = NEXT[old]
    result = deploy_runs(flab, tmp_path, [
        Run(release=new, triggers=[(on_app1(window), reload_haproxy(flab))])])
    assert result.runs[0].fired, result.tail()
    check_converged(flab, result, new, old)


class HAProxyRestart:
    """A trigger action: `systemctl restart haproxy` on lb1 (what a package upgrade runs),
    timed, so the failures and samples it explains can be told from those it does not."""

    def __init__(self, flab):
        self.flab = flab
        self.fired = self.done = None
        self.thread = None

    def __call__(self, proc):
        self.fired = time.time()
        self.thread = threading.Thread(target=self._restart)
        self.thread.start()

    def _restart(self):
        proc = self.flab.ssh("lb1", "systemctl restart haproxy")
        assert proc.returncode == 0, proc.stderr
        self.done = time.time()

    def window(self, slack=3.0):
        """Epoch bounds within which a restart may fail requests: from the command until the
        new process has taken its listeners and run its first checks."""
        self.thread.join(60)
        return self.fired - 0.5, self.done + slack


def outside(result, window):
    """Failed requests of ``result`` that were not in flight within the epoch ``window`` (a
    restart fails what it finds in flight, a slow request sent long before it included)."""
    return [f for lb, probe in result.probes.items() for f in probe["failures"]
            if probe["t0_epoch"] + (f["end"] or f["start"]) < window[0]
            or probe["t0_epoch"] + f["start"] > window[1]]


def samples(result, lb, since, until):
    poller = result.pollers[lb]
    return [s for s in poller["samples"] if since <= poller["t0_epoch"] + s[0] <= until]


def test_haproxy_restart_keeps_the_drain_and_fails_only_what_a_restart_alone_fails(flab, tmp_path):
    old = serving_release(flab)
    new = NEXT[old]
    apps = flab.groups["app"]
    # The restart alone: a deploy that has nothing to do, the same probes, a restart in it.
    alone = HAProxyRestart(flab)
    baseline = deploy_runs(flab, mkdir(tmp_path / "alone"), [
        Run(release=old, triggers=[(on_app1("Take the deploy lock"), alone)])])
    assert baseline.rc == 0 and baseline.runs[0].fired, baseline.tail()
    assert outside(baseline, alone.window()) == [], baseline.failures
    # The same restart while the original is drained and restarting: it must come back drained
    # (the state saved on stop), not as the last reload left it (in service).
    during = HAProxyRestart(flab)
    result = deploy_runs(flab, mkdir(tmp_path / "during"), [
        Run(release=new, triggers=[(on_app1("Restart the original on release"), during)])])
    assert result.rc == 0 and result.runs[0].fired, result.tail(60)
    window = during.window()
    assert outside(result, window) == [], result.failures
    marks = {m["step"]: m["at"] for m in result.records["app1"]["marks"]}
    held = samples(result, "lb1", during.done, marks["route_back"])
    assert held, "no show stat sample between the restart and route back"
    # As before the restart: the clone in service, the original out of it.
    assert all(s[2].get("app1-clone", "").startswith("UP") and not s[2].get("app1", "").startswith("UP")
               for s in held), held
    assert all(s[1] >= len(apps) for s in samples(result, "lb1", window[1], result.ended)), \
        result.pollers["lb1"]["samples"]
    check_clean(flab, new)
    assert result.answered_after_end() == {(h, new) for h in apps}
    with open(str(tmp_path / "restart.json"), "w") as handle:
        json.dump({"restart_alone": {"requests": baseline.requests, "failed": baseline.failed},
                   "restart_during_deploy": {"requests": result.requests, "failed": result.failed,
                                             "drained_samples": len(held)}}, handle)
    print("haproxy restart alone: %d of %d failed; during the deploy: %d of %d failed"
          % (baseline.failed, baseline.requests, result.failed, result.requests))


def restarts_since(flab, host, epoch):
    return int(sh(flab, host, "journalctl -u %s@%d --since @%d -o cat | grep -c '^Stopping' || true"
                  % (APP, PORT, int(epoch))))


def deploy_with_failing_hook(flab, tmp_path, hook):
    """Deploy the next release with ``hook`` failing; app1's clone stood in, app2 was not
    reached: capacity held, nothing failed. Returns the run, both releases and app1's message."""
    old = serving_release(flab)
    new = NEXT[old]
    result = deploy(flab, tmp_path, release=new,
                    extra_vars={"rolling_hooks": {hook: os.path.join(HOOKS, "fail.yml")}})
    assert result.rc != 0
    check_under_load(result, swapped=["app1"], app_hosts=flab.groups["app"])
    assert set(result.by_version) <= {old, new}, result.by_version
    message = role_failures(result.output)["app1"]
    assert "this hook fails on purpose" in message, message
    return result, old, new, message


@pytest.mark.parametrize("hook", ["after_route_back", "after_cleanup"])
def test_failing_hook_after_route_back_rolls_nothing_back(flab, tmp_path, hook):
    result, old, new, message = deploy_with_failing_hook(flab, tmp_path, hook)
    apps = flab.groups["app"]
    assert "nothing was rolled back or marked bad" in message, message
    # Only the upgrade restarted the original; after that it served and was left alone.
    assert restarts_since(flab, "app1", result.started) == 1
    assert current_release(flab, "app1") == new
    assert flab.ssh("app1", "test -e %s/.hitless/bad/%s" % (ROOT, current_dir(flab, "app1"))).returncode != 0
    # The rollout stopped after app1; a plain re-run brings app2 along.
    again = deploy(flab, mkdir(tmp_path / "again"), release=new)
    assert again.rc == 0, again.tail()
    check_under_load(again, swapped=["app2"], app_hosts=apps)
    check_clean(flab, new)
    assert again.answered_after_end() == {(h, new) for h in apps}, again.answered_after_end()


# A hook runs while the step is still the phase it closes: these fail before traffic is back on
# the upgraded original, so they roll back; a hook is never the release's fault, so no mark.
@pytest.mark.parametrize("hook,step", [("after_upgrade", "upgrade"),
                                       ("before_route_back", "post_start")])
def test_failing_hook_before_route_back_rolls_back_and_marks_nothing(flab, tmp_path, hook, step):
    # Earlier tests of this lab leave marks of their own (a breaking configuration): only a new
    # mark would be this deploy's.
    marks_before = bad_marks(flab, "app1")
    old, new, message = deploy_with_failing_hook(flab, tmp_path, hook)[1:]
    assert "at step %s" % step in message, message
    assert "Rolled back" in message and "marked bad" not in message, message
    assert serving_release(flab) == old
    assert bad_marks(flab, "app1") == marks_before
    # Not marked, the same release deploys on a plain re-run.
    again = deploy(flab, mkdir(tmp_path / "again"), release=new)
    check_converged(flab, again, new, old)


def bad_marks(flab, host):
    return sorted(sh(flab, host, "ls -A %s/.hitless/bad 2>/dev/null || true" % ROOT).split())


def mkdir(path):
    path.mkdir()
    return path
