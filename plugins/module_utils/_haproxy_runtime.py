# -*- coding: utf-8 -*-
# Copyright: hitless.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client for the HAProxy runtime API (the stats socket) and parsers for its answers.

Stdlib only, with no import from Ansible: the modules use it, and the haproxy role also ships
this very file to the HAProxy host, where its state saver (roles/haproxy/files/haproxy_state.py)
imports it outside Ansible. Runs with Python >= 3.9. Each command uses its own connection
(HAProxy's non-interactive mode: one command, one answer, then HAProxy closes).
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import csv
import errno
import ipaddress
import os
import re
import socket
import stat
import time

# Check results that mean "the last health check passed" (L7OKC: passed, but the server asked
# for no new sessions, e.g. http-check disable-on-404).
PASSING_CHECKS = frozenset(("L4OK", "L6OK", "L7OK", "L7OKC"))

# srv_admin_state bits (include/haproxy/server-t.h).
ADMF_FMAINT = 0x01
ADMF_IMAINT = 0x02
ADMF_CMAINT = 0x04
ADMF_FDRAIN = 0x08
ADMF_IDRAIN = 0x10
ADMF_RMAINT = 0x20
# CMAINT only records that the configuration said `disabled`; it stays set after the server
# is put in drain or ready, so it is not part of HAProxy's own SRV_ADMF_MAINT mask either.
ADMIN_MAINT_MASK = ADMF_FMAINT | ADMF_IMAINT | ADMF_RMAINT
ADMIN_DRAIN_MASK = ADMF_FDRAIN | ADMF_IDRAIN

# srv_check_state bits (include/haproxy/check-t.h).
CHK_ST_INPROGRESS = 0x01
CHK_ST_CONFIGURED = 0x02
CHK_ST_ENABLED = 0x04

OP_STATES = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}

# Algorithms that always accept dynamic servers in 2.6; hash-based ones do only with
# `hash-type consistent`, which the runtime API does not show.
DYNAMIC_ALGOS = frozenset(("roundrobin", "leastconn", "first", "random"))

# Names HAProxy accepts for proxies and servers; anything else could smuggle a second
# command into a runtime API line (';' separates commands, a newline ends one).
NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")

STAT_INT_FIELDS = frozenset((
    "qcur", "qmax", "scur", "smax", "slim", "stot", "bin", "bout", "dreq", "dresp", "ereq",
    "econ", "eresp", "wretr", "wredis", "weight", "act", "bck", "chkfail", "chkdown",
    "lastchg", "downtime", "qlimit", "pid", "iid", "sid", "throttle", "lbtot", "tracked",
    "type", "rate", "rate_lim", "rate_max", "check_code", "check_duration", "hrsp_1xx",
    "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other", "hanafail", "req_rate",
    "req_rate_max", "req_tot", "cli_abrt", "srv_abrt", "lastsess", "qtime", "ctime", "rtime",
    "ttime", "check_rise", "check_fall", "check_health", "agent_rise", "agent_fall",
    "agent_health", "conn_rate", "conn_rate_max", "conn_tot", "srv_icur", "src_ilim",
    "idle_conn_cur", "safe_conn_cur", "used_conn_cur", "need_conn_est", "uweight",
))

STATE_STR_FIELDS = frozenset((
    "be_name", "srv_name", "srv_addr", "srv_fqdn", "srvrecord", "srv_check_addr",
    "srv_agent_addr",
))


class HAProxyRuntimeError(Exception):
    """Anything that went wrong talking to HAProxy."""


class SocketError(HAProxyRuntimeError):
    """The runtime API could not be reached or did not answer in time."""


class NotRunningError(SocketError):
    """Nobody listens on the runtime API: the unix socket is missing or refuses connections."""


class CommandError(HAProxyRuntimeError):
    """HAProxy refused a command or answered something unexpected."""

    def __init__(self, command, answer):
        self.command = command
        self.answer = answer
        HAProxyRuntimeError.__init__(
            self, "HAProxy refused %r: %s" % (command, answer or "(no answer)"))


