"""``hitless.deploy.status`` on a lab with background workers, for tests/integration/lab/test_workers.py.

Not a test module: the lab test calls these with its own lab (the app ``demo`` with workers
installed by tests/lab/site.yml). Each leaves the lab as it found it.

- :func:`check_workers_shown`: every worker is shown active on the release its process really
  runs (checked over ssh by the inode of its working directory), no overlap, no finding.
- :func:`check_worker_findings`: a worker on another release, an overlap left running, a listed
  worker not started and a worker nobody listed are each shown; the first three are flagged in
  their exact words, and the printed fixes, run as printed, leave the fleet consistent.
"""
import json
import os
import re
import shlex
import subprocess
import time
import xml.etree.ElementTree as ET

from _deploy import APP, BIN, REPO, ROOT, ansible_env, current_dir, sh  # noqa: E402
from _workers import runs_in  # noqa: E402

UNIT = APP + "-worker"


def status(lab, workers, *args):
    """The status playbook with ``rolling_workers``: (rc, output, what set_stats published)."""
    env = dict(ansible_env(), ANSIBLE_SHOW_CUSTOM_STATS="True")
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", lab.inventory, "hitless.deploy.status",
                           "-e", json.dumps({"rolling_workers": list(workers)})] + list(args),
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=180,
                          stdin=subprocess.DEVNULL, check=False)
    output = proc.stdout + proc.stderr
    found = re.search(r"^\s*RUN: (\{.*\})\s*$", output, re.M)
    return proc.returncode, output, json.loads(found.group(1))["hitless_status"] if found else None


def workers_of(published, host):
    row = next(r for r in published["apps"] if r["host"] == host)
    return {w["id"]: w for w in row["workers"]}


def check_workers_shown(lab, host, workers, tmp_path):
    """After a deploy: each worker active on current, as its process really runs, nothing else."""
    picture = tmp_path / "status-workers.svg"
    rc, output, published = status(lab, workers, "-e", "hitless_status_picture=%s" % picture)
    assert rc == 0 and published, output[-3000:]
    assert published["consistent"], published["flags"]
    current = current_dir(lab, host)
    shown = workers_of(published, host)
    assert list(shown) == list(workers), shown
    for worker in workers:
        seen = shown[worker]
        assert (seen["unit"], seen["state"], seen["listed"]) == (unit(worker), "active", True), seen
        assert seen["release"] == runs_in(lab, host, unit(worker)) == current, (seen, current)
        assert (seen["overlap"]["state"], seen["overlap"]["pinned"]) == ("inactive", None), seen
        assert re.search(r'"%s\s+%s\s+%s@%s\s+active\s+%s\s+-"' % (host, APP, UNIT, worker, re.escape(current)),
                         output), output[-3000:]
    drawn = ET.parse(str(picture)).getroot()
    text = " ".join(t.text or "" for t in drawn.iter("{http://www.w3.org/2000/svg}text"))
    assert "workers" in text and all("%s %s" % (w, current) in text for w in workers), text
    return published


def _adhoc(lab, host, module, args):
    proc = subprocess.run([os.path.join(BIN, "ansible"), "-i", lab.inventory, host, "-m", module, "-a", args],
                          capture_output=True, text=True, env=ansible_env(), cwd=REPO, timeout=180,
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, (module, args, proc.stdout[-3000:], proc.stderr[-2000:])


def unit(worker):
    return "%s@%s.service" % (UNIT, worker)


def check_worker_findings(lab, host, workers):
    """With ``workers`` (two or more, all running current) as the deploy lists them, plus one
    more listed but never started and one running that nobody lists: the findings and fixes."""
    first, second = workers[0], workers[1]
    stopped, unlisted = "s9", "u9"
    current = current_dir(lab, host)
    copy = current + "-status-copy"
    listed = list(workers) + [stopped]
    try:
        # The second worker restarted while current named a copy, the first one's overlap
        # started (as a deploy's post_start does) and left, a worker nobody lists.
        # (Type=simple: the restart returns before the process has its view of current, so
        # current moves back once the process works in the copy.)
        sh(lab, host, "cd %s && cp -a releases/%s releases/%s && ln -sfn releases/%s current && systemctl restart %s"
                      % (ROOT, current, copy, copy, unit(second)))
        deadline = time.time() + 30
        while runs_in(lab, host, unit(second)) != copy and time.time() < deadline:
            time.sleep(0.2)
        sh(lab, host, "cd %s && ln -sfn releases/%s current && systemctl start %s" % (ROOT, current, unit(unlisted)))
        _adhoc(lab, host, "hitless.deploy.app_worker", "unit=%s workers=%s release_path=%s/releases/%s state=overlapped"
               % (UNIT, first, ROOT, current))
        rc, output, published = status(lab, listed)
        assert rc == 0 and published, output[-3000:]
        shown = workers_of(published, host)
        assert list(shown) == listed + [unlisted], shown
        assert shown[second]["release"] == runs_in(lab, host, unit(second)) == copy, shown[second]
        assert (shown[unlisted]["listed"], shown[unlisted]["release"]) == (False, current), shown[unlisted]
        assert (shown[first]["overlap"]["state"], shown[first]["overlap"]["release"],
                shown[first]["overlap"]["pinned"]) == ("active", current, current), shown[first]
        move = ("ansible %s -m hitless.deploy.app_worker -a 'unit=%s workers=%%s release_path=%s/releases/%s'"
                % (host, UNIT, ROOT, current))
        assert sorted((f["what"], f["fix"]) for f in published["flags"]) == sorted([
            ("overlap %s is active (release %s) with no deploy under way" % (unit(first + "-next"), current),
             move % first + " (the worker runs current first, then the overlap stops and its pin goes)"),
            ("worker %s runs release %s but current is %s" % (unit(second), copy, current),
             "move it to current behind an overlap: " + move % second),
            ("worker %s is inactive" % unit(stopped),
             "see journalctl -u %s, then systemctl start %s (it starts on current, %s)"
             % (unit(stopped), unit(stopped), current))]), published["flags"]
        unlisted_row = r'"%s\s+%s\s+%s@%s \(unlisted\)\s+active\s+%s\s+-"' % (host, APP, UNIT, unlisted, re.escape(current))
        assert re.search(unlisted_row, output), output[-3000:]
        # The fixes, run as printed.
        for fix in re.findall(r"(ansible \S+ -m hitless\.deploy\.app_worker -a '[^']+')", output):
            argv = shlex.split(fix)
            _adhoc(lab, argv[1], argv[3], argv[5])
        assert "systemctl start %s" % unit(stopped) in output
        sh(lab, host, "systemctl start %s" % unit(stopped))
        rc, output, published = status(lab, listed)
        assert rc == 0 and published["consistent"], published["flags"]
        assert runs_in(lab, host, unit(second)) == current
        assert sh(lab, host, "ls /run/systemd/system | grep -c %s || true" % UNIT) == "0"
    finally:
        lab.ssh(host, "cd %s && ln -sfn releases/%s current; systemctl stop %s %s %s; "
                      "rm -rf /run/systemd/system/%s; systemctl daemon-reload"
                % (ROOT, current, unit(stopped), unit(unlisted), unit(first + "-next"), unit(first + "-next") + ".d"))
        # The second worker back on current if a fix did not get there.
        if runs_in(lab, host, unit(second)) != current:
            lab.ssh(host, "systemctl restart %s" % unit(second))
        lab.ssh(host, "rm -rf %s/releases/%s" % (ROOT, copy))
    rc, output, published = status(lab, workers)
    assert rc == 0 and published["consistent"], published["flags"]
