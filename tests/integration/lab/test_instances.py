"""Several instances of one app per host (rolling_ports): the real Node.js app of tests/real_apps
(one process, one thread: Node apps run one instance per core) on ports 8080 and 8082 of each
app host, each with its own clone (8081, 8083) and its own server and clone slot in the backend
(HOST-8080, HOST-8080-clone, HOST-8082, HOST-8082-clone). The lab ``itest-inst`` (lb1, app1,
app2) is booted with ``lab.py up --instances 2``, as ``make lab-up LAB_INSTANCES=2`` does, so
its inventory gives the app hosts ``rolling_ports``.

Every deploy runs under the load probe, and every test checks: no failed request; every answer
from one release, code and libraries alike; UP servers never fewer than the instances of the
fleet (4); each instance's clone in service during its host's swap; who answered; and what is
left: ``current``, exactly the two instances running, from the release (their processes' own
files), no clone, drop-in, journal or lock, every server UP and every slot in MAINT.

- a deploy: check mode, apply, check again and apply again (neither changes anything);
- the controller SIGKILLed between the restarts of a host's two instances (one on each release),
  then a plain re-run: it repairs (forward or back, whichever the host shows) and deploys;
- without clones (rolling_instance_clones false): the instances of a host swap one at a time,
  the other serving; never two servers of a host out, no clone ever;
- a failing hook after the post_start checks: both instances of the host roll back behind their
  clones, nothing is marked bad;
- the second instance failing its restart while the first already runs the new release: both
  go back to the serving release (behind their clones, or one at a time without), and the new
  release is marked bad;
- ``hitless.deploy.status`` shows each instance with the release its process runs, and names
  the instance whose server was left in DRAIN or whose clone was left running, with a fix that
  works as printed;
- another program listening on the second instance's clone port: the deploy is refused naming
  it, before anything changes on any host.
"""
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _deploy import (APP, LOCK_DIR, Run, base_name, current_release,  # noqa: E402
                     deploy_runs, host_state, kill_group, show_stat)
from _labs import LabError, booted_lab  # noqa: E402
import _real_apps as real  # noqa: E402
from test_status import adhoc, status  # noqa: E402

INSTANCES = ((8080, 8081), (8082, 8083))
HOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hooks")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (overlay mounts, bridges, systemd-nspawn)")
    try:
        paths = real.NODE.build()
    except real.BuildError as error:
        pytest.fail("the node releases could not be built: %s" % error, pytrace=False)
    try:
        with booted_lab("itest-inst", "--app-hosts", "2", "--topology", "lb", "--instances", "2") as booted:
            lacking = real.missing_program(booted, real.NODE)
            if lacking:
                pytest.skip("%s has no /usr/bin/node (tests/lab/_rootfs.py PACKAGES)" % ", ".join(lacking))
            proc = real.install(booted, tmp_path_factory.mktemp("install"), real.NODE, real.NODE.v1,
                                paths[real.NODE.v1], ports=[port for port, _clone_port in INSTANCES])
            assert proc.returncode == 0, real.tail(proc.stdout + proc.stderr, 60)
            booted.node_paths = paths
            yield booted
    except LabError as error:
        pytest.fail(str(error), pytrace=False)


def other(lab):
    """The node release that does not serve now: each test deploys it."""
    serving = {current_release(lab, host) for host in lab.groups["app"]}
    assert len(serving) == 1, serving
    return real.NODE.v2 if serving == {real.NODE.v1} else real.NODE.v1


def node_run(lab, release, **kw):
    extra = dict(kw.pop("extra_vars", {}), hitless_release_src=lab.node_paths[release])
    return Run("rolling", extra_vars=extra, **kw)


def version(release):
    return release.split("-")[-1]


