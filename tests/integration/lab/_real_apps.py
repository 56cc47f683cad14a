"""The real apps of tests/real_apps in a lab: what test_real_apps.py needs to install one with
the role hitless.deploy.app, to look at its processes, and to judge a deploy of it under load.

Each app is a :class:`RealApp`: its builder (``build(directory)`` -> archive paths), the unit's
ExecStart, and what its processes look like (a master and its workers, or one process).
"""
import json
import os
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _deploy import APP, CLONE_PORT, PORT, ROOT, ansible_env, base_name, sh  # noqa: E402
from _labs import REPO  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "tests", "real_apps"))
import _build  # noqa: E402  (tests/real_apps/_build.py)
import build_gunicorn_release  # noqa: E402
import build_node_release  # noqa: E402
import build_uvicorn_release  # noqa: E402

RELEASES_DIR = _build.RELEASES_DIR
BuildError = _build.BuildError
# Per-app figures of the deploys, to quote (docs, reports): {app: {step: figures}}.
FIGURES = os.path.join(REPO, ".tmp", "itest", "real_apps.json")
VENV_PYTHON = ROOT + "/current/venv/bin/python"


class RealApp:
    """One real app: ``key`` names it (and its releases ``KEY-v1``, ``KEY-v2``).

    ``children`` maps a role to ``(argv test, count)``: the processes the main process must
    have as its children (each matched by the first test it passes), none other; ``main_argv``
    tests the main process's command line; ``mapped_libraries`` says whether each worker maps
    a shared object of the release (a C extension of the venv), proof that the check of the
    mapped files looked at something.
    """

    def __init__(self, key, builder, main_argv, children, mapped_libraries, needs=None):
        self.key = key
        self.builder = builder
        self.exec_start = builder.APP_EXEC_START
        self.v1, self.v2 = key + "-v1", key + "-v2"
        self.main_argv = main_argv
        self.children = children
        self.mapped_libraries = mapped_libraries
        self.needs = needs  # a program the app hosts must have (Debian's node)

    def __repr__(self):
        return "RealApp(%s)" % self.key

    def build(self):
        """``{name: path}`` of the app's two releases, built (or found up to date)."""
        paths = self.builder.build(RELEASES_DIR)
        return {os.path.basename(path)[:-len(".tar.gz")]: path for path in paths}


def _python_module(module):
    """The argv of ``venv/bin/python -m MODULE ...`` run from the release's venv."""
    return lambda argv: argv[:3] == [VENV_PYTHON, "-m", module]


def _spawned(argv):
    """A multiprocessing 'spawn' child of the venv's Python: the worker of uvicorn's
    supervisor (``spawn_main``) or the resource tracker Python starts with the first one."""
    return argv[:1] == [VENV_PYTHON] and "multiprocessing.spawn" in " ".join(argv)


def _tracker(argv):
    return argv[:1] == [VENV_PYTHON] and "multiprocessing.resource_tracker" in " ".join(argv)


GUNICORN = RealApp(
    "gunicorn", build_gunicorn_release, _python_module("gunicorn"),
    # gunicorn forks its workers: the same command line.
    {"worker": (_python_module("gunicorn"), 4)}, mapped_libraries=True)
UVICORN = RealApp(
    "uvicorn", build_uvicorn_release, _python_module("uvicorn"),
    # uvicorn's supervisor spawns each worker as a fresh interpreter (multiprocessing's
    # 'spawn'), and Python starts its resource tracker with the first.
    {"worker": (_spawned, 2), "resource tracker": (_tracker, 1)}, mapped_libraries=True)
NODE = RealApp(
    "node", build_node_release, lambda argv: argv == ["/usr/bin/node", ROOT + "/current/server.js"],
    {}, mapped_libraries=False, needs="/usr/bin/node")
APPS = {app.key: app for app in (GUNICORN, UVICORN, NODE)}


# --- installing the first release ----------------------------------------------------------

# Installs the first release as tests/lab/site.yml installs the sample app, with the real
# app's ExecStart; app_release_force because the lab starts on the sample app's v1 (or on the
# previous real app's v2).
INSTALL_PLAYBOOK = """\
- name: Install a real app's first release
  hosts: app
  gather_facts: false
  roles:
    - role: hitless.deploy.app
      vars:
        app_name: demo
        app_ports: "{{ real_ports }}"
        app_release_src: "{{ real_release_src }}"
        app_release_name: "{{ real_release_name }}"
        app_release_force: true
        app_exec_start: "{{ real_exec_start }}"
        app_environment:
          STARTUP_DELAY: "1"
"""


