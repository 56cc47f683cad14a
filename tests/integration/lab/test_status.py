"""``hitless.deploy.status`` on the session lab: what runs where, read from the hosts themselves.

It must say the release each instance's process really runs (not only where ``current``
points), change nothing (also with ``--check``, run after run), flag each thing an interrupted
deploy or a hand leaves behind with a fix that works when run as printed, and report a host it
cannot read instead of failing. These tests leave the lab as they found it.
"""
import json
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import yaml

from _deploy import (APP, BIN, CLONE_PORT, LOCK_DIR, REPO, ROOT, ansible_env,  # noqa: E402
                     current_dir, lb_hosts, show_stat, sh)
from _workers import runs_in  # noqa: E402

RECAP_RE = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
DEPLOY_ID = "status-test"


class Status:
    def __init__(self, proc):
        self.rc, self.output = proc.returncode, proc.stdout
        self.recap = {m.group(1): tuple(int(g) for g in m.groups()[1:]) for m in RECAP_RE.finditer(self.output)}
        # ANSIBLE_SHOW_CUSTOM_STATS prints what set_stats published, as AWX would store it.
        found = re.search(r"^\s*RUN: (\{.*\})\s*$", self.output, re.M)
        self.published = json.loads(found.group(1))["hitless_status"] if found else None

    @property
    def flags(self):
        return sorted(f["what"] for f in self.published["flags"])

    def row(self, host):
        return next(r for r in self.published["apps"] if r["host"] == host)


def status(lab, *args, inventory=None):
    env = dict(ansible_env(), ANSIBLE_SHOW_CUSTOM_STATS="True")
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", inventory or lab.inventory,
                           "hitless.deploy.status"] + list(args), capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=180, stdin=subprocess.DEVNULL, check=False)
    proc.stdout += proc.stderr
    return Status(proc)


