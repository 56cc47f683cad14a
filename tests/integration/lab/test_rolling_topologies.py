"""The rolling deploy on the other shapes of a site, under load.

Two labs, booted side by side for this module only:
- ``itest-lb2``: two HAProxy hosts (lb1, lb2) in front of ONE app host (app1), the hard case
  where the clone is the only other server. Probes and ``show stat`` pollers run against both
  LB hosts.
- ``itest-one`` (``--topology single``): HAProxy on the app host itself, the clone's server
  added over loopback.

Each test deploys the release after whichever serves (NEXT) and asserts against that, so none
depends on another having run or passed.

One failed request fails a test; so does one ``show stat`` sample with fewer UP servers than
app hosts.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _deploy import (NEXT, Run, base_name, check_clean, check_under_load,  # noqa: E402
                     current_release, deploy, deploy_runs, host_state, role_failures, show_stat,
                     task_line)
from _labs import SSH_DOWN, SSH_UP, booted_labs, guest_run  # noqa: E402


@pytest.fixture(scope="module")
def labs():
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (overlay mounts, bridges, systemd-nspawn)")
    with booted_labs(("itest-lb2", "--lb-hosts", "2", "--app-hosts", "1"),
                     ("itest-one", "--topology", "single")) as (lb2, single):
        yield {"lb2": lb2, "single": single}


def check_deployed(lab, result, release, from_release):
    """app1 moved from ``from_release`` to ``release`` through its clone, nothing failed."""
    assert result.rc == 0, result.tail()
    check_under_load(result, swapped=["app1"], app_hosts=["app1"])
    check_clean(lab, release)
    assert result.answered_after_end() == {("app1", release)}, result.answered_after_end()
    record = result.records["app1"]
    assert (record["outcome"], base_name(record["release"]), base_name(record["from_release"])) == (
        "deployed", release, from_release), record
    print(result.summary())


def test_haproxy_on_the_app_host_routes_to_the_clone_over_loopback(labs, tmp_path):
    lab = labs["single"]
    assert lab.groups == {"haproxy": ["app1"], "app": ["app1"]}
    old = current_release(lab, "app1")
    result = deploy(lab, tmp_path, release=NEXT[old])
    check_deployed(lab, result, NEXT[old], old)


def test_one_app_host_behind_two_lb_hosts_the_clone_alone_serves_its_restart(labs, tmp_path):
    lab = labs["lb2"]
    assert lab.groups == {"haproxy": ["lb1", "lb2"], "app": ["app1"]}
    old = current_release(lab, "app1")
    new = NEXT[old]
    result = deploy(lab, tmp_path, release=new)
    # Per LB host: no failed request, one server UP at every sample, the clone seen.
    assert sorted(result.pollers) == sorted(result.probes) == ["lb1", "lb2"]
    check_deployed(lab, result, new, old)
    # While the original restarted, the clone alone answered, with the release it stood in for.
    assert result.versions_from("app1", 8081) == {old}, result.by_instance
    assert set(result.by_version) == {old, new}, result.by_version


def failure_message(result, host):
    return role_failures(result.output).get(host, result.tail(40))


def ssh_down(lab, host):
    proc = guest_run(lab.name, host, SSH_DOWN)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)


def ssh_up(lab, host):
    proc = guest_run(lab.name, host, SSH_UP)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)


def test_an_unreachable_lb_host_stops_the_deploy_in_preflight(labs, tmp_path):
    lab = labs["lb2"]
    old = current_release(lab, "app1")
    before = host_state(lab, "app1")
    ssh_down(lab, "lb2")
    try:
        result = deploy(lab, tmp_path, release=NEXT[old])
    finally:
        ssh_up(lab, "lb2")
    assert result.rc != 0
    message = failure_message(result, "app1")
    assert "at step preflight" in message and "not reachable: lb2: " in message, message
    assert message.endswith("Nothing was changed."), message
    check_under_load(result, swapped=(), app_hosts=["app1"])
    assert host_state(lab, "app1") == before
    check_clean(lab, old)


def test_an_lb_host_lost_during_the_deploy_is_left_for_a_rerun_that_repairs(labs, tmp_path):
    lab = labs["lb2"]
    old = current_release(lab, "app1")
    new = NEXT[old]

    def lose_lb2(proc):
        ssh_down(lab, "lb2")
    try:
        result = deploy_runs(lab, tmp_path, [
            Run(release=new, triggers=[(task_line("Drain the original"), lose_lb2)])])
    finally:
        ssh_up(lab, "lb2")
    assert result.runs[0].fired and result.rc != 0, result.tail()
    message = failure_message(result, "app1")
    assert "lb2 could not be reached" in message, message
    assert "on lb1 the original serves again and the clone left the backend" in message, message
    assert "Left for the next run" in message, message
    # No request failed and app1 kept a server UP on both LB hosts: the clone stayed up for lb2.
    check_under_load(result, swapped=["app1"], app_hosts=["app1"])
    assert show_stat(lab, "lb1")[("demo", "app1")].startswith("UP")
    assert current_release(lab, "app1") == old
    # lb2 is back: a plain re-run repairs (lb2's backend, the clone, the journal, the lock)
    # and deploys.
    again_dir = tmp_path / "again"
    again_dir.mkdir()
    again = deploy(lab, again_dir, release=new)
    assert again.rc == 0, again.tail()
    check_under_load(again, swapped=["app1"], app_hosts=["app1"])
    check_clean(lab, new)
    assert again.records["app1"]["repaired"], again.records["app1"]
