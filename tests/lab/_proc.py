"""Processes, cgroups, mounts and links as the lab sees them, read from /proc and /sys.

Each process the lab starts is recorded as (pid, start time) so a recycled pid is never taken
for a lab process, and every kill targets a pid the lab started or one inside the lab's own
cgroup (which holds nothing else).
"""
import json
import os
import re
import subprocess
import time

CGROUP_FS = "/sys/fs/cgroup"


def run(cmd, check=True, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(cmd, check=check, **kwargs)


# --- processes -------------------------------------------------------------------------------

def _stat(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            data = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may hold spaces and parentheses: the fields that matter follow the last ')'.
    return data[data.rindex(")") + 2:].split()


def start_time(pid):
    """The process's start time in clock ticks, or None when it is gone (or a zombie)."""
    fields = _stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(pid, started=None):
    if not pid:
        return False
    now = start_time(pid)
    return now is not None and (started is None or now == started)


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as handle:
            return handle.read().strip()
    except (FileNotFoundError, ProcessLookupError):
        return None


def children(pid):
    kids = []
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except FileNotFoundError:
        return kids
    for task in tasks:
        try:
            with open("/proc/%d/task/%s/children" % (pid, task)) as handle:
                kids += [int(p) for p in handle.read().split()]
        except FileNotFoundError:
            continue
    return kids


def child_named(pid, name):
    return next((kid for kid in children(pid) if comm(kid) == name), None) if pid else None


def pid1_is_systemd():
    return comm(1) == "systemd"


def kill(pid, sig):
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def wait_gone(pids, timeout):
    """Wait until none of ``pids`` ({pid: start time}) runs; return those still running."""
    deadline = time.monotonic() + timeout
    while True:
        left = {p: s for p, s in pids.items() if alive(p, s)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


# --- cgroups ---------------------------------------------------------------------------------

def cgroup_root():
    """Where the lab makes its cgroups: the unified (v2) hierarchy, hybrid or pure."""
    for path in (os.path.join(CGROUP_FS, "unified"), CGROUP_FS):
        if os.path.exists(os.path.join(path, "cgroup.controllers")):
            return path
    return None


def cgroup_trees(top):
    """Every existing ``<hierarchy>/<top>`` directory: nspawn mirrors its cgroups into the
    named ``systemd`` v1 hierarchy as well as the unified one."""
    found = []
    if os.path.isdir(os.path.join(CGROUP_FS, top)):
        found.append(os.path.join(CGROUP_FS, top))
    try:
        hierarchies = sorted(os.listdir(CGROUP_FS))
    except FileNotFoundError:
        return found
    for hierarchy in hierarchies:
        path = os.path.join(CGROUP_FS, hierarchy, top)
        if os.path.isdir(path):
            found.append(path)
    return found


def cgroup_pids(tree):
    pids = set()
    for dirpath, _dirs, files in os.walk(tree):
        if "cgroup.procs" in files:
            try:
                with open(os.path.join(dirpath, "cgroup.procs")) as handle:
                    pids.update(int(p) for p in handle.read().split())
            except (FileNotFoundError, OSError):
                continue
    return pids


def remove_cgroup_tree(tree):
    """rmdir the tree deepest first (cgroup directories cannot be removed recursively)."""
    failed = []
    for dirpath, _dirs, _files in os.walk(tree, topdown=False):
        try:
            os.rmdir(dirpath)
        except FileNotFoundError:
            pass
        except OSError as exc:
            failed.append("%s: %s" % (dirpath, exc.strerror))
    return failed


# --- mounts ----------------------------------------------------------------------------------

def _unescape(field):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(path):
    """Mount points at or below ``path``, deepest first."""
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = _unescape(line.split()[4])
            if point == path or point.startswith(path.rstrip("/") + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def umount_all(path):
    """Unmount everything at or below ``path``; return what stayed mounted."""
    for point in mounts_under(path):
        for _attempt in range(20):
            if run(["umount", point], check=False).returncode == 0:
                break
            time.sleep(0.25)
    return mounts_under(path)


def remove_tree(path):
    """rm -rf that never crosses into another file system (a forgotten bind mount of /dev in a
    half-built rootfs must not be emptied)."""
    if os.path.lexists(path):
        run(["rm", "-rf", "--one-file-system", "--", path])


# --- links -----------------------------------------------------------------------------------

def links():
    return {link["ifname"]: link for link in json.loads(run(["ip", "-j", "addr"]).stdout)}


def link_exists(name):
    return os.path.exists("/sys/class/net/" + name)


def bridge_ports(bridge):
    try:
        return sorted(os.listdir("/sys/class/net/%s/brif" % bridge))
    except FileNotFoundError:
        return []