def adhoc(lab, host, module, args):
    proc = subprocess.run([os.path.join(BIN, "ansible"), "-i", lab.inventory, host, "-m", module,
                           "-a", args], capture_output=True, text=True, env=ansible_env(), cwd=REPO,
                          timeout=120, stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, (module, args, proc.stdout[-3000:], proc.stderr[-2000:])
    return proc.stdout


def adhoc_cleanup(lab, host, module, args):
    """``adhoc`` in a test's cleanup: it runs whatever failed before, and asserts nothing."""
    subprocess.run([os.path.join(BIN, "ansible"), "-i", lab.inventory, host, "-m", module, "-a", args],
                   env=ansible_env(), cwd=REPO, capture_output=True, timeout=120, check=False)


def lab_state(lab):
    """What these tests may touch: links, releases, bad marks, the instance and clone, servers."""
    return ({host: sh(lab, host, "cd %s && readlink current previous; ls -A releases; ls -A .hitless/bad 2>/dev/null; "
                                 "systemctl is-active %s@8080 %s@%d || true" % (ROOT, APP, APP, CLONE_PORT))
             for host in lab.groups["app"]},
            {lb: show_stat(lab, lb) for lb in lb_hosts(lab)})


def test_a_quiet_fleet_reads_as_consistent_and_nothing_changes_run_after_run(lab, tmp_path):
    before = lab_state(lab)
    picture = tmp_path / "status.svg"
    runs = [status(lab, "--check"), status(lab, "-e", "hitless_status_picture=%s" % picture),
            status(lab, "--check"), status(lab)]
    for run in runs:
        assert run.rc == 0, run.output[-3000:]
        assert all(changed == 0 and failed == 0 for changed, _unreachable, failed in run.recap.values()), run.recap
        assert run.published["consistent"] and run.published["flags"] == [], run.published["flags"]
    published = runs[1].published
    for host in lab.groups["app"]:
        row = runs[1].row(host)
        serving = current_dir(lab, host)
        # The release the process runs, checked two ways over ssh: the release directory that
        # is its working directory (the same inode; the process sees it at current), and the
        # version the instance answers with.
        release_dir = runs_in(lab, host, "%s@8080" % APP)
        answer = json.loads(sh(lab, host, "python3 -c \"import urllib.request as u; "
                                          "print(u.urlopen('http://127.0.0.1:8080/').read().decode())\""))
        assert release_dir.split("+")[0] == answer["version"], (release_dir, answer)
        assert (row["instance"]["state"], row["instance"]["release"], row["current"]) == (
            "active", release_dir, serving), row
        assert row["clone"]["state"] == "inactive" and row["journal"] is None, row
        kept = sh(lab, host, "ls -A %s/releases" % ROOT).split()
        assert sorted(row["releases"]) == sorted(k for k in kept if not k.startswith(".")), row
        assert row["releases"][0] == serving, row
        assert re.search(r'"%s\s+%s\s+8080 active\s+%s\s+%s\s' % (host, APP, re.escape(release_dir), re.escape(serving)),
                         runs[1].output), runs[1].output[-3000:]
    for lb in lb_hosts(lab):
        for row in (r for r in published["haproxy"] if r["host"] == lb):
            assert row["lock"] is None and row["error"] is None, row
            for host in lab.groups["app"]:
                assert row["servers"][host]["admin_state"] == "ready", row
                assert row["servers"][host + "-clone"]["admin_state"] == "maint", row
    drawn = ET.parse(str(picture)).getroot()
    text = " ".join(t.text or "" for t in drawn.iter("{http://www.w3.org/2000/svg}text"))
    assert "consistent" in text and all(host in text for host in lab.groups["app"]), text
    assert lab_state(lab) == before


def test_what_an_interrupted_deploy_leaves_is_flagged_and_each_printed_fix_clears_it(lab, tmp_path):
    host, lb = lab.groups["app"][0], lb_hosts(lab)[0]
    before = lab_state(lab)
    serving = current_dir(lab, host)
    copy = serving + "-status-copy"
    mark = "%s/.hitless/bad/%s" % (ROOT, copy)
    try:
        # A deploy that holds its lock is under way: its journal, drained server and clone are
        # not findings.
        adhoc(lab, lb, "hitless.deploy.deploy_lock",
              "backend=%s deploy_id=%s host=%s hosts=%s state=held" % (APP, DEPLOY_ID, host, host))
        adhoc(lab, host, "hitless.deploy.deploy_journal",
              "root=%s deploy_id=%s step=upgrade state=step" % (ROOT, DEPLOY_ID))
        adhoc(lab, lb, "hitless.deploy.haproxy_server", "backend=%s server=%s state=drain wait_timeout=5" % (APP, host))
        sh(lab, host, "systemctl start %s@%d" % (APP, CLONE_PORT))
        under_way = status(lab)
        assert under_way.rc == 0 and under_way.published["consistent"], under_way.flags
        assert re.search(r'"%s\s+%s\s+%s by root since \d{4}-' % (lb, APP, DEPLOY_ID), under_way.output), (
            under_way.output[-3000:])
        assert under_way.row(host)["journal"]["deploy_id"] == DEPLOY_ID

        # The lock is gone (cleared by hand after its controller died), the rest stays.
        sh(lab, lb, "rm %s/%s.json" % (LOCK_DIR, APP))
        stopped = status(lab, "--check")
        assert stopped.rc == 0 and stopped.flags == sorted([
            "deploy %s of %s stopped at step upgrade (since %s) and nobody holds its lock"
            % (DEPLOY_ID, APP, stopped.row(host)["journal"]["since"]),
            "server %s/%s is in DRAIN with nobody deploying" % (APP, host)]), stopped.flags
        assert "Fix: finish or undo it: ansible-playbook hitless.deploy.rolling --tags repair --limit %s." % host in stopped.output
        strict = status(lab, "-e", "hitless_status_strict=true")
        assert strict.rc != 0 and "2 finding(s): %s: deploy %s" % (host, DEPLOY_ID) in strict.output, strict.output[-2000:]

        # By hand, not by a deploy: the journal closed, current moved under the running
        # instance to a release marked bad.
        adhoc(lab, host, "hitless.deploy.deploy_journal", "root=%s deploy_id=%s state=done" % (ROOT, DEPLOY_ID))
        sh(lab, host, "cd %s && cp -a releases/%s releases/%s && ln -sfn releases/%s current && mkdir -p .hitless/bad && "
                      "echo '{\"step\": \"post_start\", \"cause\": \"status test\"}' > %s"
                      % (ROOT, serving, copy, copy, mark))
        by_hand = status(lab)
        clone_unit = "%s@%d.service" % (APP, CLONE_PORT)
        assert by_hand.flags == sorted([
            "%s: current release %s is marked bad (status test at post_start)" % (APP, copy),
            "%s@8080.service runs release %s but current is %s" % (APP, serving, copy),
            "clone %s is active (release %s) with no deploy under way" % (clone_unit, serving),
            "server %s/%s is in DRAIN with nobody deploying" % (APP, host)]), by_hand.flags
        assert by_hand.row(host)["instance"]["release"] == serving
        # Other tests of the session may have left marks of their own releases.
        assert by_hand.row(host)["bad"][copy] == {"step": "post_start", "cause": "status test"}

        # The fixes, run as printed (the link and mark are ours to undo; a deploy would do it).
        sh(lab, host, "cd %s && ln -sfn releases/%s current && rm -f %s" % (ROOT, serving, mark))
        for fix in re.findall(r"Fix: (ansible \S+ -m hitless\.deploy\.haproxy_server -a '[^']+')", by_hand.output):
            argv = shlex.split(fix)
            adhoc(lab, argv[1], argv[3], argv[5])
        assert "systemctl stop %s" % clone_unit in by_hand.output
        sh(lab, host, "systemctl stop %s" % clone_unit)
        sh(lab, host, "rm -rf %s/releases/%s" % (ROOT, copy))
        fixed = status(lab)
        assert fixed.rc == 0 and fixed.published["consistent"], fixed.flags
    finally:
        lab.ssh(lb, "rm -f %s/%s.json" % (LOCK_DIR, APP))
        lab.ssh(host, "cd %s && ln -sfn releases/%s current; rm -rf releases/%s %s; systemctl stop %s@%d"
                % (ROOT, serving, copy, mark, APP, CLONE_PORT))
        for module, args in (("hitless.deploy.deploy_journal", "root=%s deploy_id=%s state=done" % (ROOT, DEPLOY_ID)),
                             ("hitless.deploy.haproxy_server", "backend=%s server=%s state=ready" % (APP, host))):
            adhoc_cleanup(lab, lb if "haproxy" in module else host, module, args)
    # The last closed journal (ours) is the only trace left.
    assert lab_state(lab) == before


def test_an_interrupted_deploy_is_shown_on_the_ports_its_journal_recorded(lab):
    """The status run names the lab's instance and its clone (8080, 8081); the interrupted
    deploy ran with another clone port (-e rolling_clone_port=8089). The row shows the clone
    the journal recorded, running, since that is the one its repair will stop."""
    host = lab.groups["app"][0]
    before = lab_state(lab)
    serving = current_dir(lab, host)
    recorded = {"port": 8080, "clone_port": 8089, "server": host, "clone": host + "-clone"}
    try:
        adhoc(lab, host, "hitless.deploy.deploy_journal", json.dumps({
            "root": ROOT, "deploy_id": DEPLOY_ID, "step": "clone", "state": "step",
            "data": {"port": 8080, "clone_port": 8089, "instances": [recorded]}}))
        sh(lab, host, "systemctl start %s@8089" % APP)
        read = status(lab, "--check")
        row = read.row(host)
        assert [(i["port"], i["clone_port"], i["clone"]["state"], i["clone"]["release"])
                for i in row["instances"]] == [(8080, 8089, "active", serving)], row["instances"]
        assert read.flags == ["deploy %s of %s stopped at step clone (since %s) and nobody holds its lock"
                              % (DEPLOY_ID, APP, row["journal"]["since"])], read.flags
    finally:
        lab.ssh(host, "systemctl stop %s@8089" % APP)
        adhoc_cleanup(lab, host, "hitless.deploy.deploy_journal", "root=%s deploy_id=%s state=done" % (ROOT, DEPLOY_ID))
    assert lab_state(lab) == before


def test_a_host_that_cannot_be_read_is_a_finding_and_the_others_are_still_read(lab, tmp_path):
    inventory = tmp_path / "inventory.yml"
    with open(lab.inventory) as handle:
        data = yaml.safe_load(handle)
    # An address of the lab's network that nothing holds.
    ghost = lab.hosts[lab.groups["app"][0]].rsplit(".", 1)[0] + ".250"
    data["all"]["children"]["app"]["hosts"]["ghost"] = {
        "ansible_host": ghost, "ansible_ssh_common_args": lab.vars["ansible_ssh_common_args"] + " -o ConnectTimeout=3"}
    inventory.write_text(yaml.safe_dump(data))
    run = status(lab, inventory=str(inventory))
    assert run.rc == 0, run.output[-3000:]
    ghost_row = run.row("ghost")
    assert ghost_row["error"].startswith("unreachable"), ghost_row
    # Unread, and not in the backend either (its server is named after it).
    assert [(f["host"], f["what"]) for f in run.published["flags"]] == [
        ("ghost", "%s was not read: %s" % (APP, ghost_row["error"])),
        (lb_hosts(lab)[0], "backend %s has no server ghost (app host ghost)" % APP)], run.published["flags"]
    for host in lab.groups["app"]:
        assert run.row(host)["instance"]["state"] == "active", run.row(host)
