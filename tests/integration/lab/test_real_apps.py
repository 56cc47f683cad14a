"""A real third-party app deployed by the rolling playbook, under load: Flask under gunicorn,
with its libraries in a virtualenv inside each release (tests/real_apps).

The module boots its own lab ``itest-apps`` (lb1 in front of app1 and app2), then:

  (a) installs the release gunicorn-v1 on both app hosts with the role hitless.deploy.app
      (the unit's ExecStart runs the release's venv Python through ``current``), and checks
      that each answers v1 code on v1 libraries;
  (b) deploys gunicorn-v2 with hitless.deploy.rolling under the load probe: no failed
      request, and EVERY answer from one release, code and libraries alike (``version`` ==
      ``dependency``, which the app looks up afresh on each request; gunicorn recycles its
      workers every ~50 requests, and a recycled worker imports anew from the sys.path its
      master was started with). Before the deploy only v1 answers, the clones answer v1,
      after it only v2; every process of both instances (gunicorn's master and its workers)
      runs from the v2 release, its working directory and its view of ``current`` alike;
  (c) runs the same deploy again: nothing changes, no request fails, still no mixed answer.

(b) builds on (a), (c) on (b); a test whose prerequisite did not pass is skipped, naming it.
"""
import json
import os
import subprocess
import sys
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _deploy import (APP, CLONE_PORT, PORT, ROOT, ansible_env, base_name,  # noqa: E402
                     check_clean, check_under_load, current_release, deploy, host_state, sh)
from _labs import REPO, LabError, booted_lab  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "tests", "real_apps"))
import build_gunicorn_release as builder  # noqa: E402

LAB_NAME = "itest-apps"
RELEASES_DIR = os.path.join(REPO, ".tmp", "real_apps", "releases")
V1, V2 = "gunicorn-v1", "gunicorn-v2"
WORKERS = 2
DONE = set()

# Installs the first release as tests/lab/site.yml installs the sample app, with the real
# app's ExecStart; app_release_force because the lab starts on the sample app's v1.
INSTALL_PLAYBOOK = """\
- name: Install the gunicorn app's first release
  hosts: app
  gather_facts: false
  roles:
    - role: hitless.deploy.app
      vars:
        app_name: demo
        app_port: 8080
        app_release_src: "{{ real_release_src }}"
        app_release_name: "{{ real_release_name }}"
        app_release_force: true
        app_exec_start: "{{ real_exec_start }}"
        app_environment:
          STARTUP_DELAY: "1"
"""


def require(*steps):
    missing = [step for step in steps if step not in DONE]
    if missing:
        pytest.skip("builds on the earlier test(s) %s, which did not pass" % ", ".join(missing))


@pytest.fixture(scope="module")
def archives():
    """``{name: path}`` of the gunicorn releases, built (or found up to date) once."""
    try:
        paths = builder.build(RELEASES_DIR)
    except builder.BuildError as error:
        pytest.fail(str(error), pytrace=False)
    return {os.path.basename(path)[:-len(".tar.gz")]: path for path in paths}


@pytest.fixture(scope="module")
def apps_lab(archives):  # pylint: disable=unused-argument,redefined-outer-name
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (overlay mounts, bridges, systemd-nspawn)")
    try:
        with booted_lab(LAB_NAME, "--app-hosts", "2", "--topology", "lb") as booted:
            yield booted
    except LabError as error:
        pytest.fail(str(error), pytrace=False)


def get_json(lab, host, port, path="/"):
    address = lab.hosts[host]
    with urllib.request.urlopen("http://%s:%d%s" % (address, port, path), timeout=10) as resp:
        assert resp.status == 200, (host, port, path, resp.status)
        return json.loads(resp.read())


def install(lab, workdir, name, path):
    playbook = os.path.join(str(workdir), "install.yml")
    with open(playbook, "w") as handle:
        handle.write(INSTALL_PLAYBOOK)
    variables = {"real_release_src": path, "real_release_name": name,
                 "real_exec_start": builder.APP_EXEC_START}
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                           "-i", lab.inventory, playbook, "-e", json.dumps(variables)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=ansible_env(), cwd=REPO, timeout=600, check=False)
    with open(os.path.join(str(workdir), "install.log"), "w") as handle:
        handle.write(proc.stdout + proc.stderr)
    return proc