class NotFoundError(HAProxyRuntimeError):
    """A backend or server that does not exist; ``kind`` is 'backend' or 'server'."""

    def __init__(self, kind, name):
        self.kind = kind
        self.name = name
        HAProxyRuntimeError.__init__(self, "%s %r not found" % (kind, name))


def runtime_error_message(error, socket_option="socket"):
    """What a module says when talking to HAProxy failed: a missing backend or server as the
    option that named it (``backend: backend app does not exist``), an unreachable runtime API
    as the option that points at it, anything else as HAProxy's own words."""
    if isinstance(error, NotFoundError):
        return "%s: %s %s does not exist" % (error.kind, error.kind, error.name)
    if isinstance(error, SocketError):
        return "%s: %s" % (socket_option, error)
    return str(error)


def parse_socket_spec(spec):
    """``spec`` -> ('unix', path) or ('tcp', (host, port)); ValueError if it is neither.

    Anything holding a '/' is a path; otherwise ``host:port`` or ``[ipv6]:port``.
    """
    if not spec or not isinstance(spec, str):
        raise ValueError("must be a unix socket path or host:port")
    if "/" in spec:
        return "unix", spec
    m = re.match(r"^\[([0-9A-Fa-f:.]+)\]:(\d+)$", spec) or re.match(r"^([^:\s]+):(\d+)$", spec)
    if not m:
        raise ValueError("%r is neither a unix socket path (with a '/') nor host:port" % spec)
    port = int(m.group(2))
    if not 1 <= port <= 65535:
        raise ValueError("port %d of %r is outside 1-65535" % (port, spec))
    return "tcp", (m.group(1), port)


def check_socket_path(path):
    """Raise ValueError unless ``path`` exists and is a unix socket."""
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise ValueError("%s does not exist" % path)
        raise ValueError("cannot stat %s: %s" % (path, e.strerror))
    if not stat.S_ISSOCK(st.st_mode):
        raise ValueError("%s is not a unix socket" % path)


def open_client(spec, timeout):
    """A :class:`RuntimeClient` for module options; ValueError names the bad option."""
    try:
        kind, address = parse_socket_spec(spec)
        if kind == "unix":
            check_socket_path(address)
    except ValueError as e:
        raise ValueError("socket: %s" % e)
    if timeout is None or timeout <= 0:
        raise ValueError("timeout: must be more than 0 seconds")
    # Modules wait for a restarting HAProxy as long as for a slow answer.
    return RuntimeClient(spec, timeout=timeout, restart_wait=timeout)


# `set server B/S ssl` without its on/off argument is refused by HAProxy 2.6 (built with
# OpenSSL, as Debian's is) before it changes anything, and the first refusal it checks for is
# the one for a server added at runtime. Measured on 2.6.12: a dynamic server answers
# "'set server <srv> ssl' not supported on dynamic servers"; a server from the configuration
# answers "'set server <srv> ssl' cannot be set. ..." (no ssl settings) or "... expects 'on' or
# 'off'." (ssl settings). Nothing else in 2.6's runtime API tells them apart: `show stat` and
# `show servers state` list both alike, and `del server` deletes both.
DYNAMIC_PROBE = "set server %s/%s ssl"
DYNAMIC_ANSWER = "not supported on dynamic servers"
CONFIGURED_ANSWER_PREFIX = "'set server <srv> ssl'"


def classify_dynamic_probe(answer):
    """The answer to :data:`DYNAMIC_PROBE` -> True (dynamic), False (configured) or None."""
    answer = (answer or "").strip()
    if DYNAMIC_ANSWER in answer:
        return True
    if answer.startswith(CONFIGURED_ANSWER_PREFIX):
        return False
    # "No such server.", a build without OpenSSL ("server ssl setting not supported."), or a
    # version that words it otherwise: unknown.
    return None


def _default_connect(kind, address, timeout):
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except Exception:
            sock.close()
            raise
        return sock
    sock = socket.create_connection(address, timeout=timeout)
    sock.settimeout(timeout)
    return sock


