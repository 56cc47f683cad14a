"""hitless.deploy.app_instance on a real lab host: a clone pinned to a release outlives a switch
of ``current``; ``absent`` leaves no trace; bad input changes nothing.

Relies on the app role having installed ``demo@.service`` and release v1 as ``current`` with
``demo@8080`` running. Restores ``current`` -> v1 and removes its clones afterwards.
"""
import json
import os
import shlex
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _ansible import run_module  # noqa: E402

HOST = "app1"
ROOT = "/srv/demo"
ORIGINAL = 8080
CLONE = 8081
UNPINNED = 8082
CRASHING = 8083
RUNTIME = "/run/systemd/system"


def drop_in(port):
    return "%s/demo@%d.service.d/hitless-pin.conf" % (RUNTIME, port)


def module(lab, name, args, check=False):
    return run_module(name, args, inventory=lab.inventory, host=HOST, check=check, diff=True)


def instance(lab, check=False, **args):
    args.setdefault("name", "demo")
    args.setdefault("port", CLONE)
    return module(lab, "app_instance", args, check=check)


def sh(lab, command):
    proc = lab.ssh(HOST, command)
    assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
    return proc.stdout.strip()


def unit_state(lab, port):
    out = sh(lab, "systemctl show -p ActiveState,SubState,MainPID demo@%d.service" % port)
    return dict(line.split("=", 1) for line in out.splitlines())


def get(lab, port):
    """``GET /`` on the host itself (the image has no curl)."""
    code = ("import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:%d/', timeout=5)"
            ".read().decode())" % port)
    return json.loads(sh(lab, "python3 -c " + shlex.quote(code)))


def view(lab, pid):
    """The release ``ROOT/current`` holds as process ``pid`` sees it (its mount namespace)."""
    return json.loads(sh(lab, "cat /proc/%d/root%s/current/release.json" % (pid, ROOT)))["version"]


def port_accepts(lab, port):
    code = "import socket; socket.create_connection(('127.0.0.1', %d), timeout=2).close()" % port
    return lab.ssh(HOST, "python3 -c " + shlex.quote(code)).returncode == 0


def converge(lab, **args):
    """check (changed, host untouched) -> apply (changed) -> check, apply (not changed)."""
    before = (unit_state(lab, args.get("port", CLONE)), lab.ssh(HOST, "cat " + drop_in(args.get("port", CLONE))).stdout)
    checked = instance(lab, check=True, **args)
    assert not checked.failed and checked.changed, checked
    assert (unit_state(lab, args.get("port", CLONE)),
            lab.ssh(HOST, "cat " + drop_in(args.get("port", CLONE))).stdout) == before
    applied = instance(lab, **args)
    assert not applied.failed and applied.changed, applied
    assert applied["actions"] == checked["actions"]
    assert applied["diff"]["after"]["pinned_to"] == checked["diff"]["after"]["pinned_to"]
    for check in (True, False):
        again = instance(lab, check=check, **args)
        assert not again.failed and not again.changed, again
    return applied


@pytest.fixture(scope="module")
def app1(lab):
    v1 = sh(lab, "realpath %s/current" % ROOT)
    assert v1 == ROOT + "/releases/v1", "the app role should leave current on v1, found " + v1
    yield lab
    # Put the host back as the other lab tests expect it, whatever happened above.
    ports = " ".join("demo@%d.service" % p for p in (CLONE, UNPINNED, CRASHING))
    lab.ssh(HOST, "systemctl stop %s; rm -rf %s; systemctl daemon-reload; systemctl reset-failed %s; "
                  "ln -sfn releases/v1 %s/.current-restore && mv -T %s/.current-restore %s/current; "
                  "rm -rf %s/releases/crash"
            % (ports, " ".join(os.path.dirname(drop_in(p)) for p in (CLONE, UNPINNED, CRASHING)),
               ports, ROOT, ROOT, ROOT, ROOT))


@pytest.mark.parametrize("args,param", [
    ({"port": CLONE, "original_port": CLONE, "release_path": ROOT + "/releases/v1"}, "port"),
    ({"port": 70000}, "port"),
    ({"name": "nosuchapp"}, "name"),
    ({"release_path": ROOT + "/releases/nosuch"}, "release_path"),
])
def test_bad_input_fails_and_changes_nothing(app1, args, param):
    for check in (True, False):
        res = instance(app1, check=check, **args)
        assert res.failed and res["param"] == param and param in res["msg"], res
    assert unit_state(app1, CLONE)["ActiveState"] == "inactive"
    assert app1.ssh(HOST, "test -e " + os.path.dirname(drop_in(CLONE))).returncode == 1