def save_journals(lab, workdir):
    """Each app host's journal of the app's instances, beside the probe results: when the
    masters and workers started and stopped (gunicorn logs every worker it boots)."""
    for host in lab.groups["app"]:
        proc = lab.ssh(host, "journalctl --no-pager -o short-precise -u '%s@*' -n 3000" % APP)
        with open(os.path.join(str(workdir), "journal-%s.log" % host), "w") as handle:
            handle.write(proc.stdout + proc.stderr)


def tail(text, lines=40):
    return "\n".join(text.splitlines()[-lines:])


# What runs on an app host: every process of the original instance, and where it runs from.
# Printed as JSON by the host's own Python (the lab hosts have python3, like any Ansible target).
PROCESSES = r"""
import json, os, subprocess
unit = "%(app)s@%(port)d.service"
cgroup = subprocess.run(["systemctl", "show", "-P", "ControlGroup", unit],
                        capture_output=True, text=True).stdout.strip()
main = subprocess.run(["systemctl", "show", "-P", "MainPID", unit],
                      capture_output=True, text=True).stdout.strip()
release = os.path.realpath("%(root)s/current")
st = os.stat(release)
out = {"release": release, "release_id": [st.st_dev, st.st_ino], "main": int(main or 0),
       "procs": []}
with open("/sys/fs/cgroup" + cgroup + "/cgroup.procs") as handle:
    pids = [int(line) for line in handle if line.strip()]
for pid in pids:
    proc = "/proc/%%d" %% pid
    cwd = os.stat(proc + "/cwd")
    seen = os.stat(proc + "/root%(root)s/current")
    with open(proc + "/cmdline", "rb") as handle:
        argv = handle.read().split(b"\0")
    with open(proc + "/stat") as handle:
        ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
    # Shared objects of the venv mapped by the process (markupsafe's C speedups in a worker):
    # the inode each maps, and the inode of the same file in the release that serves.
    mapped = {}
    with open(proc + "/maps") as handle:
        for line in handle:
            fields = line.split(None, 5)
            if len(fields) == 6 and "/venv/" in fields[5]:
                path = fields[5].strip()
                rel = path.split("/venv/", 1)[1]
                try:
                    want = os.stat(release + "/venv/" + rel).st_ino
                except OSError:
                    want = None
                mapped[path] = [int(fields[4]), want]
    out["procs"].append({"pid": pid, "ppid": ppid, "argv": [a.decode() for a in argv if a],
                         "cwd": os.readlink(proc + "/cwd"), "cwd_id": [cwd.st_dev, cwd.st_ino],
                         "current_id": [seen.st_dev, seen.st_ino], "mapped": mapped})
print(json.dumps(out))
""" % {"app": APP, "port": PORT, "root": ROOT}


