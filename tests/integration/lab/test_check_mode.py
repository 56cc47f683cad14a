"""A dry run (``--check --diff``) on the session lab, under load: it says what it would do and
changes nothing.

Preflight runs for real in check mode (it only reads), so a dry run refuses what a real run
would refuse, names the cause, and exits 0 only when a real run could go. These tests leave the
lab as they found it (they run before test_rolling_lb, which expects v1 everywhere).
"""
import copy
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _deploy import (CLONE_PORT, PORT, Run, base_name, check_clean,  # noqa: E402
                     check_under_load, current_dir, deploy_runs, host_state, lb_hosts,
                     role_failures, sh, show_stat)

DRY_RUN = ["--check", "--diff"]


def lab_state(lab):
    """Everything a deploy may change, on every host, to compare before and after."""
    hosts = {host: host_state(lab, host) for host in lab.groups["app"]}
    servers = {lb: show_stat(lab, lb) for lb in lb_hosts(lab)}
    return hosts, servers


def other_release(lab, host):
    return "v1" if base_name(current_dir(lab, host)) == "v2" else "v2"


def test_check_mode_says_what_it_would_do_and_changes_nothing(lab, tmp_path):
    app_hosts = lab.groups["app"]
    serving = {host: current_dir(lab, host) for host in app_hosts}
    target = other_release(lab, app_hosts[0])
    before = lab_state(lab)

    result = deploy_runs(lab, tmp_path, [Run("rolling", target, args=DRY_RUN)])

    assert result.rc == 0, result.tail(60)
    through = ", ".join(lb_hosts(lab))
    for host in app_hosts:
        said = re.search(r"would deploy (%s\+[0-9a-f]+) on %s, serving %s, clone on %d, "
                         r"through %s" % (re.escape(target), host, re.escape(serving[host]),
                                          CLONE_PORT, re.escape(through)), result.output)
        assert said, (host, result.tail(60))
        record = result.records[host]
        assert (record["outcome"], record["release"]) == ("would_deploy", said.group(1)), record
        assert result.recap[host]["changed"] > 0 and result.recap[host]["failed"] == 0, (
            result.recap)
    # --diff shows the release the upgrade would write and the links it would switch.
    assert re.search(r"^\+\s+\"?current\"?: \"?%s\+" % re.escape(target), result.output,
                     re.M), result.tail(80)
    assert re.search(r"^-\s+\"?current\"?: \"?%s\"?" % re.escape(serving[app_hosts[0]]),
                     result.output, re.M), result.tail(80)

    assert lab_state(lab) == before
    check_clean(lab, base_name(serving[app_hosts[0]]))
    check_under_load(result, swapped=[], app_hosts=app_hosts)
    # Only the originals answered, each with the release it served before.
    for host in app_hosts:
        assert result.versions_from(host, PORT) == {base_name(serving[host])}, (
            host, result.by_version)


def test_check_mode_of_the_serving_release_would_leave_every_host(lab, tmp_path):
    app_hosts = lab.groups["app"]
    serving = current_dir(lab, app_hosts[0])
    before = lab_state(lab)

    # The release directory already there, with the configuration it was made with (none).
    result = deploy_runs(lab, tmp_path, [Run("rolling", args=DRY_RUN, extra_vars={
        "hitless_release_name": serving, "rolling_environment": {}})])

    assert result.rc == 0, result.tail(60)
    for host in app_hosts:
        assert "would leave %s as it is: it serves %s already" % (host, serving) in (
            result.output), result.tail(60)
        assert result.records[host]["outcome"] == "unchanged", result.records[host]
        assert result.recap[host]["changed"] == 0, result.recap
    assert lab_state(lab) == before
    check_under_load(result, swapped=[], app_hosts=app_hosts)


def test_an_inventory_without_a_haproxy_group_works_when_the_hosts_are_given(lab, tmp_path):
    """The role's argument spec renders its defaults while validating: the default of
    rolling_haproxy_hosts must not need a group called haproxy."""
    with open(lab.inventory) as handle:
        text = handle.read()
    assert "\n    haproxy:\n" in text
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(text.replace("\n    haproxy:\n", "\n    balancers:\n"))
    renamed = copy.copy(lab)
    renamed.inventory = str(inventory)
    target = other_release(lab, lab.groups["app"][0])

    result = deploy_runs(renamed, tmp_path, [Run(
        "rolling", target, args=DRY_RUN,
        extra_vars={"hitless_rolling_haproxy_hosts": lb_hosts(lab)})])

    assert result.rc == 0, result.tail(60)
    assert "would deploy %s+" % target in result.output, result.tail(60)
    check_under_load(result, swapped=[], app_hosts=lab.groups["app"])


def test_check_mode_refuses_what_a_real_run_would_refuse(lab, tmp_path):
    """A listener on the clone port of the second host: the dry run fails in preflight on
    that host, naming the cause, exactly as a real run would, and changes nothing."""
    app_hosts = lab.groups["app"]
    squatted = app_hosts[-1]
    target = other_release(lab, app_hosts[0])
    sh(lab, squatted, "systemd-run --unit dry-run-squatter python3 -m http.server %d "
                      "--bind 0.0.0.0 && sleep 1" % CLONE_PORT)
    try:
        before = lab_state(lab)
        result = deploy_runs(lab, tmp_path, [Run("rolling", target, args=DRY_RUN)])
        after = lab_state(lab)
    finally:
        lab.ssh(squatted, "systemctl stop dry-run-squatter")

    assert result.rc != 0, result.tail(60)
    messages = role_failures(result.output)
    assert squatted in messages, result.tail(60)
    assert "at step preflight" in messages[squatted], messages
    assert "nothing may listen on the clone port %d" % CLONE_PORT in messages[squatted], messages
    assert "dry-run-squatter.service" in messages[squatted], messages
    assert "Nothing was changed." in messages[squatted], messages
    # The other hosts stop at the barrier: nothing is staged anywhere, not even in check mode.
    assert "Preflight failed on %s, so nothing is staged anywhere" % squatted in result.output
    assert after == before
    check_under_load(result, swapped=[], app_hosts=app_hosts)
