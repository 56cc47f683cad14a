# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One instance ``<name>@<port>.service`` of a systemd template unit, optionally pinned to a release.

The pin is a runtime drop-in (``/run/systemd/system/<unit>.d/hitless-pin.conf``), so a clone
never survives a reboot. systemctl is reached through a small :class:`Systemctl` wrapper around
a ``run(argv) -> (rc, stdout, stderr)`` callable, which unit tests replace by a fake.
Pure stdlib; runs on the target (Python >= 3.9).
"""

import os
import re
import socket
import time

from ansible_collections.hitless.deploy.plugins.module_utils import _listeners
from ansible_collections.hitless.deploy.plugins.module_utils._atomic import write_file
from ansible_collections.hitless.deploy.plugins.module_utils._deadline import Deadline, Retry, TimedOut, retry_until
from ansible_collections.hitless.deploy.plugins.module_utils._pin import (  # noqa: F401 (re-exported)
    DROP_IN, RUNTIME_DIR, drop_in_content, pinned_to, unsafe_path)

_UNIT_PREFIX = re.compile(r"^[A-Za-z0-9:_.\\-]+$")
_PROPERTIES = ("Id", "LoadState", "ActiveState", "SubState", "MainPID", "Result",
               "DropInPaths", "NeedDaemonReload", "ControlGroup", "NRestarts", "WorkingDirectory")
# States in which a start job would be a no-op or is already under way.
RUNNING = ("active", "activating", "reloading")
# A look is a local connect, a systemctl show and a /proc read: cheap enough that a wait ends
# within a tenth of a second of the instance coming up.
POLL_INTERVAL = 0.1


# The options of app_instance, also the instance part of app_move.
ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    port=dict(type="int", required=True),
    state=dict(type="str", default="started", choices=["started", "stopped", "restarted", "absent"]),
    release_path=dict(type="path"),
    environment_file=dict(type="str", default=".env"),
    original_port=dict(type="int"),
    wait=dict(type="bool", default=True),
    wait_host=dict(type="str", default="127.0.0.1"),
    wait_timeout=dict(type="int", default=60),
    runtime_dir=dict(type="path", default="/run/systemd/system"),
)


class InstanceError(Exception):
    """A refusal or failure; ``param`` names the module option at fault."""

    def __init__(self, msg, param=None, unit_state=None):
        super(InstanceError, self).__init__(msg)
        self.msg = msg
        self.param = param
        self.unit_state = unit_state


class Systemctl(object):
    def __init__(self, run, systemctl="systemctl", journalctl="journalctl"):
        self._run = run
        self._systemctl = systemctl
        self._journalctl = journalctl

    def call(self, *args):
        rc, out, err = self._run([self._systemctl] + list(args))
        if rc != 0:
            raise InstanceError("systemctl %s failed (rc=%s): %s" % (" ".join(args), rc, (err or out).strip()))
        return out

    def show(self, unit):
        out = self.call("show", "--property=" + ",".join(_PROPERTIES), "--", unit)
        return parse_show(out)

    def template_exists(self, name):
        rc, out, err = self._run([self._systemctl, "cat", "--", "%s@.service" % name])
        return rc == 0

    def journal(self, unit, lines=20):
        rc, out, err = self._run([self._journalctl, "--no-pager", "-o", "cat", "-n", str(lines), "-u", unit])
        return out.strip() if rc == 0 else ""


def module_systemctl(module, required=True):
    """The Systemctl of an AnsibleModule: its run_command, with no pager and the C locale."""
    return Systemctl(
        lambda argv: module.run_command(argv, environ_update={"SYSTEMD_PAGER": "", "LC_ALL": "C"}),
        systemctl=module.get_bin_path("systemctl", required=required) or "systemctl",
        journalctl=module.get_bin_path("journalctl") or "journalctl",
    )


def failure(error):
    """fail_json's arguments for an InstanceError: the message, prefixed with its parameter
    when it does not start with it, the parameter, and the unit's state when it is known."""
    msg = error.msg if not error.param or error.msg.startswith(error.param) else "%s: %s" % (error.param, error.msg)
    result = {"msg": msg, "param": error.param}
    if error.unit_state:
        result.update(active_state=error.unit_state.get("ActiveState"), sub_state=error.unit_state.get("SubState"))
    return result