def test_clone_stays_on_its_release_when_current_moves(app1):
    # Pinned through the `current` symlink: the module must resolve it on the host, once.
    res = converge(app1, original_port=ORIGINAL, release_path=ROOT + "/current")
    assert res["pinned_to"] == ROOT + "/releases/v1"
    assert res["active_state"] == "active" and res["main_pid"] > 0
    assert res["actions"] == ["write", "daemon-reload", "start"]
    assert port_accepts(app1, CLONE)
    served = get(app1, CLONE)
    assert (served["version"], served["port"], served["pid"]) == ("v1", CLONE, res["main_pid"])
    text = sh(app1, "cat " + drop_in(CLONE))
    assert "BindReadOnlyPaths=%s/releases/v1:%s/current\n" % (ROOT, ROOT) in text
    assert 'Environment="HITLESS_RELEASE=v1"' in text

    switched = module(app1, "release", {
        "root": ROOT, "name": "v2", "src": os.path.join(os.environ["HITLESS_RELEASES"], "v2.tar.gz"),
        "owner": "root", "group": "demo", "state": "current"})
    assert not switched.failed and switched.changed, switched
    assert (switched["current"], switched["previous"]) == ("v2", "v1")

    # Same pin asked again: nothing to do, even though current moved.
    again = instance(app1, original_port=ORIGINAL, release_path=ROOT + "/releases/v1")
    assert not again.failed and not again.changed, again
    restarted = instance(app1, state="restarted", original_port=ORIGINAL, release_path=ROOT + "/releases/v1")
    assert not restarted.failed and restarted.changed and restarted["main_pid"] != res["main_pid"]
    served = get(app1, CLONE)
    assert (served["version"], served["pid"]) == ("v1", restarted["main_pid"])

    # Without a pin the same template follows current: the pin is what keeps the clone on v1.
    unpinned = instance(app1, port=UNPINNED, original_port=ORIGINAL)
    assert not unpinned.failed and unpinned.changed and unpinned["pinned_to"] is None, unpinned
    assert get(app1, UNPINNED)["version"] == "v2"
    assert view(app1, unpinned["main_pid"]) == "v2"

    # current moves on while both run: neither sees it. Each process's own view of
    # ROOT/current (read through /proc/PID/root, i.e. its mount namespace) keeps its release,
    # and the module finds that release from the directory's identity, not from the link.
    back = module(app1, "release", {"root": ROOT, "name": "v1", "state": "current"})
    assert not back.failed and back["current"] == "v1", back
    for port, pid, release in ((UNPINNED, unpinned["main_pid"], "v2"), (CLONE, restarted["main_pid"], "v1")):
        assert view(app1, pid) == release
        seen = instance(app1, port=port, original_port=ORIGINAL,
                        **({"release_path": ROOT + "/releases/v1"} if port == CLONE else {}))
        assert not seen.failed and not seen.changed, seen
        assert (seen["main_pid"], seen["running_release"]) == (pid, release), seen
    # Only a restart takes the release current names now.
    again = instance(app1, port=UNPINNED, state="restarted", original_port=ORIGINAL)
    assert not again.failed and again["running_release"] == "v1", again
    assert view(app1, again["main_pid"]) == "v1" and get(app1, UNPINNED)["version"] == "v1"
    gone = instance(app1, port=UNPINNED, state="absent")
    assert not gone.failed and gone.changed, gone


def test_absent_removes_drop_in_and_unit_state(app1):
    assert unit_state(app1, CLONE)["ActiveState"] == "active"
    res = converge(app1, state="absent")
    assert res["actions"] == ["stop", "remove", "daemon-reload"]
    assert unit_state(app1, CLONE) == {"ActiveState": "inactive", "SubState": "dead", "MainPID": "0"}
    assert app1.ssh(HOST, "test -e " + os.path.dirname(drop_in(CLONE))).returncode == 1
    assert "demo@%d" % CLONE not in sh(app1, "systemctl list-units --all --plain --no-legend 'demo@*'")
    assert not port_accepts(app1, CLONE)
    assert get(app1, ORIGINAL)["version"] == "v1"  # the original was never touched


def test_crashing_release_fails_fast(app1):
    crash = module(app1, "release", {
        "root": ROOT, "name": "crash", "src": os.path.join(os.environ["HITLESS_RELEASES"], "crash.tar.gz"),
        "owner": "root", "group": "demo"})
    assert not crash.failed, crash
    started = time.monotonic()
    res = instance(app1, port=CRASHING, release_path=ROOT + "/releases/crash", wait_timeout=60)
    assert res.failed and "died while starting" in res["msg"], res
    assert time.monotonic() - started < 30
    cleaned = instance(app1, port=CRASHING, state="absent")
    assert not cleaned.failed and cleaned.changed, cleaned
    assert "demo@%d" % CRASHING not in sh(app1, "systemctl list-units --all --plain --no-legend 'demo@*'")
    removed = module(app1, "release", {"root": ROOT, "name": "crash", "state": "absent"})
    assert not removed.failed and removed.changed, removed