class RuntimeClient:
    """Sends runtime API commands to one HAProxy process."""

    def __init__(self, spec, timeout=5.0, connect=None, restart_wait=0.0, sleep=time.sleep,
                 clock=time.monotonic):
        self.spec = spec
        self.kind, self.address = parse_socket_spec(spec)
        self.timeout = timeout
        self.restart_wait = restart_wait
        self._connect = connect or _default_connect
        self._sleep = sleep
        self._clock = clock

    def _open(self):
        # A restart (`systemctl restart haproxy`, what a package upgrade runs) leaves the
        # socket refusing for a fraction of a second. Nothing was sent yet, so waiting up to
        # `restart_wait` for the new process is always safe.
        deadline = self._clock() + self.restart_wait
        pause = 0.05
        while True:
            try:
                return self._connect(self.kind, self.address, self.timeout)
            except (FileNotFoundError, ConnectionRefusedError) as e:
                if self._clock() + pause > deadline:
                    raise NotRunningError("cannot connect to HAProxy runtime API at %s%s: %s"
                                          % (self.spec, self._waited(), e))
            except (OSError, socket.timeout) as e:
                raise SocketError("cannot connect to HAProxy runtime API at %s: %s" % (self.spec, e))
            self._sleep(pause)
            pause = min(pause * 2, 0.5)

    def _waited(self):
        return " (for %ss)" % self.restart_wait if self.restart_wait else ""

    def command(self, command):
        """Send one command; return HAProxy's answer, stripped of surrounding blank lines."""
        if "\n" in command or "\r" in command:
            raise ValueError("a runtime command must be one line")
        sock = self._open()
        try:
            sock.sendall((command + "\n").encode("utf-8"))
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except socket.timeout:
            raise SocketError("HAProxy runtime API at %s did not answer %r within %ss"
                              % (self.spec, command, self.timeout))
        except OSError as e:
            raise SocketError("HAProxy runtime API at %s failed on %r: %s"
                              % (self.spec, command, e))
        finally:
            sock.close()
        return b"".join(chunks).decode("utf-8", "replace").strip()

    def run(self, command, success=()):
        """Send a write command; raise CommandError unless the answer is empty or known good.

        ``success`` holds prefixes of the answers that mean success for this command.
        """
        answer = self.command(command)
        if not answer or any(answer.startswith(s) for s in success):
            return answer
        raise CommandError(command, answer)

    def show_stat(self, backend=None):
        if backend is None:
            text = self.command("show stat")
        else:
            # 6 = backend and server rows only; -1 = every server.
            text = self.command("show stat %s 6 -1" % backend)
            if text.startswith("No such proxy"):
                raise NotFoundError("backend", backend)
        return parse_stat_csv(text)

    def show_servers_state(self, backend=None):
        text = self.command("show servers state" + ("" if backend is None else " " + backend))
        if backend is not None and text.startswith("Can't find backend"):
            raise NotFoundError("backend", backend)
        return parse_servers_state(text)

    def backends(self, backend=None, probe_dynamic=False):
        """Backends with their servers, as :func:`merge_backends` builds them.

        With ``probe_dynamic``, each server's ``dynamic`` is filled in by :meth:`is_dynamic`
        (one more command per server); otherwise it stays None.
        """
        stats = self.show_stat(backend)
        states = self.show_servers_state(backend)
        result = merge_backends(stats, states)
        if backend is not None and backend not in result:
            # A frontend-only proxy of that name answers with no backend row.
            raise NotFoundError("backend", backend)
        if probe_dynamic:
            for name, entry in result.items():
                for view in entry["servers"].values():
                    view["dynamic"] = self.is_dynamic(name, view["name"])
        return result

    def backend(self, name, probe_dynamic=False):
        return self.backends(name, probe_dynamic)[name]

    def is_dynamic(self, backend, server):
        """True for a server added at runtime, False for one from the configuration, None when
        HAProxy's answer does not tell (see :data:`DYNAMIC_PROBE`). Changes nothing."""
        if not (NAME_RE.match(backend or "") and NAME_RE.match(server or "")):
            raise ValueError("not a valid HAProxy name: %r/%r" % (backend, server))
        return classify_dynamic_probe(self.command(DYNAMIC_PROBE % (backend, server)))

    def info(self):
        """``show info`` as {name: value} (strings)."""
        result = {}
        for line in self.command("show info").splitlines():
            if ":" in line:
                name, value = line.split(":", 1)
                result[name.strip()] = value.strip()
        return result

    def version(self):
        return self.info().get("Version")

    def worker_pid(self):
        """Pid of the process answering (in master-worker mode, the current worker)."""
        pid = self.info().get("Pid")
        if pid is None or not pid.isdigit():
            raise HAProxyRuntimeError("show info answered without a Pid")
        return int(pid)


