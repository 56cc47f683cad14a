# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The on-host journal of a rolling deploy, and the reads a deploy starts from.

``<root>/.hitless/journal.json`` records the deploy of one host step by step: what served
before (release, real path, ``previous``), what is being deployed, and each step entered, each
written BEFORE the step acts, so after an interruption the journal says what may have been
done. It is written atomically (temporary file, fsync, rename, fsync of the directory): a
controller killed at any moment leaves the old journal or the new one, never half of one. When
the deploy ends (done, rolled back or repaired) it moves to ``journal-last.json``.

``observe`` gathers in one call what preflight and repair need to know of the host: the links,
free space, and for each port the unit, which release its main process really runs (its working
directory, resolved when it started) and who listens on the port.
Pure stdlib; runs on the target (Python >= 3.9).
"""

import json
import os
import time

from ansible_collections.hitless.deploy.plugins.module_utils import _release_index
from ansible_collections.hitless.deploy.plugins.module_utils._atomic import fsync_dir, write_json
from ansible_collections.hitless.deploy.plugins.module_utils._listeners import (
    describe, listeners, process_cwd)

STATES = ("step", "done")
JOURNAL = "journal.json"
LAST = "journal-last.json"
_SHOW = ("ActiveState", "SubState", "MainPID", "Result", "BindReadOnlyPaths", "TemporaryFileSystem")


class JournalError(Exception):
    def __init__(self, msg, param=None):
        super(JournalError, self).__init__(msg)
        self.msg = msg
        self.param = param


def state_dir(root):
    return os.path.join(root, ".hitless")


def read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (IOError, OSError):
        return None
    except ValueError as e:
        raise JournalError("%s is not valid JSON (%s); move it away after checking the host" % (path, e))


def write_atomically(path, data):
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    write_json(path, data)


def link_name(path):
    """Basename of the release a ``current``/``previous`` link names, or None."""
    if not os.path.islink(path):
        return None
    return os.path.basename(os.readlink(path).rstrip("/")) or None


def free_mb(root):
    path = root
    while not os.path.exists(path):
        path = os.path.dirname(path) or "/"
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize // (1024 * 1024)


def fixed_view(props, root):
    """True when the unit, as systemd loaded it, gives its instances their own view of ``root``:
    a temporary file system over it and a release bound onto ``root/current``
    (plugins/module_utils/_pin.py). Without it an instance sees ``current`` move under it."""
    root = os.path.normpath(root)
    current = os.path.join(root, "current")
    hidden = [entry.split(":")[0] for entry in (props.get("TemporaryFileSystem") or "").split()]
    bound = [entry.split(":")[1] for entry in (props.get("BindReadOnlyPaths") or "").split()
             if entry.count(":") >= 1]
    return root in hidden and current in bound


def instance(show, name, port, releases_dir, proc="/proc"):
    """What runs as ``name@port``, which release it really runs, and who listens on the port."""
    unit = "%s@%d.service" % (name, port)
    props = show(unit)
    pid = int(props.get("MainPID") or 0)
    cwd = process_cwd(pid, proc, releases_dir) if pid else None
    running = None
    if cwd and os.path.dirname(cwd) == os.path.realpath(releases_dir):
        running = os.path.basename(cwd)
    found = listeners(port, proc)
    foreign = [entry for entry in found if entry.get("unit") != unit]
    return {
        "unit": unit,
        "active_state": props.get("ActiveState"),
        "sub_state": props.get("SubState"),
        "main_pid": pid,
        "running_path": cwd,
        "running_release": running,
        "listeners": found,
        "foreign_listeners": [describe(entry) for entry in foreign],
        "fixed_view": fixed_view(props, os.path.dirname(releases_dir)),
    }


def observe(root, name, ports, show, proc="/proc"):
    kept = _release_index.index(root)
    return {
        "current": link_name(os.path.join(root, "current")),
        "current_is_link": os.path.islink(os.path.join(root, "current")),
        "previous": link_name(os.path.join(root, "previous")),
        "free_mb": free_mb(root),
        "releases": kept["releases"],
        "bad": kept["bad"],
        "instances": dict((str(port), instance(show, name, port, os.path.join(root, "releases"), proc))
                          for port in ports),
    }


def record(journal, params, now):
    """The journal after entering ``params['step']``."""
    deploy_id, step = params.get("deploy_id"), params.get("step")
    if not deploy_id:
        raise JournalError("deploy_id is required with state step", "deploy_id")
    if not step:
        raise JournalError("step is required with state step", "step")
    if journal is not None and journal.get("deploy_id") != deploy_id:
        if not params.get("replace"):
            raise JournalError("the journal of deploy %s (step %s) is still open on this host; "
                               "repair it first (run the rolling playbook with --tags repair)"
                               % (journal.get("deploy_id"), journal.get("step")), "deploy_id")
        journal = None
    journal = dict(journal or {"deploy_id": deploy_id, "started": now, "steps": []})
    journal.update(params.get("data") or {})
    journal["steps"] = list(journal.get("steps", [])) + [{"step": step, "at": now}]
    journal["step"] = step
    journal["updated"] = now
    return journal


def recorded_instances(journal):
    """The instances an open journal says its deploy acts on, each {port, clone_port, server,
    clone} (a name not recorded is None): a repair converges those, whatever the reader's own
    variables name. A journal from before several instances per host names one port and its
    clone at its top level."""
    if not isinstance(journal, dict):
        return []
    found = []
    for instance in journal.get("instances") or [journal]:
        try:
            found.append({"port": int(instance["port"]), "clone_port": int(instance["clone_port"]),
                          "server": instance.get("server"), "clone": instance.get("clone")})
        except (AttributeError, KeyError, TypeError, ValueError):
            continue
    return found


def recorded_ports(journal):
    """The ports of :func:`recorded_instances`, each instance's then its clone's."""
    return [port for instance in recorded_instances(journal)
            for port in (instance["port"], instance["clone_port"])]


def read(params, show, proc="/proc"):
    """What ``deploy_journal_info`` returns: the open journal, the last closed one, the host,
    observed on ``params['ports']`` and on those the open journal recorded."""
    root = params["root"]
    path = os.path.join(state_dir(root), JOURNAL)
    journal = read_json(path)
    ports = []
    for port in list(params.get("ports") or []) + recorded_ports(journal):
        if port not in ports:
            ports.append(port)
    return {"changed": False, "path": path, "journal": journal,
            "last": read_json(os.path.join(state_dir(root), LAST)),
            "host": observe(root, params["name"], ports, show, proc)}


def run(params, check_mode, clock=time.time):
    """Carry out one task of ``deploy_journal`` (state step or done); ``read`` is the reader."""
    root = params["root"]
    path = os.path.join(state_dir(root), JOURNAL)
    before = read_json(path)
    state = params["state"]
    result = {"changed": False, "path": path, "journal": before}
    if state == "step":
        after = record(before, params, round(clock(), 3))
        if not check_mode:
            write_atomically(path, after)
        result.update(changed=True, journal=after)
    elif before is not None:
        if params.get("deploy_id") and before.get("deploy_id") != params["deploy_id"]:
            raise JournalError("the journal on this host belongs to deploy %s, not %s"
                               % (before.get("deploy_id"), params["deploy_id"]), "deploy_id")
        closed = dict(before, step="done", outcome=params.get("outcome") or "done",
                      ended=round(clock(), 3))
        closed.update(params.get("data") or {})
        if not check_mode:
            write_atomically(os.path.join(state_dir(root), LAST), closed)
            os.unlink(path)
            fsync_dir(state_dir(root))
        result.update(changed=True, journal=None, last=closed)
    result["diff"] = {"before": before or {}, "after": result["journal"] or {}}
    return result


SHOW_ARGS = ["show", "--property=" + ",".join(_SHOW), "--"]