def check_under_load(result, hosts, swapped, clones=True):
    """No failed request, one release per answer, capacity never below the fleet's instances,
    and each instance's clone in service (and answering) exactly on the hosts swapped. Without
    ``clones``: no clone ever, and at every sample every host has at most one server out (one
    instance swaps at a time, one host at a time)."""
    assert result.failed == 0, "%d failed of %d requests; first ones: %s" % (
        result.failed, result.requests, result.failures[:5])
    real.check_one_release_per_answer(result)
    for lb, probe in result.probes.items():
        assert probe["requests"] > 0 and probe["sse"]["errors"] == 0, (lb, probe["sse"])
    for lb, poller in result.pollers.items():
        assert poller["errors"] == 0 and len(poller["samples"]) > 20, (lb, poller["errors"])
        floor = len(hosts) * len(INSTANCES) - (0 if clones else 1)
        assert poller["min_up"] is not None and poller["min_up"] >= floor, (
            "%s: %s UP servers at the worst moment, %d instances" % (
                lb, poller["min_up"], len(hosts) * len(INSTANCES)))
        for sample in poller["samples"] if not clones else ():
            for host in hosts:
                up = [port for port, _clone_port in INSTANCES if sample[2].get("%s-%d" % (host, port), "").startswith("UP")]
                assert len(up) >= len(INSTANCES) - 1, (lb, host, sample)
        for host in hosts:
            for port, _clone_port in INSTANCES:
                clone = "%s-%d-clone" % (host, port)
                seen = any(sample[2].get(clone, "").startswith("UP") for sample in poller["samples"])
                assert seen == (clones and host in swapped), (lb, clone, poller["servers_seen"])
    for host in hosts:
        for _port, clone_port in INSTANCES:
            answered = "%s:%d" % (host, clone_port) in result.by_instance
            assert answered == (clones and host in swapped), (host, clone_port, result.by_instance)
    # Nothing but the two instances of each host and their clones answered.
    expected = {"%s:%d" % (host, port) for host in hosts for pair in INSTANCES for port in pair}
    assert set(result.by_instance) <= expected, result.by_instance


STATE = ("echo current=$(readlink /srv/demo/current); "
         "echo journal=$(test -e /srv/demo/.hitless/journal.json && echo open || echo closed); "
         "echo bad=$(ls -A /srv/demo/.hitless/bad 2>/dev/null); "
         "echo drop_ins=$(ls -d /run/systemd/system/demo@*.service.d 2>/dev/null); "
         "echo running=$(systemctl list-units 'demo@*' --all --plain --no-legend "
         "| awk '$3 != \"inactive\" {print $1}' | sort)")


def check_left(lab, release, bad="", hosts_bad=()):
    """What a finished deploy leaves: both instances on ``release`` and nothing else (``bad``:
    the bad marks of ``hosts_bad``)."""
    for host in lab.groups["app"]:
        state = dict(line.split("=", 1) for line in lab.ssh(host, STATE).stdout.splitlines())
        assert base_name(os.path.basename(state["current"])) == release, (host, state)
        assert (state["journal"], state["drop_ins"], state["bad"]) == (
            "closed", "", bad if host in hosts_bad else ""), (host, state)
        assert state["running"].split() == ["demo@%d.service" % port for port, _clone_port in INSTANCES], (host, state)
        for port, _clone_port in INSTANCES:
            real.check_processes(lab, host, real.NODE, release, port=port)
    for lb in lab.groups["haproxy"]:
        servers = show_stat(lab, lb)
        for host in lab.groups["app"]:
            for port, _clone_port in INSTANCES:
                assert servers[(APP, "%s-%d" % (host, port))].startswith("UP"), (lb, servers)
                assert servers[(APP, "%s-%d-clone" % (host, port))] == "MAINT", (lb, servers)
        assert lab.ssh(lb, "test -e %s/%s.json" % (LOCK_DIR, APP)).returncode != 0, lb


def answered_after(result, release):
    assert {v for _host, v in result.answered_after_end()} == {version(release)}, result.answered_after_end()


def changed(run):
    return {host: int(m.group(1)) for host, m in
            ((h, re.search(r"^%s\s+:.*changed=(\d+)" % h, run.output, re.M)) for h in ("app1", "app2")) if m}


# The dry run says how each mode swaps; apply, then check and apply again change nothing.
PLANS = {True: "clones on 8081, 8083", False: "instances 8080, 8082 one at a time without clones"}