def parse_show(text):
    props = {}
    for line in text.splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            props[key] = value
    return props


def unit_name(name, port):
    return "%s@%d.service" % (name, port)


def check_params(params):
    name = params["name"]
    port = params["port"]
    if not name or not _UNIT_PREFIX.match(name):
        raise InstanceError("name %r is not a valid template unit prefix (letters, digits, ':', '_', "
                            "'.', '-'; no '@')" % name, "name")
    if not 1 <= port <= 65535:
        raise InstanceError("port %d is out of range 1-65535" % port, "port")
    if params.get("original_port") is not None and params["original_port"] == port:
        raise InstanceError("port %d is the original instance's port (original_port); a clone must "
                            "listen on another port" % port, "port")
    env = params.get("environment_file") or ""
    if not env or env.startswith("/") or ".." in env.split("/") or any(ord(c) < 32 for c in env):
        raise InstanceError("environment_file %r must be a relative path inside the release" % env,
                            "environment_file")
    if params.get("wait_timeout", 60) <= 0:
        raise InstanceError("wait_timeout must be positive", "wait_timeout")


def resolve_release(release_path):
    """``(root, real path)`` of the release directory ``ROOT/releases/NAME``, as the host sees it.

    ``root`` is taken from the path as given when it has that form (the path the unit names,
    even where ``ROOT`` is itself a link), else from the real path.
    """
    real = os.path.realpath(release_path)
    if not os.path.isdir(real):
        raise InstanceError("release_path %s does not exist on the host or is not a directory"
                            % release_path, "release_path")
    given = os.path.normpath(release_path)
    if os.path.basename(os.path.dirname(given)) == "releases":
        root = os.path.dirname(os.path.dirname(given))
    elif os.path.basename(os.path.dirname(real)) == "releases":
        root = os.path.dirname(os.path.dirname(real))
    else:
        raise InstanceError("release_path %s is not a release directory ROOT/releases/NAME "
                            "(its real path is %s)" % (release_path, real), "release_path")
    for path in (root, real):
        if unsafe_path(path):
            raise InstanceError("release_path %r cannot be written into a unit's mount settings "
                                "(blanks, quotes, backslashes, colons and control characters are "
                                "refused)" % path, "release_path")
    return root, real


def releases_of(props):
    """The releases directory the unit's ``WorkingDirectory=`` (``ROOT/current``) leads into,
    where the release an instance runs is looked up (it may no longer be where current points)."""
    workdir = (props.get("WorkingDirectory") or "").lstrip("-")
    if not workdir.startswith("/"):
        return None
    return os.path.dirname(os.path.realpath(workdir))


def read_file(path):
    try:
        with open(path) as f:
            return f.read()
    except (IOError, OSError):
        return None


def write_drop_in(path, content):
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    write_file(path, content)


def remove_drop_in(path):
    os.unlink(path)
    try:
        os.rmdir(os.path.dirname(path))
    except OSError:
        pass  # other drop-ins (not ours) live there


def port_open(host, port, timeout=1.0):
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except (OSError, socket.error):
        return False
    sock.close()
    return True


def _died(props):
    return props.get("ActiveState") in ("failed", "inactive") or props.get("SubState") == "auto-restart"


def _crash_looped(props):
    """True when systemd restarted the unit by itself: a start now may hit its start limit.
    NRestarts: between two automatic restarts the unit looks active for a moment."""
    return (props.get("ActiveState") == "failed" or props.get("SubState") == "auto-restart"
            or props.get("NRestarts", "0") not in ("", "0"))


def _death(systemctl, unit, props):
    journal = systemctl.journal(unit)
    return InstanceError("%s died while starting (ActiveState=%s, SubState=%s, Result=%s)%s"
                         % (unit, props.get("ActiveState"), props.get("SubState"), props.get("Result"),
                            "; last log lines:\n" + journal if journal else ""),
                         unit_state=props)


def _within(path, group):
    """True if cgroup ``path`` is the unit's ``group`` or below it (a ``Delegate=yes`` sub-cgroup)."""
    return bool(path and group) and (path == group or path.startswith(group.rstrip("/") + "/"))


