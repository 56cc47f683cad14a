"""Two apps on the same hosts, under load on both backends: the sample app ``demo`` (8080, clone
8081, /srv/demo, backend demo) and the gunicorn app of tests/real_apps as ``shop`` (8090, clone
8091, /srv/shop, backend shop, routed by ``Host: shop``), each with its own unit, lock, journal
and records.

Deployed one after the other, a deploy of one app must leave the other's instances (same main
PIDs), clone and servers alone, and the other's probe must see nothing but its own instances;
deployed at the same time, both must finish, each behind its own clones. The lab ``itest-apps``
is booted for this module only (1 HAProxy host, 2 app hosts).
"""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _deploy import (APP, CLONE_PORT, NEXT, PORT, Run, install_apps,  # noqa: E402
                     base_name, check_clean, check_under_load, current_release, deploy_runs, sh)
from _labs import LabError, booted_lab  # noqa: E402
from _real_apps import GUNICORN, BuildError, check_one_release_per_answer  # noqa: E402

SHOP, SHOP_PORT, SHOP_CLONE_PORT = "shop", 8090, 8091
SHOP_VARS = {"rolling_app_name": SHOP, "rolling_port": SHOP_PORT, "rolling_clone_port": SHOP_CLONE_PORT}
SHOP_NEXT = {GUNICORN.v1: GUNICORN.v2, GUNICORN.v2: GUNICORN.v1}
PORTS = {APP: (PORT, CLONE_PORT), SHOP: (SHOP_PORT, SHOP_CLONE_PORT)}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (overlay mounts, bridges, systemd-nspawn)")
    try:
        releases = GUNICORN.build()
    except BuildError as error:
        pytest.fail("the gunicorn releases could not be built: %s" % error, pytrace=False)
    try:
        with booted_lab("itest-apps", "--app-hosts", "2", "--topology", "lb") as booted:
            apps = [{"name": APP, "port": PORT, "clone_port": CLONE_PORT},
                    {"name": SHOP, "port": SHOP_PORT, "clone_port": SHOP_CLONE_PORT, "hosts": [SHOP],
                     "release_src": releases[GUNICORN.v1], "release_name": GUNICORN.v1,
                     "exec_start": GUNICORN.exec_start.replace("/srv/%s/" % APP, "/srv/%s/" % SHOP)}]
            install_apps(booted, apps, tmp_path_factory.mktemp("apps") / "site.log")
            booted.shop_releases = releases
            yield booted
    except LabError as error:
        pytest.fail(str(error), pytrace=False)


def shop_release(lab, host):
    return base_name(os.path.basename(sh(lab, host, "readlink /srv/%s/current" % SHOP)))


def main_pids(lab, app):
    port = PORTS[app][0]
    return {host: sh(lab, host, "systemctl show -p MainPID --value %s@%d" % (app, port))
            for host in lab.groups["app"]}


def demo_run(release, **kw):
    return Run("rolling", release, **kw)


def shop_run(lab, release, report_dir, **kw):
    return Run("rolling", extra_vars=dict(SHOP_VARS, hitless_release_src=lab.shop_releases[release],
                                          rolling_report_dir=str(report_dir)), **kw)


def answered_by_own_instances(result, app):
    """Every answer through an app's backend came from that app's original or clone port."""
    foreign = [key for key in result.by_instance if int(key.rsplit(":", 1)[1]) not in PORTS[app]]
    assert not foreign, "%s's backend was answered by %s" % (app, foreign)


def check_untouched(lab, result, app, pids_before, release):
    """``app`` was not deployed: same processes, never its clone, only its release answered."""
    assert main_pids(lab, app) == pids_before, app
    check_under_load(result, swapped=[], app_hosts=lab.groups["app"], clone_ports=PORTS[app][1:])
    answered_by_own_instances(result, app)
    assert set(result.by_version) == {release.split("-")[-1]}, result.by_version
    for poller in result.pollers.values():
        states = {status for sample in poller["samples"] for status in sample[2].values()}
        # Its servers stayed UP (and its clone slots in MAINT) at every sample.
        assert all(s.startswith("UP") or s == "MAINT" for s in states), states


