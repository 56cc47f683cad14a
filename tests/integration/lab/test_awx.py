"""AWX / Automation Controller jobs, as far as they can be reproduced without AWX: ansible-runner
runs the example project docs/awx/project in a private data directory laid out as AWX lays one
out for a job (awx/main/tasks/jobs.py, RunJob), on a lab of its own (lb1 in front of app1..app4),
under the load probe and the 50 ms ``show stat`` poller. One failed request fails the test.

A job's private data directory here, as AWX writes it:

  project/                   the project checkout: a copy of docs/awx/project (its ansible.cfg
                             included: ansible-playbook runs in it)
  requirements_collections/  what the project sync installs from collections/requirements.yml,
                             on the collections path; here the collection built from this work
                             tree and installed from the tarball (there is no Galaxy offline)
  inventory/hosts            an executable printing the inventory as JSON, hosts sorted by name
                             and, for a slice of a sliced job, cut as AWX's get_script_data cuts
                             them: slice k of n gets the hosts i with i % n == k - 1, and every
                             group only the hosts of its slice
  env/extravars              the job template's extra variables, the survey's defaults and
                             answers (docs/awx/survey-rolling.json), the awx_* variables
  env/credential_vars        what a custom credential type injects: the repository token's
                             header (hitless_release_url_headers), passed with -e @file
  env/cmdline                the job template's forks, the machine credential's user
  env/ssh_key                the machine credential's key: ansible-runner hands it to an
                             ssh-agent; the inventory names no key file
  env/envvars, env/settings  collections path, SSH control path directory; the job timeout

The release comes from an artifact repository (an HTTP server of this test that wants the
token), as hitless_release_url and hitless_release_checksum. Each test deploys the release after
whichever serves (NEXT), so none depends on another having run or passed:

- one job, forks 4, serial 1. rc 0; the job events show every task of the role's steps (read
  from roles/rolling/tasks) by name for every host; the artifacts (set_stats) hold each host's
  record; the token is in no event and no output;
- slice 2 of 2 of a sliced job over the inventory as it is: lb1 sorts into slice 1, so slice 2
  has an empty haproxy group and stops in preflight, changing nothing;
- a sliced job of 2 slices started at once, the HAProxy host named by address in the job
  template (hitless_rolling_haproxy_hosts) so both slices reach it, under one probe. Both rc 0,
  one deploy lock shared by the two slices (awx_workflow_job_id), hosts of both slices swapping
  at the same time (from the records' step times), UP servers never below 4, no lock left; each
  time a host leaves the lock, every host of either slice not at its cleanup yet is still listed
  in it. A hook holds app2 (slice 2) after its route back until slice 1 is done, so slice 1
  always finishes while slice 2 still works.
"""
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _deploy  # noqa: E402
from _deploy import (NEXT, APP, FAST, LOCK_DIR, Run, base_name, check_clean,  # noqa: E402
                     check_under_load, deploy_runs, host_state, serving_release)
from _labs import REPO, BootedLab, LabError, booted_lab, ensure_releases  # noqa: E402
from _repository import serving  # noqa: E402

LAB_NAME = "awx"
APP_HOSTS = 4
DOCS = os.path.join(REPO, "docs", "awx")
PROJECT = os.path.join(DOCS, "project")
TASKS = os.path.join(REPO, "roles", "rolling", "tasks")
ENTRY_POINTS = ("stage", "swap")  # playbooks/rolling.yml's plays, in order
PHASES = ["preflight", "prepare", "clone", "route_to_clone", "upgrade", "post_start",
          "route_back", "cleanup"]