def holders(port, props, proc="/proc"):
    """The listeners on ``port`` split into ``(own, foreign)`` for the unit described by ``props``.

    A listener is the unit's own when its process is in the unit's cgroup (``ControlGroup``).
    This is preferred to comparing unit names (``_listeners.unit_of``): a name is not unique, a
    user manager (``user@1000.service/.../demo@8081.service``) or a nested container can run a
    unit of the same name, while a cgroup path is the identity systemd itself uses.
    """
    own, foreign = [], []
    for entry in _listeners.listeners(port, proc):
        path = _listeners.cgroup_path(entry["pid"], proc)
        if path is None:
            continue  # exited since it was listed: it holds nothing any more
        (own if _within(path, props.get("ControlGroup")) else foreign).append(entry)
    return own, foreign


def _describe_all(entries):
    return " and ".join(_listeners.describe(e) for e in entries)


def _held_by(port, unit, who, props):
    return InstanceError("port %d is held by %s, not by %s; stop it or choose another clone port"
                         % (port, who, unit), "port", unit_state=props)


def refuse_foreign(unit, port, props, proc="/proc"):
    """Fail if anything but the unit listens on ``port``; nothing is changed before this check."""
    own, foreign = holders(port, props, proc)
    if foreign:
        raise _held_by(port, unit, _describe_all(foreign), props)
    # A LISTEN socket with no visible process: only a foreign one when the unit is not running
    # (without root, other users' fds cannot be read, the unit's own included).
    if not own and props.get("ActiveState") not in RUNNING and _listeners.listening_inodes(port, proc):
        raise _held_by(port, unit, "a process whose /proc entry cannot be read (not run as root?)", props)


def _not_ready(unit, host, port, accepting, own, props):
    if props.get("ActiveState") != "active" or props.get("SubState") != "running":
        return "%s is not running yet (ActiveState=%s, SubState=%s)" % (
            unit, props.get("ActiveState"), props.get("SubState"))
    if not own:
        return "no process of %s listens on port %d" % (unit, port)
    if not accepting:
        return "%s does not accept connections on %s:%d" % (unit, host, port)
    return None


def wait_ready(systemctl, unit, host, port, timeout, probe=port_open, sleep=time.sleep, clock=time.monotonic,
               proc="/proc", poll=POLL_INTERVAL):
    """Until the unit runs, its own process listens on ``port`` and ``host:port`` accepts.

    A connection alone proves nothing: a stray process can answer on the port while the unit
    crash-loops on "address in use". So it fails at once when the unit dies or when a process
    outside the unit listens on the port, and only waits while the unit is still coming up.
    """
    def look():
        accepting = probe(host, port)
        props = systemctl.show(unit)
        own, foreign = holders(port, props, proc)
        # A stray holding the port is the likely reason the unit dies: name it first.
        if foreign:
            raise _held_by(port, unit, _describe_all(foreign), props)
        if _died(props):
            raise _death(systemctl, unit, props)
        reason = _not_ready(unit, host, port, accepting, own, props)
        if reason is not None:
            raise Retry(reason, props)
        return props

    try:
        return retry_until(look, Deadline(timeout, clock), poll, sleep=sleep)
    except TimedOut as e:
        raise InstanceError("%s not ready within %s s (wait_timeout): %s" % (unit, timeout, e.reason),
                            "wait_timeout", unit_state=e.value)


def _needs_reload(props, path, want_pin):
    loaded = path in props.get("DropInPaths", "").split()
    return props.get("NeedDaemonReload") == "yes" or loaded != want_pin


def _apply(systemctl, unit, path, want, actions, absent):
    for action in actions:
        if action == "write":
            write_drop_in(path, want)
        elif action == "remove":
            remove_drop_in(path)
        elif action == "daemon-reload":
            systemctl.call("daemon-reload")
        elif action == "reset-failed":
            if not absent:
                systemctl.call("reset-failed", "--", unit)
        else:
            systemctl.call(action, "--", unit)
    # A stop can itself leave the unit failed (non-zero exit); absent clears that too.
    if absent and systemctl.show(unit).get("ActiveState") == "failed":
        systemctl.call("reset-failed", "--", unit)