def test_each_app_deploys_alone_and_leaves_the_other_untouched(lab, tmp_path):
    hosts = lab.groups["app"]
    demo_old = current_release(lab, hosts[0])
    shop_old = shop_release(lab, hosts[0])

    shop_pids = main_pids(lab, SHOP)
    result = deploy_runs(lab, tmp_path / "demo", [demo_run(NEXT[demo_old])], other_apps=(SHOP,))
    assert result.rc == 0, result.tail(60)
    check_under_load(result, swapped=hosts, app_hosts=hosts)
    answered_by_own_instances(result, APP)
    check_clean(lab, NEXT[demo_old])
    check_untouched(lab, result.apps[SHOP], SHOP, shop_pids, shop_old)
    check_one_release_per_answer(result.apps[SHOP])
    assert {(h, base_name(r["release"])) for h, r in result.records.items()} == {
        (h, NEXT[demo_old]) for h in hosts}, result.records

    demo_pids = main_pids(lab, APP)
    shop_records = tmp_path / "shop-records"
    result = deploy_runs(lab, tmp_path / "shop", [shop_run(lab, SHOP_NEXT[shop_old], shop_records)],
                         other_apps=(SHOP,))
    assert result.rc == 0, result.tail(60)
    shop = result.apps[SHOP]
    check_under_load(shop, swapped=hosts, app_hosts=hosts, clone_ports=(SHOP_CLONE_PORT,))
    answered_by_own_instances(shop, SHOP)
    check_one_release_per_answer(shop)
    check_clean(lab, SHOP_NEXT[shop_old], app=SHOP, port=SHOP_PORT, clone_port=SHOP_CLONE_PORT)
    check_untouched(lab, result, APP, demo_pids, NEXT[demo_old])
    for host in hosts:
        record = json.loads((shop_records / ("%s.json" % host)).read_text())
        assert (record["outcome"], base_name(record["release"])) == ("deployed", SHOP_NEXT[shop_old]), record


def test_both_apps_deploy_at_the_same_time_each_behind_its_own_clones(lab, tmp_path):
    hosts = lab.groups["app"]
    demo_old, shop_old = current_release(lab, hosts[0]), shop_release(lab, hosts[0])
    shop_records = tmp_path / "shop-records"
    runs = [demo_run(NEXT[demo_old], wait=False), shop_run(lab, SHOP_NEXT[shop_old], shop_records)]
    result = deploy_runs(lab, tmp_path, runs, other_apps=(SHOP,))
    # Independent locks: neither waited for nor refused the other.
    assert [run.rc for run in runs] == [0, 0], "\n=====\n".join(run.output[-3000:] for run in runs)
    assert "locked by another rollout" not in runs[0].output + runs[1].output
    for app, app_result, release in ((APP, result, NEXT[demo_old]), (SHOP, result.apps[SHOP], SHOP_NEXT[shop_old])):
        check_under_load(app_result, swapped=hosts, app_hosts=hosts, clone_ports=PORTS[app][1:])
        answered_by_own_instances(app_result, app)
        assert {version for _host, version in app_result.answered_after_end()} == {release.split("-")[-1]}, (
            app, app_result.answered_after_end())
    check_one_release_per_answer(result.apps[SHOP])
    check_clean(lab, NEXT[demo_old])
    check_clean(lab, SHOP_NEXT[shop_old], app=SHOP, port=SHOP_PORT, clone_port=SHOP_CLONE_PORT)
    # Each app's own record, in its own report directory.
    for host in hosts:
        assert base_name(result.records[host]["release"]) == NEXT[demo_old], result.records[host]
        shop_record = json.loads((shop_records / ("%s.json" % host)).read_text())
        assert base_name(shop_record["release"]) == SHOP_NEXT[shop_old], shop_record