TOKEN = "hitless-awx-test-token-%d" % os.getpid()
# The job template's extra variables besides the survey: the quick settings of the other lab
# tests. The token comes from a credential (a dict: no survey answer can be one).
TEMPLATE_VARS = dict(FAST)
CREDENTIAL_VARS = {"hitless_release_url_headers": {"Authorization": "Bearer " + TOKEN}}
FORKS = 4
JOB_TIMEOUT = 300
WORKFLOW_JOB_ID = 100
SLICES = 2
# A hook of the job template (all slices get it) that holds the first host of the last slice
# after its route back until the flag file exists: the test creates it when slice 1 is done.
HOLD_HOOK = """---
- name: Hold {host} of job {job} until slice 1 is done (a test hook)
  ansible.builtin.wait_for:
    path: {flag}
    timeout: 120
  delegate_to: localhost
  become: false
  when: awx_job_id | int == {job} and inventory_hostname == "{host}"
"""

OK_EVENTS = {"runner_on_ok", "runner_item_on_ok"}
SKIPPED_EVENTS = {"runner_on_skipped", "runner_item_on_skipped"}
IMPORTS = ("ansible.builtin.import_tasks", "import_tasks")
INCLUDES = ("ansible.builtin.include_tasks", "include_tasks")


@pytest.fixture(name="alab", scope="module")
def fixture_alab():
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (overlay mounts, bridges, systemd-nspawn)")
    if os.environ.get("HITLESS_AWX_LAB"):
        # A lab already up (lab.py up --app-hosts 4): quicker to iterate on; it is left running.
        yield BootedLab("reused", os.environ["HITLESS_AWX_LAB"], None)
        return
    try:
        with booted_lab(LAB_NAME, "--app-hosts", str(APP_HOSTS), "--topology", "lb") as booted:
            yield booted
    except LabError as error:
        pytest.fail(str(error), pytrace=False)


# --- what AWX provides: the project sync, the repository, the job's directory -----------------

@pytest.fixture(name="collection", scope="module")
def fixture_collection(tmp_path_factory):
    """The collection as the project sync installs it: built (build_ignore applies, as for a
    release on Galaxy) and installed from the tarball; the requirements_collections path."""
    where = tmp_path_factory.mktemp("collection")
    galaxy = os.path.join(os.path.dirname(sys.executable), "ansible-galaxy")
    with open(os.path.join(REPO, "galaxy.yml")) as handle:
        tarball = where / ("hitless-deploy-%s.tar.gz" % yaml.safe_load(handle)["version"])
    for argv in ([galaxy, "collection", "build", "--force", "--output-path", str(where), REPO],
                 [galaxy, "collection", "install", "--force", "-p", str(where / "installed"),
                  str(tarball)]):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                              stdin=subprocess.DEVNULL, cwd=str(where))
        assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
    return str(where / "installed")