@pytest.mark.parametrize("clones", [True, False], ids=["behind_clones", "one_at_a_time"])
def test_every_instance_swaps_behind_its_own_clone_or_one_at_a_time(lab, tmp_path, clones):
    hosts = lab.groups["app"]
    serving, target = current_release(lab, hosts[0]), other(lab)
    mode = {"rolling_instance_clones": clones}
    runs = [node_run(lab, target, extra_vars=mode, args=["--check"]), node_run(lab, target, extra_vars=mode),
            node_run(lab, target, extra_vars=mode, args=["--check"]), node_run(lab, target, extra_vars=mode)]
    result = deploy_runs(lab, tmp_path, runs)
    assert [run.rc for run in runs] == [0, 0, 0, 0], result.tail(60)
    print("\n%s -> %s, 2 instances per host, %s: %s" % (
        serving, target, "behind clones" if clones else "one at a time", result.summary()))
    check_under_load(result, hosts, swapped=hosts, clones=clones)
    answered_after(result, target)
    assert PLANS[clones] in runs[0].output, runs[0].output[-3000:]
    assert all(changed(runs[0]).get(host) for host in hosts), changed(runs[0])
    assert changed(runs[2]) == {"app1": 0, "app2": 0}, changed(runs[2])
    assert changed(runs[3]) == {"app1": 0, "app2": 0}, changed(runs[3])
    # Both instances of a host served from the new release once it was back.
    for host in hosts:
        for port, _clone_port in INSTANCES:
            assert version(target) in result.versions_from(host, port), (host, port)
    check_left(lab, target)


def test_controller_killed_between_two_restarts_converges_on_a_plain_rerun(lab, tmp_path):
    hosts = lab.groups["app"]
    target = other(lab)
    # The first instance of the first host restarted on the new release; the second not yet.
    killed = node_run(lab, target, triggers=[(r"^changed: \[app\d\] => \(item=demo@8080\)", kill_group)])
    rerun = node_run(lab, target)
    result = deploy_runs(lab, tmp_path, [killed, rerun])
    assert killed.fired and killed.rc != 0, killed.output[-3000:]
    assert rerun.rc == 0, result.tail(60)
    repaired = {h: r.get("repaired", "") for h, r in result.records.items() if r.get("repaired")}
    print("\nkilled between two restarts, re-run: %s; repaired %s" % (result.summary(), repaired))
    assert len(repaired) == 1 and re.search(r": (forward|backward)$", list(repaired.values())[0]), repaired
    check_under_load(result, hosts, swapped=hosts)
    answered_after(result, target)
    check_left(lab, target)


def test_failure_after_post_start_rolls_back_both_instances(lab, tmp_path):
    hosts = lab.groups["app"]
    serving = current_release(lab, hosts[0])
    target = other(lab)
    run = node_run(lab, target, extra_vars={"rolling_hooks": {"after_post_start": os.path.join(HOOKS, "fail.yml")}})
    result = deploy_runs(lab, tmp_path, [run])
    assert run.rc != 0, result.tail(60)
    print("\nhook failing after post_start: %s" % result.summary())
    assert "Rolled back: release %s" % serving in run.output, result.tail(60)
    # The first host swapped and rolled back; the rollout stopped before the second.
    check_under_load(result, hosts, swapped=hosts[:1])
    answered_after(result, serving)
    check_left(lab, serving)


# On app1, demo@8082 fails its next start once, then starts as ever ("+": outside the unit's
# sandbox, which cannot write /run): the deploy's restart of the second instance fails after
# the first already runs the new release.
FAIL_ONCE = ("mkdir -p /etc/systemd/system/demo@8082.service.d && rm -f /run/hitless-test-failed && "
             "printf '[Service]\\nExecStartPre=+/bin/sh -c \"test -e /run/hitless-test-failed || "
             "{ touch /run/hitless-test-failed; exit 1; }\"\\n' "
             "> /etc/systemd/system/demo@8082.service.d/fail-once.conf && systemctl daemon-reload")
NO_FAIL_ONCE = "rm -rf /etc/systemd/system/demo@8082.service.d /run/hitless-test-failed && systemctl daemon-reload"


