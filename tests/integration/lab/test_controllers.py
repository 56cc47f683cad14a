"""The rolling deploy from the oldest and the newest supported controller, under load.

One small lab for this module, ``itest-ctl`` (one LB host, one app host). Each test runs one
rolling deploy under the load probe and the ``show stat`` poller, as the other deploy tests do,
but from another controller (tests/controller/run.py):

- ansible-core 2.15 (the oldest, ``requires_ansible: >=2.15.0``) on this machine's Python,
  from ``.tmp/core-2.15``;
- ansible-core 2.21 (the newest; Python >= 3.12) in a Debian 13 container with its Python 3.13,
  from ``.tmp/core-2.21``. Its output must hold no ``[WARNING]`` and no
  ``[DEPRECATION WARNING]``.

Each deploys the release after the one app1 serves (v1 -> v2, then v2 -> v3) and checks: exit
status 0, no failed request, the original's capacity never below one UP server, the clone
answered with the release being replaced while the original restarted, only the new release
answers after the playbook, the clean state afterwards, and the ``ansible-playbook [core X]``
line run.py prints first, with the version pinned in tests/controller/requirements-core-X.txt.
The first run of each controller creates its virtualenv (2.21: and builds the container's
rootfs, about two minutes, once).
"""
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _deploy import (NEXT, REPO, Run, _command, base_name, check_clean,  # noqa: E402
                     check_under_load, current_release, deploy_runs)
from _labs import LabError, booted_lab  # noqa: E402

RUN = os.path.join(REPO, "tests", "controller", "run.py")
VERSION_RE = re.compile(r"^ansible-playbook \[core (\S+)\]$", re.M)
WARNING_RE = re.compile(r"^.*\[(DEPRECATION )?WARNING\].*$", re.M)


def pinned(core):
    with open(os.path.join(REPO, "tests", "controller", "requirements-core-%s.txt" % core)) as f:
        return re.search(r"^ansible-core==(\S+)$", f.read(), re.M).group(1)


@pytest.fixture(scope="module")
def lab():
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (overlay mounts, bridges, systemd-nspawn)")
    try:
        with booted_lab("itest-ctl", "--app-hosts", "1", "--topology", "lb") as booted:
            yield booted
    except LabError as error:
        pytest.fail(str(error), pytrace=False)


class ControllerRun(Run):
    """The deploy :func:`_deploy.deploy` would run, from controller ``core`` instead of .venv.

    run.py runs the same ansible-playbook command line from the controller's virtualenv; the
    test's work dir (deploy records) is bound into the container at its own path.
    """

    def __init__(self, core, lab, workdir, release):
        super().__init__(release=release)
        # deploy_runs() gives the playbook WORKDIR/records as rolling_report_dir.
        command = _command(lab, Run(release=release), os.path.join(str(workdir), "records"))
        self.argv = [sys.executable, RUN, "--core", core, "--bind", str(workdir), "--"] + command


def deploy_from(core, lab, workdir):
    from_release = current_release(lab, "app1")
    release = NEXT[from_release]
    result = deploy_runs(lab, workdir, [ControllerRun(core, lab, workdir, release)])
    print(result.summary())
    assert result.rc == 0, result.tail()
    versions = VERSION_RE.findall(result.output)
    assert versions[:1] == [pinned(core)], (versions, result.output[:2000])
    check_under_load(result, swapped=["app1"], app_hosts=["app1"])
    # Who answered: the original (8080) before and after, the clone (8081) with the release
    # it stood in for while the original restarted, and only the new release at the end.
    assert result.versions_from("app1", 8081) == {from_release}, result.by_instance
    assert result.versions_from("app1", 8080) == {from_release, release}, result.by_instance
    assert result.answered_after_end() == {("app1", release)}, result.answered_after_end()
    check_clean(lab, release)
    record = result.records["app1"]
    assert (record["outcome"], base_name(record["release"]), base_name(record["from_release"])) == (
        "deployed", release, from_release), record
    return result


def test_oldest_controller_ansible_core_2_15(lab, tmp_path):
    result = deploy_from("2.15", lab, tmp_path)
    # Reported, not failed on: an old controller may warn about what newer ones accept.
    for warning in WARNING_RE.findall(result.output):
        print("ansible-core 2.15:", warning)


def test_newest_controller_ansible_core_2_21(lab, tmp_path):
    result = deploy_from("2.21", lab, tmp_path)
    warnings = [m.group(0) for m in WARNING_RE.finditer(result.output)]
    assert not warnings, "\n".join(warnings)