def ensure(params, systemctl, check_mode, probe=port_open, sleep=time.sleep, clock=time.monotonic, proc="/proc",
           poll=POLL_INTERVAL):
    """Carry out one task of the ``app_instance`` module; return its result (without ``failed``).

    ``proc`` is the procfs root the listeners and the running release are read from (for tests).
    """
    check_params(params)
    state = params["state"]
    unit = unit_name(params["name"], params["port"])
    path = os.path.join(params.get("runtime_dir") or RUNTIME_DIR, unit + ".d", DROP_IN)
    before_content = read_file(path)
    props = systemctl.show(unit)
    before = {"active_state": props.get("ActiveState"), "pinned_to": pinned_to(before_content),
              "drop_in": before_content}
    if state in ("started", "restarted") and not systemctl.template_exists(params["name"]):
        raise InstanceError("name: template unit %s@.service does not exist on the host" % params["name"],
                            "name")

    actions = []
    if state == "absent":
        want = None
        if props.get("ActiveState") in RUNNING + ("deactivating",):
            actions.append("stop")
        if before_content is not None:
            actions.append("remove")
        if before_content is not None or props.get("NeedDaemonReload") == "yes":
            actions.append("daemon-reload")
        if props.get("ActiveState") == "failed":
            actions.append("reset-failed")
    else:
        want = None
        if params.get("release_path"):
            root, real = resolve_release(params["release_path"])
            want = drop_in_content(real, params["environment_file"], root)
        if want != before_content:
            actions.append("write" if want is not None else "remove")
        if want != before_content or _needs_reload(props, path, want is not None):
            actions.append("daemon-reload")
        running = props.get("ActiveState") in RUNNING
        if state == "restarted":
            start = "restart"
        elif state == "started" and not running:
            start = "start"
        elif state == "started" and "daemon-reload" in actions:
            start = "restart"
        else:
            start = None
        # A release that died at start and was restarted by systemd may have hit the start
        # limit ("start request repeated too quickly"): cleared first, so the start that rolls
        # back is not refused.
        if start:
            actions += ["reset-failed", start] if _crash_looped(props) else [start]
        elif state == "stopped" and running:
            actions.append("stop")

    starts = "start" in actions or "restart" in actions
    wait = params.get("wait", True)
    # Before any change: a unit started onto a port another process holds crash-loops on
    # "address in use" while the stray answers. An instance already up is checked too when
    # waiting (a cheap /proc read), so a re-run never accepts a foreign listener either.
    if state in ("started", "restarted") and (starts or wait):
        refuse_foreign(unit, params["port"], props, proc)

    if not check_mode:
        _apply(systemctl, unit, path, want, actions, absent=state == "absent")
        if wait and starts:
            wait_ready(systemctl, unit, params.get("wait_host") or "127.0.0.1", params["port"],
                       params.get("wait_timeout", 60), probe=probe, sleep=sleep, clock=clock, proc=proc,
                       poll=poll)
        props = systemctl.show(unit)
        after_content = read_file(path)
    else:
        after_content = want
        if "start" in actions or "restart" in actions:
            props = dict(props, ActiveState="active", SubState="running")
        elif "stop" in actions or "reset-failed" in actions:
            props = dict(props, ActiveState="inactive", SubState="dead", MainPID="0")
    after = {"active_state": props.get("ActiveState"), "pinned_to": pinned_to(after_content),
             "drop_in": after_content}
    main_pid = int(props.get("MainPID") or 0)
    # The directory the process started in, i.e. the release it really serves, whatever the pin
    # or current say now (a pin change without a restart, current moved since the start).
    running_path = _listeners.process_cwd(main_pid, proc, releases_of(props)) if main_pid else None
    return {
        "changed": bool(actions),
        "unit": unit,
        "active_state": props.get("ActiveState"),
        "sub_state": props.get("SubState"),
        "main_pid": main_pid,
        "pinned_to": pinned_to(after_content),
        "running_release_path": running_path,
        "running_release": os.path.basename(running_path) if running_path else None,
        "listeners": _listeners.listeners(params["port"], proc),
        "drop_in": path,
        "actions": actions,
        "diff": {"before": before, "after": after},
    }