def processes(lab, host):
    # As lab.ssh, with the script on standard input.
    proc = subprocess.run(
        ["ssh", "-i", lab.key, "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "ConnectTimeout=5", "root@" + lab.hosts[host], "python3 -"],
        input=PROCESSES, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, (host, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


def check_processes(lab, host, release):
    """Every process of the original instance on ``host`` runs from ``release``: its working
    directory, the ``current`` it sees, and the venv files it has mapped."""
    state = processes(lab, host)
    assert base_name(os.path.basename(state["release"])) == release, state["release"]
    procs = state["procs"]
    master = [p for p in procs if p["pid"] == state["main"]]
    workers = [p for p in procs if p["ppid"] == state["main"]]
    assert len(master) == 1 and len(workers) == WORKERS and len(procs) == 1 + WORKERS, (
        host, [(p["pid"], p["ppid"], p["argv"]) for p in procs])
    assert "gunicorn" in master[0]["argv"], master[0]["argv"]
    for proc in procs:
        where = (host, proc["pid"], proc["cwd"], state["release"])
        assert proc["cwd_id"] == state["release_id"], where
        assert proc["current_id"] == state["release_id"], where
        for path, (inode, want) in proc["mapped"].items():
            assert inode == want, (host, proc["pid"], path, inode, want)
    # The workers import Flask, hence markupsafe's C speedups: proof that the check looked.
    for worker in workers:
        assert any("site-packages" in path for path in worker["mapped"]), (host, worker)
    return state


def answers(result):
    """Every successful answer of every probe, with its LB host."""
    return [dict(r, lb=lb) for lb, probe in result.probes.items() for r in probe["records"]
            if r["ok"]]


def check_one_release_per_answer(result):
    """No answer mixed one release's code with another's libraries; all had a dependency."""
    mixed = sum(p["mixed"] for p in result.probes.values())
    sse_mixed = sum(p["sse"]["mixed"] for p in result.probes.values())
    examples = [a for p in result.probes.values() for a in p["mixed_answers"]][:5]
    assert (mixed, sse_mixed) == (0, 0), (
        "%d answers (and %d SSE events) came from code of one release and libraries of "
        "another; first ones: %s" % (mixed, sse_mixed, examples))
    missing = [a for a in answers(result) if a["dependency"] is None]
    assert not missing, "%d answers without a dependency: %s" % (len(missing), missing[:5])


def test_a_install_gunicorn_v1_with_the_app_role(apps_lab, archives, tmp_path):
    lab = apps_lab
    apps = lab.groups["app"]
    proc = install(lab, tmp_path, V1, archives[V1])
    assert proc.returncode == 0, tail(proc.stdout + proc.stderr, 60)
    for host in apps:
        assert current_release(lab, host) == V1
        for _attempt in range(3):
            doc = get_json(lab, host, PORT)
            assert (doc["version"], doc["dependency"], doc["host"], doc["port"]) == (
                "v1", "v1", host, PORT), doc
        assert get_json(lab, host, PORT, "/slow?ms=50")["slept_ms"] >= 50
        check_processes(lab, host, V1)
    DONE.add("a")


def test_b_rolling_deploy_of_gunicorn_v2_every_answer_from_one_release(
        apps_lab, archives, tmp_path):
    require("a")
    lab = apps_lab
    apps = lab.groups["app"]
    result = deploy(lab, tmp_path, extra_vars={"hitless_release_src": archives[V2]})
    save_journals(lab, tmp_path)
    print(result.summary())
    assert result.rc == 0, result.tail(60)
    check_under_load(result, swapped=apps, app_hosts=apps)
    check_one_release_per_answer(result)
    assert set(result.by_version) == {"v1", "v2"}, result.by_version
    for host in apps:
        # The clone stood in for the release that was serving, and only for it.
        assert result.versions_from(host, CLONE_PORT) == {"v1"}, result.by_instance
        record = result.records[host]
        assert (record["outcome"], base_name(record["release"]),
                base_name(record["from_release"])) == ("deployed", V2, V1), record
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
    assert result.answered_after_end() == {(h, "v2") for h in apps}, result.answered_after_end()
    check_clean(lab, V2)
    for host in apps:
        check_processes(lab, host, V2)
        doc = get_json(lab, host, PORT)
        assert (doc["version"], doc["dependency"]) == ("v2", "v2"), doc
    DONE.add("b")


def test_c_the_same_deploy_again_changes_nothing(apps_lab, archives, tmp_path):
    require("b")
    lab = apps_lab
    apps = lab.groups["app"]
    before = {h: host_state(lab, h) for h in apps}
    pids = {h: sh(lab, h, "systemctl show -P MainPID %s@%d" % (APP, PORT)) for h in apps}
    result = deploy(lab, tmp_path, extra_vars={"hitless_release_src": archives[V2]})
    save_journals(lab, tmp_path)
    print(result.summary())
    assert result.rc == 0, result.tail(60)
    assert {h: result.recap[h]["changed"] for h in apps} == dict.fromkeys(apps, 0), (
        result.recap, result.tail(60))
    check_under_load(result, swapped=(), app_hosts=apps)
    check_one_release_per_answer(result)
    assert set(result.by_version) == {"v2"}, result.by_version
    for host in apps:
        assert result.records[host]["outcome"] == "unchanged", result.records[host]
    check_clean(lab, V2)
    assert {h: host_state(lab, h) for h in apps} == before
    assert {h: sh(lab, h, "systemctl show -P MainPID %s@%d" % (APP, PORT)) for h in apps} == pids
    for host in apps:
        check_processes(lab, host, V2)