def _stat_value(name, raw):
    if raw == "":
        return None
    if name in STAT_INT_FIELDS:
        try:
            return int(raw)
        except ValueError:
            return raw
    return raw


def parse_stat_csv(text):
    """``show stat`` CSV -> list of dicts keyed by the header's names (never by position)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# "):
        raise HAProxyRuntimeError("unexpected answer to show stat: %r" % text[:200])
    header = next(csv.reader([lines[0][2:]]))
    rows = []
    for values in csv.reader(lines[1:]):
        row = {}
        for name, raw in zip(header, values):
            if name and name != "-":
                row[name] = _stat_value(name, raw)
        rows.append(row)
    return rows


def parse_servers_state(text):
    """``show servers state`` (format version 1) -> list of dicts keyed by the header's names."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or lines[0].strip() != "1":
        raise HAProxyRuntimeError("unexpected answer to show servers state: %r" % text[:200])
    if len(lines) < 2 or not lines[1].startswith("#"):
        raise HAProxyRuntimeError("show servers state answered without a header: %r" % text[:200])
    header = lines[1].lstrip("#").split()
    rows = []
    for line in lines[2:]:
        row = {}
        for name, raw in zip(header, line.split()):
            if name in STATE_STR_FIELDS:
                row[name] = None if raw == "-" else raw
            else:
                try:
                    row[name] = int(raw)
                except ValueError:
                    row[name] = raw
        rows.append(row)
    return rows


def admin_state(flags):
    """srv_admin_state bitmask -> 'maint', 'drain' or 'ready'."""
    if flags & ADMIN_MAINT_MASK:
        return "maint"
    if flags & ADMIN_DRAIN_MASK:
        return "drain"
    return "ready"


# Answers a server gave, whatever their class: a server that only fails still had traffic.
RESPONSE_FIELDS = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")


def server_counters(stat_row):
    """A server's counters for judging it (hitless.deploy.canary_verdict): answers, 5xx, the
    moving averages of response and total time (ms), failed checks, times it was chosen."""
    def num(field):
        value = stat_row.get(field)
        return value if isinstance(value, int) else 0
    return {
        "responses": sum(num(f) for f in RESPONSE_FIELDS),
        "errors": num("hrsp_5xx"),
        "rtime": num("rtime"),
        "ttime": num("ttime"),
        "failed_checks": num("chkfail"),
        "selected": num("lbtot"),
    }


def server_view(stat_row, state_row):
    """One server as the modules report it, from its ``show stat`` and servers state rows."""
    check_flags = state_row.get("srv_check_state") or 0
    configured = bool(check_flags & CHK_ST_CONFIGURED)
    enabled = bool(check_flags & CHK_ST_ENABLED)
    raw_check = stat_row.get("check_status") or ""
    in_progress = raw_check.startswith("* ")
    check_status = raw_check[2:] if in_progress else raw_check
    admin = admin_state(state_row.get("srv_admin_state") or 0)
    view = {
        "backend": stat_row.get("pxname"),
        "name": stat_row.get("svname"),
        "status": stat_row.get("status"),
        "op_state": OP_STATES.get(state_row.get("srv_op_state"), "unknown"),
        "admin_state": admin,
        "address": state_row.get("srv_addr"),
        "port": state_row.get("srv_port"),
        "weight": state_row.get("srv_uweight"),
        "scur": stat_row.get("scur") or 0,
        "qcur": stat_row.get("qcur") or 0,
        "stot": stat_row.get("stot") or 0,
        "check_configured": configured,
        "check_enabled": enabled,
        "check_in_progress": in_progress,
        "check_status": check_status or None,
        # HAProxy 2.6 shows the last check's status while the next runs, but a code of 0.
        "check_code": None if in_progress else stat_row.get("check_code"),
        "check_desc": stat_row.get("check_desc"),
        "last_check": stat_row.get("last_chk"),
        "check_health": stat_row.get("check_health"),
        "check_rise": stat_row.get("check_rise"),
        "check_fall": stat_row.get("check_fall"),
        # Filled in by RuntimeClient.is_dynamic when asked for (None: not known).
        "dynamic": None,
        "counters": server_counters(stat_row),
    }
    view["check_passing"] = check_status in PASSING_CHECKS
    view["fully_risen"] = fully_risen(view)
    view["ready"] = (view["status"] == "UP" and admin == "ready" and enabled
                     and view["check_passing"] and view["fully_risen"])
    return view