def install(lab, workdir, app, name, path, ports=(PORT,)):
    """Run the role hitless.deploy.app with release ``name`` (archive ``path``) of ``app`` on
    instances ``ports``; return the finished process (its output is also in WORKDIR/install.log)."""
    playbook = os.path.join(str(workdir), "install.yml")
    with open(playbook, "w") as handle:
        handle.write(INSTALL_PLAYBOOK)
    variables = {"real_release_src": path, "real_release_name": name,
                 "real_exec_start": app.exec_start, "real_ports": list(ports)}
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                           "-i", lab.inventory, playbook, "-e", json.dumps(variables)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=ansible_env(), cwd=REPO, timeout=600, check=False)
    with open(os.path.join(str(workdir), "install.log"), "w") as handle:
        handle.write(proc.stdout + proc.stderr)
    return proc


def missing_program(lab, app):
    """The app hosts that lack the program ``app`` needs (Debian's /usr/bin/node)."""
    if not app.needs:
        return []
    return [host for host in lab.groups["app"]
            if lab.ssh(host, "test -x %s" % app.needs).returncode != 0]


# --- the hosts -----------------------------------------------------------------------------

def get_json(lab, host, port, path="/"):
    address = lab.hosts[host]
    with urllib.request.urlopen("http://%s:%d%s" % (address, port, path), timeout=10) as resp:
        assert resp.status == 200, (host, port, path, resp.status)
        return json.loads(resp.read())


def save_journals(lab, workdir):
    """Each app host's journal of the app's instances, beside the probe results: when the
    processes started and stopped (gunicorn and uvicorn log every worker they start)."""
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
inside = "%(root)s/current/"
for pid in pids:
    proc = "/proc/%%d" %% pid
    cwd = os.stat(proc + "/cwd")
    seen = os.stat(proc + "/root%(root)s/current")
    with open(proc + "/cmdline", "rb") as handle:
        argv = handle.read().split(b"\0")
    with open(proc + "/stat") as handle:
        ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
    # Files of the release mapped by the process (a C extension of the venv in a worker), as
    # the process names them (under its own current): the inode each maps, and the inode of
    # the same file in the release that serves.
    mapped = {}
    with open(proc + "/maps") as handle:
        for line in handle:
            fields = line.split(None, 5)
            if len(fields) == 6 and fields[5].strip().startswith(inside):
                path = fields[5].strip()
                try:
                    want = os.stat(release + "/" + path[len(inside):]).st_ino
                except OSError:
                    want = None
                mapped[path] = [int(fields[4]), want]
    out["procs"].append({"pid": pid, "ppid": ppid, "argv": [a.decode() for a in argv if a],
                         "cwd": os.readlink(proc + "/cwd"), "cwd_id": [cwd.st_dev, cwd.st_ino],
                         "current_id": [seen.st_dev, seen.st_ino], "mapped": mapped})
print(json.dumps(out))
"""


def processes(lab, host, app=APP, port=PORT):
    """Every process of instance ``app@port`` on ``host`` (see PROCESSES)."""
    # As lab.ssh, with the script on standard input.
    proc = subprocess.run(
        ["ssh", "-i", lab.key, "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "ConnectTimeout=5", "root@" + lab.hosts[host], "python3 -"],
        input=PROCESSES % {"app": app, "port": port, "root": "/srv/" + app}, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, (host, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


def check_processes(lab, host, app, release, name=APP, port=PORT):
    """Every process of the original instance on ``host`` (``name@port``) is one ``app``
    expects and runs from ``release``: its working directory, the ``current`` it sees, and the
    release's files it has mapped."""
    state = processes(lab, host, name, port)
    assert base_name(os.path.basename(state["release"])) == release, state["release"]
    procs = state["procs"]
    summary = (host, [(p["pid"], p["ppid"], p["argv"]) for p in procs])
    master = [p for p in procs if p["pid"] == state["main"]]
    assert len(master) == 1 and app.main_argv(master[0]["argv"]), summary
    roles = {}
    for proc in procs:
        if proc is master[0]:
            continue
        assert proc["ppid"] == state["main"], ("not a child of the main process", summary)
        role = next((name for name, (test, _count) in app.children.items()
                     if test(proc["argv"])), None)
        assert role is not None, ("an unexpected process", proc["argv"], summary)
        roles.setdefault(role, []).append(proc)
    assert {name: len(found) for name, found in roles.items()} == {
        name: count for name, (_test, count) in app.children.items()}, summary
    for proc in procs:
        where = (host, proc["pid"], proc["cwd"], state["release"])
        assert proc["cwd_id"] == state["release_id"], where
        assert proc["current_id"] == state["release_id"], where
        for path, (inode, want) in proc["mapped"].items():
            assert inode == want, (host, proc["pid"], path, inode, want)
    if app.mapped_libraries:
        # The Python workers import a C extension of the venv (markupsafe's speedups under
        # Flask, pydantic-core under FastAPI): proof that the check looked.
        for worker in roles["worker"]:
            assert any("site-packages" in path for path in worker["mapped"]), (host, worker)
    return state


