# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which processes listen on a TCP port, and which systemd unit and directory they belong to.

Read from procfs only, so it needs no ``ss``/``lsof`` on the target. Every function takes the
procfs root as ``proc`` so unit tests can hand it a fake tree. Processes can exit at any moment
while we read their entries: whatever vanishes or cannot be read is skipped, never an error.
Pure stdlib; runs on the target (Python >= 3.9).
"""

import os
import re

TCP_LISTEN = "0A"  # st column of /proc/net/tcp{,6} (include/net/tcp_states.h)
CMDLINE_MAX = 200
_SOCKET_LINK = re.compile(r"^socket:\[(\d+)\]$")
_UNIT_SUFFIXES = (".service", ".scope")


def _read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except (IOError, OSError):
        return None


def _listening_in(table, port):
    """Inodes of LISTEN sockets on ``port`` in one ``/proc/net/tcp``-format table."""
    inodes = set()
    for line in table.splitlines()[1:]:  # the first line is the column header
        fields = line.split()
        if len(fields) < 10 or fields[3] != TCP_LISTEN:
            continue
        try:
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            inode = int(fields[9])
        except (IndexError, ValueError):
            continue
        if local_port == port and inode:
            inodes.add(inode)
    return inodes


def listening_inodes(port, proc="/proc"):
    """Inodes of TCP sockets in LISTEN state on ``port``, IPv4 and IPv6, any local address."""
    inodes = set()
    for name in ("tcp", "tcp6"):
        # tcp6 is missing when IPv6 is disabled.
        table = _read(os.path.join(proc, "net", name))
        if table:
            inodes |= _listening_in(table, port)
    return inodes


def _holds(pid_dir, inodes):
    """True if the process owns one of ``inodes``; None if it vanished or its fds are unreadable."""
    fd_dir = os.path.join(pid_dir, "fd")
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return None
    for fd in fds:
        try:
            match = _SOCKET_LINK.match(os.readlink(os.path.join(fd_dir, fd)))
        except OSError:
            continue  # closed since listdir
        if match and int(match.group(1)) in inodes:
            return True
    return False


def _cmdline(pid_dir):
    raw = _read(os.path.join(pid_dir, "cmdline"), "rb")
    if raw is None:
        return None
    text = " ".join(arg.decode("utf-8", "replace") for arg in raw.split(b"\0") if arg)
    if not text:
        # An empty cmdline (a process that cleared its argv) still has a name; ps shows it so too.
        text = "[%s]" % (_read(os.path.join(pid_dir, "comm")) or "?").strip()
    return text[:CMDLINE_MAX]


def listeners(port, proc="/proc"):
    """Processes holding a LISTEN socket on ``port``: ``[{pid, cmdline, unit}]`` sorted by pid."""
    inodes = listening_inodes(port, proc)
    if not inodes:
        return []  # the common case, without walking every process's fds
    found = []
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        pid_dir = os.path.join(proc, name)
        if not _holds(pid_dir, inodes):
            continue
        cmdline = _cmdline(pid_dir)
        if cmdline is None:
            continue  # exited after we saw its fds
        found.append({"pid": int(name), "cmdline": cmdline, "unit": unit_of(int(name), proc)})
    return sorted(found, key=lambda entry: entry["pid"])


def cgroup_path(pid, proc="/proc"):
    """The process's path in systemd's cgroup hierarchy, or None.

    cgroup v1 and hybrid: the ``name=systemd`` line (systemd's own hierarchy); v2: the ``0::`` line.
    A container whose systemd runs the unified hierarchy under a host that also mounts v1 ones
    (systemd-nspawn here) shows ``name=systemd:/`` for every process: then the ``0::`` line is
    where the units are.
    """
    text = _read(os.path.join(proc, str(pid), "cgroup"))
    if text is None:
        return None
    named = unified = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[1] == "name=systemd":
            named = parts[2]
        elif parts[0] == "0" and parts[1] == "":
            unified = parts[2]
    if named is not None and (named != "/" or unified is None):
        return named
    return unified


def unit_of(pid, proc="/proc"):
    """The systemd unit (``*.service`` or ``*.scope``) the process runs in, or None.

    The innermost unit component counts, so a sub-cgroup of a unit with ``Delegate=yes``
    (``.../demo@8081.service/worker``) still maps to the unit.
    """
    path = cgroup_path(pid, proc)
    if not path:
        return None
    for component in reversed(path.split("/")):
        if component.endswith(_UNIT_SUFFIXES):
            return component
    return None


def process_cwd(pid, proc="/proc", releases_dir=None):
    """Real path (as this process sees it) of the directory ``pid`` works in, or None.

    With systemd this is the unit's ``WorkingDirectory=`` as resolved when the process started.
    An instance of the app's unit runs in a mount namespace of its own, with its release mounted
    at ``ROOT/current`` (plugins/module_utils/_pin.py): its link names that mount point, not the
    release. The directory itself (device and inode) is the same in every namespace, so it is
    looked up among the directories of ``releases_dir``; None when it is none of them.
    """
    link = os.path.join(proc, str(pid), "cwd")
    try:
        # readlink first: realpath() does not fail on an unreadable link, it returns it unresolved.
        os.readlink(link)
        seen = os.stat(link)
    except OSError:
        return None
    real = os.path.realpath(link)
    try:
        if os.path.samestat(os.stat(real), seen):
            return real
    except OSError:
        pass
    return same_directory(seen, releases_dir) if releases_dir else None


def same_directory(seen, directory):
    """The real path of the entry of ``directory`` that is the directory ``seen`` (a stat result)."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return None
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False) and os.path.samestat(entry.stat(follow_symlinks=False), seen):
                return os.path.realpath(entry.path)
        except OSError:
            continue
    return None


def describe(entry):
    """``pid 1234 (python3 -m http.server 8081, unit stray.service)``, for messages."""
    unit = "unit %s" % entry["unit"] if entry.get("unit") else "no unit"
    return "pid %d (%s, %s)" % (entry["pid"], entry.get("cmdline") or "?", unit)
