"""Real third-party apps deployed by the rolling playbook, under load, each with its libraries
inside the release (tests/real_apps):

- gunicorn: Flask under gunicorn (4 gthread workers, recycled every 100-150 requests), venv;
- uvicorn: FastAPI under uvicorn (ASGI, 2 worker processes), venv;
- node: express under Debian's Node.js, node_modules.

The module boots ONE lab ``itest-apps`` (lb1 in front of app1 and app2) and takes the apps in
turn through the same three tests (a class each). Each test first brings the lab to the state
it starts from (the app's v1, or its v2, serving on both hosts: installed with the app role or
deployed under load, with the same checks, where it is not so already), so none depends on
another having run or passed:

- installs the release KEY-v1 on both app hosts with the role hitless.deploy.app
  (app_release_force: over the lab's sample app, or the previous app's v2) and checks that each
  answers v1 code on v1 libraries, and that its processes are the ones it should have, all
  running from v1;
- deploys KEY-v2 over KEY-v1 with hitless.deploy.rolling under the load probe: no failed
  request, and EVERY answer from one release, code and libraries alike (``version`` ==
  ``dependency``, which each app looks up afresh on each request). Before the deploy only v1
  answers, the clones answer v1, after it only v2. The probe's SSE client stays connected
  across the deploy: every reconnect succeeds, no event is mixed, each stream comes from one
  instance of one release, and the events go from v1 to v2 in order (per original instance,
  no v1 event after a v2 one). Afterwards every process of both instances runs from the v2
  release, its working directory, its view of ``current`` and its mapped files alike;
- runs the same deploy of KEY-v2 again: nothing changes, no request fails, still no mixed
  answer.

The figures of the deploy and the re-run (requests, failed, mixed, min UP, wall time, SSE
events) are merged into .tmp/itest/real_apps.json.

The node app needs Debian's ``nodejs`` on the lab hosts (tests/lab/_rootfs.py PACKAGES); on
hosts without /usr/bin/node its tests are skipped, saying so.
"""
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _deploy import (CLONE_PORT, PORT, base_name, check_clean,  # noqa: E402
                     check_under_load, current_release, deploy, host_state)
from _labs import LabError, booted_lab  # noqa: E402
import _real_apps as real  # noqa: E402

LAB_NAME = "itest-apps"
STARTED = time.monotonic()


@pytest.fixture(scope="module")
def archives():
    """``{app key: {name: path}}`` of every app's releases, built (or found up to date) before
    the lab boots; an app whose build failed maps to its error."""
    built = {}
    for key, app in real.APPS.items():
        try:
            built[key] = app.build()
        except real.BuildError as error:
            built[key] = error
    return built


@pytest.fixture(scope="module")
def apps_lab(archives):  # pylint: disable=unused-argument,redefined-outer-name
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (overlay mounts, bridges, systemd-nspawn)")
    try:
        started = time.monotonic()
        with booted_lab(LAB_NAME, "--app-hosts", "2", "--topology", "lb") as booted:
            booted.up_seconds = round(time.monotonic() - started, 1)
            yield booted
    except LabError as error:
        pytest.fail(str(error), pytrace=False)


def release_paths(archives, app):  # pylint: disable=redefined-outer-name
    paths = archives[app.key]
    if isinstance(paths, Exception):
        pytest.fail("building %s's releases failed: %s" % (app.key, paths), pytrace=False)
    return paths


def serves(lab, release):
    return all(current_release(lab, host) == release for host in lab.groups["app"])


def skip_without_program(lab, app):
    lacking = real.missing_program(lab, app)
    if lacking:
        pytest.skip("%s has no %s: the lab's rootfs needs Debian's nodejs "
                    "(tests/lab/_rootfs.py PACKAGES)" % (", ".join(lacking), app.needs))


def v1_installed(lab, app, paths, workdir):
    """Setup: the app's v1 serves on every app host (installed with the app role if not)."""
    os.makedirs(str(workdir), exist_ok=True)
    if not serves(lab, app.v1):
        proc = real.install(lab, workdir, app, app.v1, paths[app.v1])
        assert proc.returncode == 0, "setup: " + real.tail(proc.stdout + proc.stderr, 60)
    assert serves(lab, app.v1)


def v2_deployed(lab, app, paths, workdir):
    """Setup: the app's v2 serves on every app host (deployed over v1 under load if not)."""
    if not serves(lab, app.v2):
        v1_installed(lab, app, paths, workdir)
        result = deploy(lab, os.path.join(str(workdir), "setup-v2"),
                        extra_vars={"hitless_release_src": paths[app.v2]})
        assert result.rc == 0, "setup: " + result.tail(60)
        check_under_load(result, swapped=lab.groups["app"], app_hosts=lab.groups["app"])
    check_clean(lab, app.v2)


