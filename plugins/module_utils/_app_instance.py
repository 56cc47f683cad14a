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

DROP_IN = "hitless-pin.conf"
RUNTIME_DIR = "/run/systemd/system"
_UNIT_PREFIX = re.compile(r"^[A-Za-z0-9:_.\\-]+$")
_PROPERTIES = ("Id", "LoadState", "ActiveState", "SubState", "MainPID", "Result",
               "DropInPaths", "NeedDaemonReload")
# States in which a start job would be a no-op or is already under way.
RUNNING = ("active", "activating", "reloading")


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


def _escape(value):
    # Unit files expand %-specifiers; a literal % must be doubled.
    return value.replace("%", "%%")


def resolve_release(release_path):
    """Real path of the release directory, as the host sees it."""
    real = os.path.realpath(release_path)
    if not os.path.isdir(real):
        raise InstanceError("release_path %s does not exist on the host or is not a directory"
                            % release_path, "release_path")
    if any(ord(c) < 32 for c in real) or real.endswith("\\"):
        raise InstanceError("release_path %r cannot be written into a unit file" % real, "release_path")
    return real


def drop_in_content(real, environment_file):
    release = os.path.basename(real).replace("\\", "\\\\").replace('"', '\\"')
    return "\n".join([
        "# Managed by hitless.deploy.app_instance: pins this instance to one release.",
        "[Service]",
        "WorkingDirectory=%s" % _escape(real),
        # An empty assignment drops the template's EnvironmentFile= (which follows current).
        "EnvironmentFile=",
        "EnvironmentFile=-%s" % _escape(os.path.join(real, environment_file)),
        'Environment="HITLESS_RELEASE=%s"' % _escape(release),
        "",
    ])


def pinned_to(content):
    """The ``WorkingDirectory=`` a drop-in sets, or None."""
    if content is None:
        return None
    value = None
    for line in content.splitlines():
        if line.startswith("WorkingDirectory="):
            value = line.split("=", 1)[1].replace("%%", "%") or None
    return value


def read_file(path):
    try:
        with open(path) as f:
            return f.read()
    except (IOError, OSError):
        return None


def write_drop_in(path, content):
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(content)
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)


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


def wait_ready(systemctl, unit, host, port, timeout, probe=port_open, sleep=time.sleep, clock=time.monotonic):
    """Until ``host:port`` accepts a connection while the unit is up; fail early if it dies."""
    deadline = clock() + timeout
    while True:
        accepting = probe(host, port)
        props = systemctl.show(unit)
        if _died(props):
            journal = systemctl.journal(unit)
            raise InstanceError("%s died while starting (ActiveState=%s, SubState=%s, Result=%s)%s"
                                % (unit, props.get("ActiveState"), props.get("SubState"),
                                   props.get("Result"), "; last log lines:\n" + journal if journal else ""),
                                unit_state=props)
        if accepting:
            return props
        if clock() >= deadline:
            raise InstanceError("%s did not accept connections on %s:%d within %s s (wait_timeout)"
                                % (unit, host, port, timeout), "wait_timeout", unit_state=props)
        sleep(0.25)


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
        elif action != "reset-failed":
            systemctl.call(action, "--", unit)
    # A stop can itself leave the unit failed (non-zero exit); absent clears that too.
    if absent and systemctl.show(unit).get("ActiveState") == "failed":
        systemctl.call("reset-failed", "--", unit)


def ensure(params, systemctl, check_mode, probe=port_open, sleep=time.sleep, clock=time.monotonic):
    """Carry out one task of the ``app_instance`` module; return its result (without ``failed``)."""
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
            want = drop_in_content(resolve_release(params["release_path"]), params["environment_file"])
        if want != before_content:
            actions.append("write" if want is not None else "remove")
        if want != before_content or _needs_reload(props, path, want is not None):
            actions.append("daemon-reload")
        running = props.get("ActiveState") in RUNNING
        if state == "restarted":
            actions.append("restart")
        elif state == "started" and not running:
            actions.append("start")
        elif state == "started" and "daemon-reload" in actions:
            actions.append("restart")
        elif state == "stopped" and running:
            actions.append("stop")

    if not check_mode:
        _apply(systemctl, unit, path, want, actions, absent=state == "absent")
        if params.get("wait", True) and ("start" in actions or "restart" in actions):
            wait_ready(systemctl, unit, params.get("wait_host") or "127.0.0.1", params["port"],
                       params.get("wait_timeout", 60), probe=probe, sleep=sleep, clock=clock)
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
    return {
        "changed": bool(actions),
        "unit": unit,
        "active_state": props.get("ActiveState"),
        "sub_state": props.get("SubState"),
        "main_pid": int(props.get("MainPID") or 0),
        "pinned_to": pinned_to(after_content),
        "drop_in": path,
        "actions": actions,
        "diff": {"before": before, "after": after},
    }