@pytest.fixture(name="control_dir", scope="module")
def fixture_control_dir():
    """The jobs' SSH control path directory, short (a socket path has at most 107 bytes)."""
    path = tempfile.mkdtemp(prefix="hd-awx-cp-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(name="repository", scope="module")
def fixture_repository():
    """An artifact repository on the controller serving $HITLESS_RELEASES to the token only
    (tests/integration/lab/_repository.py); its base URL."""
    with serving(ensure_releases(), TOKEN) as repo:
        yield repo.url("/repo")


def survey_vars(name, answers):
    """Extra variables from docs/awx/survey-NAME.json as AWX launches a job with a survey: the
    default of every question that has one, then the answers; required questions answered."""
    with open(os.path.join(DOCS, "survey-%s.json" % name)) as handle:
        questions = {q["variable"]: q for q in json.load(handle)["spec"]}
    unknown = set(answers) - set(questions)
    assert not unknown, "no survey question for %s" % sorted(unknown)
    found = {var: q["default"] for var, q in questions.items() if q.get("default") is not None}
    found.update(answers)
    missing = [var for var, q in questions.items() if q["required"] and var not in found]
    assert not missing, "required survey questions without an answer: %s" % missing
    return found


def awx_inventory(lab, slice_number=1, slice_count=1):
    """The lab's inventory as AWX's inventory script prints it (get_script_data): hosts sorted by
    name and sliced, each group with the hosts of the slice only, and no local key file (the
    machine credential brings the key)."""
    with open(lab.inventory) as handle:
        data = yaml.safe_load(handle)["all"]
    hostvars = {}
    groups = {}
    for group, body in data["children"].items():
        for host, variables in (body.get("hosts") or {}).items():
            hostvars[host] = dict(variables or {})
            groups.setdefault(group, []).append(host)
    names = sorted(hostvars)[slice_number - 1::slice_count]
    script = {"all": {"vars": {k: v for k, v in data["vars"].items()
                               if k != "ansible_ssh_private_key_file"},
                      "children": sorted(groups), "hosts": []},
              "_meta": {"hostvars": {h: hostvars[h] for h in names}}}
    for group, members in groups.items():
        if set(members) & set(names):
            script[group] = {"hosts": [h for h in members if h in names]}
    return script


def _write(path, content, mode=stat.S_IRUSR | stat.S_IWUSR):
    with open(path, "w") as handle:
        handle.write(content if isinstance(content, str) else json.dumps(content))
    os.chmod(path, mode)


class Awx:
    """What AWX brings to a job of this lab: the installed collection, the repository, the
    inventory; ``job()`` lays out a job's private data directory."""

    def __init__(self, lab, collection, control_dir, repository):
        self.lab = lab
        self.collection = collection
        self.control_dir = control_dir
        self.repository = repository

    def job_vars(self, release, **extra):
        """A rolling job's extra variables: the job template's, the survey's with the answers
        for ``release`` of the repository, then ``extra`` (the awx_* ones of a workflow)."""
        with open(os.path.join(os.environ["HITLESS_RELEASES"], release + ".tar.gz"),
                  "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        answers = {"hitless_release_url": "%s/%s.tar.gz" % (self.repository, release),
                   "hitless_release_checksum": "sha256:" + digest, "hitless_serial": "1"}
        return dict(TEMPLATE_VARS, **survey_vars("rolling", answers), **extra)

    def job(self, root, ident, extra_vars, job_slice=(1, 1), **run_args):
        """The Job ``ident`` of ``extra_vars`` on slice ``(number, count)`` of the inventory,
        its private data directory laid out under ``root``."""
        pdd = os.path.join(str(root), "job-%d" % ident)
        shutil.copytree(PROJECT, os.path.join(pdd, "project"))
        os.symlink(self.collection, os.path.join(pdd, "requirements_collections"))
        for folder in ("inventory", "env"):
            os.makedirs(os.path.join(pdd, folder))
        _write(os.path.join(pdd, "inventory", "hosts"), "#!%s\nprint(%r)\n" % (
            sys.executable, json.dumps(awx_inventory(self.lab, *job_slice))), stat.S_IRWXU)
        env = os.path.join(pdd, "env")
        _write(os.path.join(env, "extravars"),
               dict(extra_vars, awx_job_id=ident, tower_job_id=ident))
        _write(os.path.join(env, "credential_vars"), CREDENTIAL_VARS)
        _write(os.path.join(env, "cmdline"), "--forks %d -u root -e @%s" % (
            FORKS, os.path.join(env, "credential_vars")))
        with open(self.lab.key) as handle:
            _write(os.path.join(env, "ssh_key"), handle.read())
        _write(os.path.join(env, "envvars"), {
            "ANSIBLE_COLLECTIONS_PATH": os.path.join(pdd, "requirements_collections"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": self.control_dir,
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_HOST_KEY_CHECKING": "False",
        })
        _write(os.path.join(env, "settings"), {"job_timeout": JOB_TIMEOUT, "pexpect_timeout": 5})
        return Job(pdd, ident, **run_args)


@pytest.fixture(name="awx", scope="module")
def fixture_awx(alab, collection, control_dir, repository):
    return Awx(alab, collection, control_dir, repository)


class Job(Run):
    """One ``ansible-runner run`` of a job's private data directory, for _deploy.deploy_runs."""

    def __init__(self, pdd, ident, playbook="deploy.yml", **kwargs):
        super().__init__(timeout=JOB_TIMEOUT + 30, **kwargs)
        self.pdd = pdd
        self.ident = ident
        self.argv = [os.path.join(os.path.dirname(sys.executable), "ansible-runner"), "run",
                     pdd, "-p", playbook, "--ident", str(ident)]

    @property
    def artifacts(self):
        return os.path.join(self.pdd, "artifacts", str(self.ident))

    def events(self):
        """The job events, in the order the job emitted them."""
        found = []
        folder = os.path.join(self.artifacts, "job_events")
        for name in os.listdir(folder):
            with open(os.path.join(folder, name)) as handle:
                found.append(json.load(handle))
        return sorted(found, key=lambda event: event["counter"])

    def stats(self):
        stats = [e for e in self.events() if e["event"] == "playbook_on_stats"]
        assert len(stats) == 1, self.output[-3000:]
        return stats[0]["event_data"]

    def records(self):
        """Each host's deploy record from the job's artifacts (set_stats, as AWX keeps them)."""
        return self.stats()["artifact_data"].get("hitless_rolling", {})

    def status(self):
        try:
            with open(os.path.join(self.artifacts, "status")) as handle:
                return handle.read().strip()
        except OSError:
            return None


# --- what the job shows: an event for every task of the role --------------------------------

def _name_pattern(name, variables):
    """A task name as a regex: ``{{ var }}`` of an import's ``vars`` is put in, any other
    templated part matches anything."""
    def put_in(match):
        value = variables.get(match.group(1))
        return str(value) if isinstance(value, (str, int)) else "\0"

    parts = re.split(r"\{\{.*?\}\}|\0", re.sub(r"\{\{\s*(\w+)\s*\}\}", put_in, str(name)))
    return re.compile(".*".join(re.escape(part) for part in parts).strip())


def role_tasks(path=os.path.join(TASKS, "main.yml"), conditional=False, parents=(),
               variables=None):
    """Every task a task file of the role (default ``main.yml``; an entry point) runs on the way
    of a deploy that goes well, read from the task files: ``{"name", "pattern", "conditional", "run_once", "parents", "file"}``.
    Imports are followed with their ``vars`` (their tasks are the job's: phase.yml's "Record the
    start of phase {{ rolling_phase }}" is one task for each step), includes are tasks and
    followed too (their tasks run only where the include ran: ``parents``), blocks with their
    ``always``; rescue sections are not (nothing fails). ``conditional``: a ``when`` (its own or
    one of a block or an import around it) or a loop, either of which may skip it."""
    with open(path) as handle:
        entries = yaml.safe_load(handle) or []
    found = []
    for entry in entries:
        found += _entry_tasks(entry, path, conditional, parents, variables or {})
    return found


def _entry_tasks(entry, path, conditional, parents, variables):
    maybe = conditional or "when" in entry
    if "block" in entry:
        found = []
        for inner in (entry.get("block") or []) + (entry.get("always") or []):
            found += _entry_tasks(inner, path, maybe, parents, variables)
        return found
    target = next((entry[key] for key in IMPORTS + INCLUDES if key in entry), None)
    target = target.get("file") if isinstance(target, dict) else target
    if any(key in entry for key in IMPORTS):
        return role_tasks(os.path.join(TASKS, target), maybe, parents,
                          dict(variables, **(entry.get("vars") or {})))
    task = {"name": entry.get("name", ""),
            "pattern": _name_pattern(entry.get("name", ""), variables),
            "conditional": maybe or any(k == "loop" or k.startswith("with_") for k in entry),
            "run_once": bool(entry.get("run_once")), "parents": parents,
            "file": os.path.basename(path)}
    found = [task]
    if target is not None and "{{" not in target:
        # An include of a file named by a variable (a hook) has nothing to follow here.
        found += role_tasks(os.path.join(TASKS, target), False, parents + (task,))
    return found


def check_events(job, hosts):
    """Every task of role_tasks shows in the job's events for every host that ran it (whose
    includes around it ran): ``runner_on_ok`` (or one of its items) for a task without
    condition, ok or skipped for one with a condition or a loop; a run_once task for one host.
    Returns (tasks checked, events of tasks)."""
    seen = {}
    count = 0
    for event in job.events():
        if event["event"] in OK_EVENTS | SKIPPED_EVENTS:
            count += 1
            data = event["event_data"]
            seen.setdefault((data.get("host"), event["event"] in OK_EVENTS), set()).add(
                data.get("task", ""))

    def ran(task, host, skipped_too):
        names = seen.get((host, True), set())
        if skipped_too:
            names = names | seen.get((host, False), set())
        return any(task["pattern"].fullmatch(name) for name in names)

    missing = []
    # The playbook runs the role's entry points, one play each.
    tasks = [task for part in ENTRY_POINTS for task in role_tasks(os.path.join(TASKS, part + ".yml"))]
    for task in tasks:
        where = [h for h in hosts if all(ran(p, h, False) for p in task["parents"])]
        if task["run_once"]:
            # Runs on one of the hosts, for all of them.
            if where and not any(ran(task, h, task["conditional"]) for h in where):
                missing.append((task["file"], task["name"], "any of " + ", ".join(where)))
            continue
        missing += [(task["file"], task["name"], h) for h in where
                    if not ran(task, h, task["conditional"])]
    assert not missing, "tasks without their event (file, task, host): %s" % sorted(set(missing))
    return len(tasks), count


# --- checks ----------------------------------------------------------------------------------

def check_no_secret(job):
    """The token went out in a header; no job event and no output of the job shows it (AWX keeps
    both for whoever may read the job)."""
    for folder, _dirs, files in os.walk(job.artifacts):
        for name in files:
            path = os.path.join(folder, name)
            if stat.S_ISREG(os.stat(path).st_mode):
                with open(path, errors="replace") as handle:
                    assert TOKEN not in handle.read(), "%s shows the repository token" % path


def check_records(records, hosts, releases, deploy_id):
    """Each host's record in the job's artifacts: deployed ``releases`` (new, old) in PHASES."""
    assert sorted(records) == sorted(hosts), sorted(records)
    for host, record in records.items():
        assert (record["host"], record["outcome"], base_name(record["release"]),
                base_name(record["from_release"])) == (host, "deployed") + releases, record
        assert [s["step"] for s in record["steps"]] == PHASES, record["steps"]
        assert re.fullmatch(deploy_id, record["deploy_id"]), record["deploy_id"]


def marks(record):
    """``{step: epoch seconds}`` of a record, with ``end`` after its last step."""
    found = {m["step"]: float(m["at"]) for m in record["marks"]}
    found["end"] = float(record["started_at"]) + sum(s["seconds"] for s in record["steps"])
    return found


def two_clones_up(result):
    """``{LB host: number of show stat samples with two clones UP}`` (capacity n + 2)."""
    return {lb: sum(sum(n.endswith("-clone") and v.startswith("UP") for n, v in sample[2].items())
                    > 1 for sample in poller["samples"])
            for lb, poller in result.pollers.items()}


def swap_overlap(times, slices):
    """The longest time two hosts of different slices were swapping at once (from the start of
    their clone to the start of their cleanup): ``(seconds, (host, host))``."""
    first, second = slices
    return max((min(times[a]["cleanup"], times[b]["cleanup"])
                - max(times[a]["clone"], times[b]["clone"]), (a, b))
               for a in first for b in second)


class LockWatch:
    """The deploy lock on ``lb`` as each host's job reports it done (it has left the lock)."""

    def __init__(self, lab, lb):
        self.lab = lab
        self.lb = lb
        self.shots = []

    def trigger(self, host):
        """A Run trigger: the line of ``host``'s summary, reading the lock when it comes."""
        def take(_proc):
            read = self.lab.ssh(self.lb, "cat %s/%s.json" % (LOCK_DIR, APP))
            self.shots.append({"host": host, "at": time.time(),
                               "lock": json.loads(read.stdout) if read.returncode == 0 else None})
        return (r'"msg": "%s: deployed ' % re.escape(host), take)

    def left(self):
        """``[(host, hosts listed when it had left)]``."""
        return [(s["host"], (s["lock"] or {}).get("hosts")) for s in self.shots]

    def check(self, times, slices, deploy_id):
        """Every host not at its cleanup yet was listed each time (``times``: marks of every
        host); returns how many readings saw a slice done while another still swapped."""
        proofs = 0
        for shot in self.shots:
            working = {h for h, t in times.items() if t["cleanup"] > shot["at"]}
            listed = set((shot["lock"] or {}).get("hosts", []))
            assert shot["host"] not in listed and working <= listed, (shot, working)
            assert not working or shot["lock"]["deploy_id"] == deploy_id, shot
            mine = next(hosts for hosts in slices if shot["host"] in hosts)
            proofs += bool(working) and not working & set(mine)
        return proofs


# --- the tests -------------------------------------------------------------------------------

def test_one_job_deploys_under_load_with_an_event_for_every_task(alab, awx, tmp_path):
    apps = alab.groups["app"]
    assert len(apps) == APP_HOSTS and len(alab.groups["haproxy"]) == 1, alab.groups
    old = serving_release(alab)
    new = NEXT[old]
    job = awx.job(tmp_path, 101, awx.job_vars(new))
    result = deploy_runs(alab, tmp_path, [job])
    assert job.rc == 0 and job.status() == "successful", result.tail(60)
    assert (job.stats()["failures"], job.stats()["dark"]) == ({}, {}), job.stats()
    check_under_load(result, swapped=apps, app_hosts=apps)
    check_clean(alab, new)
    assert result.answered_after_end() == {(h, new) for h in apps}, result.answered_after_end()
    tasks, events = check_events(job, apps)
    records = job.records()
    # Not in a workflow: a deploy id of its own (controller, ansible-playbook pid and start).
    check_records(records, apps, (new, old), r".+-\d+-\d+")
    assert len({r["deploy_id"] for r in records.values()}) == 1, records
    # Forks 4 from the job template: every host staged at once, before the first clone.
    times = {h: marks(r) for h, r in records.items()}
    assert max(t["prepare"] for t in times.values()) < min(t["clone"] for t in times.values())
    check_no_secret(job)
    print("%s; %d task events, %d role tasks checked, artifacts hitless_rolling for %s" % (
        result.summary(), events, tasks, ", ".join(sorted(records))))


def test_a_slice_without_haproxy_host_stops_in_preflight(alab, awx, tmp_path):
    apps = alab.groups["app"]
    inventory = awx_inventory(alab, 2, SLICES)
    # AWX slices every host of the inventory, HAProxy hosts too: lb1 sorts after app4.
    assert "haproxy" not in inventory and inventory["app"]["hosts"] == apps[1::2], inventory
    assert awx_inventory(alab, 1, SLICES)["haproxy"]["hosts"] == alab.groups["haproxy"]
    before = {h: host_state(alab, h) for h in apps}
    job = awx.job(tmp_path, 99, awx.job_vars(NEXT[serving_release(alab)],
                                             awx_workflow_job_id=WORKFLOW_JOB_ID - 1),
                  (2, SLICES))
    proc = subprocess.run(job.argv, env=_deploy.ansible_env(), capture_output=True, text=True,
                          timeout=job.timeout, stdin=subprocess.DEVNULL, cwd=REPO, check=False)
    assert proc.returncode != 0 and job.status() == "failed", proc.stdout[-3000:]
    messages = {e["event_data"]["host"]: str(e["event_data"]["res"].get("msg", ""))
                for e in job.events() if e["event"] == "runner_on_failed"}
    messages = {h: m for h, m in messages.items() if m.startswith("hitless.deploy.rolling ")}
    assert sorted(messages) == apps[1::2], proc.stdout[-3000:]
    for host, message in messages.items():
        assert message.startswith("hitless.deploy.rolling failed on %s at step preflight "
                                  % host), message
        assert "rolling_haproxy_hosts must name at least one HAProxy host" in message, message
        assert "an AWX slice without it; set hitless_rolling_haproxy_hosts" in message, message
        assert message.endswith("Nothing was changed."), message
    assert {h: host_state(alab, h) for h in apps} == before
    for lb in alab.groups["haproxy"]:
        lock = alab.ssh(lb, "cat %s/%s.json" % (LOCK_DIR, APP))
        assert lock.returncode != 0, (lb, lock.stdout)
    print("slice 2 of 2 refused in preflight on %s, nothing changed" % ", ".join(messages))


def sliced_jobs(alab, awx, root, watch, release):
    """The jobs of a sliced job template, one per slice, started at once: one workflow job, the
    HAProxy hosts named by address in the template's extra variables (one slice only has them
    in its inventory), and HOLD_HOOK, which keeps the last slice at work until slice 1 is done
    (slice 1 ends while the other slice still swaps, whatever the timing)."""
    flag = os.path.join(str(root), "slice-1-done")
    last = WORKFLOW_JOB_ID + SLICES
    hook = os.path.join(str(root), "hold.yml")
    _write(hook, HOLD_HOOK.format(host=alab.groups["app"][SLICES - 1], job=last, flag=flag))
    jobs = []
    for number in range(1, SLICES + 1):
        extra = awx.job_vars(release, awx_workflow_job_id=WORKFLOW_JOB_ID,
                             awx_workflow_job_name="Deploy demo",
                             hitless_rolling_haproxy_hosts=[alab.hosts[lb]
                                                            for lb in alab.groups["haproxy"]],
                             rolling_hooks={"after_route_back": hook})
        triggers = [watch.trigger(host) for host in alab.groups["app"][number - 1::SLICES]]
        if number == 1:
            triggers.append((r"^PLAY RECAP", lambda _proc: _write(flag, "done\n")))
        jobs.append(awx.job(root, WORKFLOW_JOB_ID + number, extra, (number, SLICES),
                            triggers=triggers, wait=number == SLICES))
    return jobs


def test_two_slices_at_once_share_the_lock(alab, awx, tmp_path):
    apps = alab.groups["app"]
    slices = [apps[k::SLICES] for k in range(SLICES)]
    old = serving_release(alab)
    new = NEXT[old]
    deploy_id = "awx-workflow-%d" % WORKFLOW_JOB_ID
    watch = LockWatch(alab, alab.groups["haproxy"][0])
    jobs = sliced_jobs(alab, awx, tmp_path, watch, new)
    result = deploy_runs(alab, tmp_path, jobs)
    for job in jobs:
        assert job.rc == 0 and job.status() == "successful", job.output[-4000:]
        assert (job.stats()["failures"], job.stats()["dark"]) == ({}, {}), job.stats()
    check_under_load(result, swapped=apps, app_hosts=apps)
    check_clean(alab, new)
    assert result.answered_after_end() == {(h, new) for h in apps}, result.answered_after_end()
    times = {}
    for job, hosts in zip(jobs, slices):
        check_records(job.records(), hosts, (new, old), re.escape(deploy_id))
        times.update((h, marks(r)) for h, r in job.records().items())
    overlap, pair = swap_overlap(times, slices)
    assert overlap > 1.0, "no two hosts of the two slices swapped at once: %s" % (times,)
    assert len(watch.shots) == len(apps), watch.shots
    assert watch.check(times, slices, deploy_id), (
        "no slice was done while the other still swapped: %s" % watch.shots)
    print("%s; %s and %s swapped at once for %.1f s, samples with 2 clones UP %s, lock as "
          "hosts left it %s" % (result.summary(), pair[0], pair[1], overlap,
                                two_clones_up(result), watch.left()))