class RealAppTests:
    """The three steps for ``APP`` (a subclass per app; this base is not collected)."""

    APP = None

    def test_the_app_role_installs_v1_with_its_own_libraries(self, apps_lab, archives, tmp_path):
        app, lab = self.APP, apps_lab
        apps = lab.groups["app"]
        paths = release_paths(archives, app)
        skip_without_program(lab, app)
        started = time.monotonic()
        proc = real.install(lab, tmp_path, app, app.v1, paths[app.v1])
        assert proc.returncode == 0, real.tail(proc.stdout + proc.stderr, 60)
        for host in apps:
            assert current_release(lab, host) == app.v1
            for _attempt in range(3):
                doc = real.get_json(lab, host, PORT)
                assert (doc["version"], doc["dependency"], doc["host"], doc["port"]) == (
                    "v1", "v1", host, PORT), doc
            assert real.get_json(lab, host, PORT, "/slow?ms=50")["slept_ms"] >= 50
            real.check_processes(lab, host, app, app.v1)
        real.record_figures(app, "install", {"seconds": round(time.monotonic() - started, 1),
                                             "lab_up_s": getattr(lab, "up_seconds", None)})

    def test_rolling_deploy_of_v2_every_answer_from_one_release(
            self, apps_lab, archives, tmp_path):
        app, lab = self.APP, apps_lab
        apps = lab.groups["app"]
        paths = release_paths(archives, app)
        skip_without_program(lab, app)
        v1_installed(lab, app, paths, tmp_path / "setup")
        result = deploy(lab, tmp_path, extra_vars={"hitless_release_src": paths[app.v2]})
        real.save_journals(lab, tmp_path)
        print(result.summary())
        real.record_figures(app, "deploy", real.figures(result))
        assert result.rc == 0, result.tail(60)
        check_under_load(result, swapped=apps, app_hosts=apps)
        real.check_one_release_per_answer(result)
        real.check_sse(result, apps, ("v1", "v2"))
        assert set(result.by_version) == {"v1", "v2"}, result.by_version
        for host in apps:
            # The clone stood in for the release that was serving, and only for it.
            assert result.versions_from(host, CLONE_PORT) == {"v1"}, result.by_instance
            record = result.records[host]
            assert (record["outcome"], base_name(record["release"]),
                    base_name(record["from_release"])) == ("deployed", app.v2, app.v1), record
        for lb, probe in result.probes.items():
            before = result.started - probe["t0_epoch"]
            early = {r["version"] for r in probe["records"] if r["ok"] and r["end"] < before}
            assert early == {"v1"}, (lb, early)
            # Per original instance: once it answered v2, it never answered v1 again.
            for host in apps:
                mine = sorted((r for r in probe["records"]
                               if r["ok"] and (r["host"], r["port"]) == (host, PORT)),
                              key=lambda r: r["start"])
                first_v2 = min((r["end"] for r in mine if r["version"] == "v2"), default=None)
                assert first_v2 is not None, (lb, host, "never answered v2")
                late_v1 = [r for r in mine if r["version"] == "v1" and r["start"] > first_v2]
                assert not late_v1, (lb, host, first_v2, late_v1[:3])
        assert result.answered_after_end() == {(h, "v2") for h in apps}, (
            result.answered_after_end())
        check_clean(lab, app.v2)
        for host in apps:
            real.check_processes(lab, host, app, app.v2)
            doc = real.get_json(lab, host, PORT)
            assert (doc["version"], doc["dependency"]) == ("v2", "v2"), doc

    def test_the_same_deploy_again_changes_nothing(self, apps_lab, archives, tmp_path):
        app, lab = self.APP, apps_lab
        apps = lab.groups["app"]
        paths = release_paths(archives, app)
        skip_without_program(lab, app)
        v2_deployed(lab, app, paths, tmp_path / "setup")
        before = {h: host_state(lab, h) for h in apps}
        pids = real.main_pids(lab, apps)
        result = deploy(lab, tmp_path, extra_vars={"hitless_release_src": paths[app.v2]})
        real.save_journals(lab, tmp_path)
        print(result.summary())
        real.record_figures(app, "rerun", dict(
            real.figures(result), module_s_so_far=round(time.monotonic() - STARTED, 1)))
        assert result.rc == 0, result.tail(60)
        assert {h: result.recap[h]["changed"] for h in apps} == dict.fromkeys(apps, 0), (
            result.recap, result.tail(60))
        check_under_load(result, swapped=(), app_hosts=apps)
        real.check_one_release_per_answer(result)
        real.check_sse(result, apps, ("v2",))
        assert set(result.by_version) == {"v2"}, result.by_version
        for host in apps:
            assert result.records[host]["outcome"] == "unchanged", result.records[host]
        check_clean(lab, app.v2)
        assert {h: host_state(lab, h) for h in apps} == before
        assert real.main_pids(lab, apps) == pids
        for host in apps:
            real.check_processes(lab, host, app, app.v2)


class TestGunicorn(RealAppTests):
    APP = real.GUNICORN


class TestUvicorn(RealAppTests):
    APP = real.UVICORN


class TestNode(RealAppTests):
    APP = real.NODE