@pytest.mark.parametrize("clones", [True, False], ids=["clones", "one_at_a_time"])
def test_second_instance_failing_to_restart_rolls_the_first_back_too(lab, tmp_path, clones):
    hosts = lab.groups["app"]
    serving = current_release(lab, hosts[0])
    target = other(lab)
    lab.ssh(hosts[0], FAIL_ONCE).check_returncode()
    try:
        run = node_run(lab, target, extra_vars={"rolling_instance_clones": clones})
        result = deploy_runs(lab, tmp_path, [run])
        failed_once = lab.ssh(hosts[0], "test -e /run/hitless-test-failed").returncode == 0
    finally:
        lab.ssh(hosts[0], NO_FAIL_ONCE)
    assert run.rc != 0 and failed_once, result.tail(60)
    print("\nsecond instance failing its restart (%s): %s" % ("clones" if clones else "one at a time", result.summary()))
    message = real.tail(run.output, 400)
    task = "Restart the original on release" if clones else "Restart and check the instance on release"
    assert "at step upgrade (%s" % task in message, message
    assert "Rolled back: release %s" % serving in message, message
    check_under_load(result, hosts, swapped=hosts[:1], clones=clones)
    answered_after(result, serving)
    # The new release could not start: marked bad, as a release whose only instance cannot.
    bad = lab.ssh(hosts[0], "ls -A /srv/demo/.hitless/bad").stdout.split()
    assert [base_name(name) for name in bad] == [target], bad
    check_left(lab, serving, bad=" ".join(bad), hosts_bad=hosts[:1])
    lab.ssh(hosts[0], "rm -f /srv/demo/.hitless/bad/*").check_returncode()


def test_a_foreign_listener_on_a_clone_port_refuses_the_deploy(lab, tmp_path):
    hosts = lab.groups["app"]
    serving = current_release(lab, hosts[0])
    before = {host: host_state(lab, host) for host in hosts}
    # Bounded: it ends by itself if the test dies before it kills it.
    pid = lab.ssh(hosts[1], "nohup timeout 300 python3 -m http.server 8083 >/dev/null 2>&1 & echo $!").stdout.strip()
    try:
        run = node_run(lab, other(lab))
        result = deploy_runs(lab, tmp_path, [run])
    finally:
        lab.ssh(hosts[1], "kill %s" % pid)
    assert run.rc != 0, result.tail(60)
    assert re.search(r"nothing may listen on the clone port\s+8083 \(", run.output), result.tail(60)
    check_under_load(result, hosts, swapped=[])
    assert {host: host_state(lab, host) for host in hosts} == before
    check_left(lab, serving)


def test_the_status_shows_each_instance_and_names_the_one_left_behind(lab):
    hosts, lb = lab.groups["app"], lab.groups["haproxy"][0]
    serving_dir = os.path.basename(lab.ssh(hosts[0], "readlink /srv/demo/current").stdout.strip())
    quiet = status(lab, "--check")
    assert quiet.rc == 0 and quiet.published["consistent"], quiet.flags
    for host in hosts:
        rows = quiet.row(host)["instances"]
        assert [(i["port"], i["state"], i["release"], i["server"]) for i in rows] == [
            (port, "active", serving_dir, "%s-%d" % (host, port)) for port, _clone_port in INSTANCES], rows
    # The second instance of app2 left drained, its clone left running, as a killed hand would.
    adhoc(lab, lb, "hitless.deploy.haproxy_server", "backend=demo server=%s-8082 state=drain wait_timeout=5" % hosts[1])
    lab.ssh(hosts[1], "systemctl start demo@8083").check_returncode()
    try:
        left = status(lab)
        assert left.rc == 0 and left.flags == sorted([
            "clone demo@8083.service of demo@8082 is active (release %s) with no deploy under way" % serving_dir,
            "server demo/%s-8082 of demo@8082 is in DRAIN with nobody deploying" % hosts[1]]), left.flags
        for fix in re.findall(r"Fix: (ansible \S+ -m hitless\.deploy\.haproxy_server -a '[^']+')", left.output):
            argv = fix.split(" ", 5)
            adhoc(lab, argv[1], argv[3], argv[5].strip("'"))
        assert "systemctl stop demo@8083.service" in left.output, left.output[-3000:]
    finally:
        lab.ssh(hosts[1], "systemctl stop demo@8083")
        adhoc(lab, lb, "hitless.deploy.haproxy_server", "backend=demo server=%s-8082 state=ready" % hosts[1])
    fixed = status(lab)
    assert fixed.rc == 0 and fixed.published["consistent"], fixed.flags