def fully_risen(view):
    """True when the health counter is at its top: every recent check passed.

    ``status`` without an ``a/b`` fraction says the same; the counter is checked too so a
    status string HAProxy may word differently cannot fool it.
    """
    status = view.get("status") or ""
    if " " in status:
        return False
    health, rise, fall = view.get("check_health"), view.get("check_rise"), view.get("check_fall")
    if None in (health, rise, fall):
        return False
    return health >= rise + fall - 1


def merge_backends(stat_rows, state_rows):
    """Join both listings into {backend: {name, algo, status, servers: {name: view}}}.

    A server missing from one listing (added or deleted between the two reads) is left out.
    """
    states = {}
    for row in state_rows:
        states[(row.get("be_name"), row.get("srv_name"))] = row
    result = {}
    for row in stat_rows:
        px, sv = row.get("pxname"), row.get("svname")
        if sv == "FRONTEND":
            continue
        entry = result.setdefault(px, {"name": px, "algo": None, "status": None, "servers": {}})
        if sv == "BACKEND":
            entry["algo"] = row.get("algo")
            entry["status"] = row.get("status")
            continue
        state = states.get((px, sv))
        if state is not None:
            entry["servers"][sv] = server_view(row, state)
    return result


def same_address(configured, saved):
    """Whether a saved address is the configured one; a host name matches any address."""
    try:
        return ipaddress.ip_address(configured) == ipaddress.ip_address(saved)
    except ValueError:
        # A host name: HAProxy resolves it itself; only the port can be compared.
        return True


def filter_servers_state(text, servers):
    """Keep the lines of a ``show servers state`` answer that the next configuration may load.

    HAProxy applies a saved address and port over the configuration's, so the line of a server
    whose address or port the configuration changed would undo that change: it is dropped, as
    are the lines of servers the configuration does not declare (dynamic servers, removed
    ones). ``servers`` lists what the configuration declares, as dicts with ``backend``,
    ``server``, ``address``, ``port`` and ``slot``; a slot's line is kept whatever its address,
    since the deploy moves slots at runtime (``set server addr``) and a reload must not move
    one back while it serves. Returns (text to save, kept ["be/srv"], dropped ["be/srv"]).
    """
    lines = text.splitlines()
    if len(lines) < 2 or lines[0].strip() != "1" or not lines[1].startswith("#"):
        raise HAProxyRuntimeError("unexpected answer to show servers state: %r" % text[:200])
    fields = lines[1].lstrip("#").split()
    wanted = {}
    for server in servers:
        wanted[(server["backend"], server["server"])] = server
    out, kept, dropped = [lines[0], lines[1]], [], []
    for line in lines[2:]:
        if not line.strip():
            continue
        row = dict(zip(fields, line.split()))
        name = "%s/%s" % (row.get("be_name"), row.get("srv_name"))
        want = wanted.get((row.get("be_name"), row.get("srv_name")))
        if want is not None and (
                want.get("slot") or (str(want["port"]) == row.get("srv_port")
                                     and same_address(str(want["address"]),
                                                      row.get("srv_addr", "")))):
            out.append(line)
            kept.append(name)
        else:
            dropped.append(name)
    return "\n".join(out) + "\n", kept, dropped