# --- judging a deploy ----------------------------------------------------------------------

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
    events = [e for p in result.probes.values() for e in p["sse"]["log"]]
    assert events and all(e[2] is not None for e in events), (
        "SSE events without a dependency", [e for e in events if e[2] is None][:5])


def check_sse(result, app_hosts, versions):
    """The SSE client of each probe stayed connected across the deploy: every reconnect
    succeeded, each stream came from one instance of one release, and the events went from
    release to release in order: ``versions`` (``("v1", "v2")`` for a deploy, ``("v2",)``
    for a re-run) are the releases the stream saw, its first event from the first, its last
    from the last; on each original instance, no event of an earlier release came after one of
    a later release (a stream reconnects every few seconds, to whichever server HAProxy picks:
    an instance may have served none). A clone serves only the first release."""
    rank = {version: number for number, version in enumerate(versions)}
    for lb, probe in result.probes.items():
        sse = probe["sse"]
        assert sse["errors"] == 0 and sse["connects"] > 0, (lb, {k: v for k, v in sse.items()
                                                                 if k != "log"})
        log = sorted(sse["log"], key=lambda event: event[0])
        assert log, (lb, "no SSE event")
        assert set(sse["versions"]) == set(versions), (lb, sse["versions"], versions)
        assert (log[0][1], log[-1][1]) == (versions[0], versions[-1]), (lb, log[0], log[-1])
        streams = {}
        for _t, version, _dependency, host, port, stream in log:
            streams.setdefault(stream, set()).add((host, port, version))
        split = {stream: seen for stream, seen in streams.items() if len(seen) != 1}
        assert not split, (lb, "streams that changed instance or release", split)
        for host in app_hosts:
            clone = {e[1] for e in log if (e[3], e[4]) == (host, CLONE_PORT)}
            assert clone <= {versions[0]}, (lb, host, "clone events", clone)
            mine = [e for e in log if (e[3], e[4]) == (host, PORT)]
            highest = 0
            for event in mine:
                assert rank[event[1]] >= highest, (
                    lb, host, "an SSE event of %s after one of %s" % (
                        event[1], versions[highest]), event)
                highest = rank[event[1]]


def figures(result):
    """What to quote of a deploy under load."""
    pollers = [p["min_up"] for p in result.pollers.values() if p["min_up"] is not None]
    sse = [p["sse"] for p in result.probes.values()]
    versions = {}
    for stats in sse:
        for version, count in stats["versions"].items():
            versions[version] = versions.get(version, 0) + count
    return {
        "rc": result.rc,
        "requests": result.requests,
        "failed": result.failed,
        "mixed": sum(p["mixed"] for p in result.probes.values()),
        "min_up": min(pollers) if pollers else None,
        "wall_s": round(result.seconds, 1),
        "by_version": result.by_version,
        "by_instance": result.by_instance,
        "sse": {"events": sum(s["events"] for s in sse),
                "connects": sum(s["connects"] for s in sse),
                "errors": sum(s["errors"] for s in sse),
                "mixed": sum(s["mixed"] for s in sse),
                "versions": versions,
                "order": sse_order(result)},
    }


def sse_order(result):
    """The versions each probe's SSE events came from, runs collapsed: ``{lb: "v1 v2"}``."""
    order = {}
    for lb, probe in result.probes.items():
        runs = []
        for event in sorted(probe["sse"]["log"], key=lambda e: e[0]):
            if not runs or runs[-1] != event[1]:
                runs.append(event[1])
        order[lb] = " ".join(str(v) for v in runs)
    return order


def record_figures(app, step, values):
    """Merge ``values`` into FIGURES under ``app`` and ``step`` (a file several runs share;
    each step's latest figures win)."""
    os.makedirs(os.path.dirname(FIGURES), exist_ok=True)
    try:
        with open(FIGURES) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        data = {}
    data.setdefault(app.key, {})[step] = dict(values, recorded=time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), test=os.environ.get("PYTEST_CURRENT_TEST", "")
        .rsplit(" (", 1)[0])
    tmp = FIGURES + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    os.replace(tmp, FIGURES)


def main_pids(lab, app_hosts):
    return {h: sh(lab, h, "systemctl show -P MainPID %s@%d" % (APP, PORT)) for h in app_hosts}
