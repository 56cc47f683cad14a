#!/usr/bin/env python
"""Throwaway lab hosts with real systemd, sshd, python3 and HAProxy, for tests and the demo.

    lab.py up     --name NAME [--app-hosts N] [--topology lb|single] [--lb-hosts M]
                  [--instances K] [--suite bullseye|bookworm|trixie] [--lb-suite SUITE]
                  [--net 10.213.X] [--no-provision]
    lab.py down   --name NAME
    lab.py status --name NAME [--json]

Each host is a systemd-nspawn container booted from an overlay over one shared debootstrap
rootfs, with its own address on the bridge ``hd-NAME`` (see _plan.py for the addressing).
Every host boots the Debian release ``--suite`` (default bookworm), but the HAProxy-only hosts,
which boot ``--lb-suite`` (default: ``--suite``), so a fleet can mix releases; each suite has
its own cached rootfs (_rootfs.py). ``--instances K`` runs K instances of the app on every app
host (ports 8080, 8082, ..., clones on 8081, 8083, ...), each its own HAProxy server.
``up`` is idempotent and ends with two lines: ``INVENTORY=<path>`` and ``LB_URL=<url>``.
``down`` leaves no process, mount, cgroup, link or state behind, also after a failed ``up``.
Run as root; Python standard library only. State lives in ``.lab/NAME/`` of the repository.
"""
import argparse
import concurrent.futures
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _plan  # noqa: E402
import _proc  # noqa: E402
import _rootfs  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
LAB_ROOT = os.path.join(REPO, ".lab")
SITE = os.path.join(HERE, "site.yml")
NSPAWN_STATE = "/run/systemd/nspawn"
READY_STATES = ("running", "degraded")


def log(msg):
    print(msg, flush=True)


class LabError(Exception):
    pass


# --- state -----------------------------------------------------------------------------------

def lab_dir(name):
    return os.path.join(LAB_ROOT, name)


def host_dir(name, host):
    return os.path.join(lab_dir(name), "hosts", host)


def state_path(name):
    return os.path.join(lab_dir(name), "state.json")


def load_state(name):
    try:
        with open(state_path(name)) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


def save_state(name, state):
    tmp = state_path(name) + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(state, handle, indent=2, sort_keys=True)
    os.replace(tmp, state_path(name))


@contextlib.contextmanager
def lab_lock(name):
    # Outside the state dir, which 'down' deletes; dropped again when no lab is left.
    path = "/run/lock/hitless-deploy-lab-%s.lock" % name
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if not os.path.exists(lab_dir(name)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


def machine(name, host):
    # Unique across labs: nspawn names the host side of the veth after it.
    return "%s-%s" % (name, host)


def host_dirs(name):
    try:
        return sorted(os.listdir(os.path.join(lab_dir(name), "hosts")))
    except FileNotFoundError:
        return []


def key_path(name):
    return os.path.join(lab_dir(name), "id_ed25519")


# --- host files ------------------------------------------------------------------------------

def write_if_changed(path, content, mode=0o644):
    try:
        with open(path) as handle:
            if handle.read() == content:
                return
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(content)
    os.chmod(path, mode)


def mount_overlay(name, host, rootfs):
    base = host_dir(name, host)
    upper, work, merged = (os.path.join(base, d) for d in ("upper", "work", "merged"))
    for path in (upper, work, merged):
        os.makedirs(path, exist_ok=True)
    # The upper dir's mode becomes the guest's / (non-root users must get through it).
    os.chmod(upper, 0o755)
    if merged not in _proc.mounts_under(merged):
        _proc.run(["mount", "-t", "overlay", "overlay", "-o",
                   "lowerdir=%s,upperdir=%s,workdir=%s" % (rootfs, upper, work), merged])
    return merged


def write_host_files(name, host, hosts, net, merged):
    def rel(p):
        return os.path.join(merged, p.lstrip("/"))

    write_if_changed(rel("/etc/hostname"), host["name"] + "\n")
    write_if_changed(rel("/etc/hosts"), _plan.render_etc_hosts(hosts))
    write_if_changed(rel("/etc/systemd/network/80-container-host0.network"),
                     _plan.render_network(host["address"], net))
    os.makedirs(rel("/root/.ssh"), mode=0o700, exist_ok=True)
    with open(key_path(name) + ".pub") as handle:
        write_if_changed(rel("/root/.ssh/authorized_keys"), handle.read(), 0o600)
    hostkey = rel("/etc/ssh/ssh_host_ed25519_key")
    if not os.path.exists(hostkey):
        _proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                   "root@" + host["name"], "-f", hostkey])


def ensure_key(name):
    if not os.path.exists(key_path(name)):
        _proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hitless-lab-" + name,
                   "-f", key_path(name)])


# --- bridge ----------------------------------------------------------------------------------

def ensure_bridge(bridge, net):
    gateway = "%s.1" % net
    for ifname, link in _proc.links().items():
        if ifname == bridge:
            continue
        for addr in link.get("addr_info", []):
            if addr.get("family") == "inet" and addr["local"].rsplit(".", 1)[0] == net:
                raise LabError("network %s.0/24 is already on %s (%s): pick another with --net"
                               % (net, ifname, addr["local"]))
    if not _proc.link_exists(bridge):
        _proc.run(["ip", "link", "add", bridge, "type", "bridge"])
    have = [a["local"] for a in _proc.links()[bridge].get("addr_info", [])
            if a.get("family") == "inet"]
    if gateway not in have:
        _proc.run(["ip", "addr", "add", gateway + "/24", "dev", bridge])
    _proc.run(["ip", "link", "set", bridge, "up"])


def delete_bridge(bridge):
    # Veths of guests that were killed rather than powered off can outlive them.
    for port in _proc.bridge_ports(bridge):
        _proc.run(["ip", "link", "del", port], check=False)
    if _proc.link_exists(bridge):
        _proc.run(["ip", "link", "del", bridge])


# --- one host's life -------------------------------------------------------------------------

def launcher_script(name, host, merged, uuid_hex, cgroup):
    nspawn = shutil.which("systemd-nspawn") or "/usr/bin/systemd-nspawn"
    cmd = [nspawn, "--boot", "-D", merged, "-M", machine(name, host),
           "--network-bridge=" + _plan.bridge_name(name), "--console=passive",
           "--link-journal=no", "--uuid=" + uuid_hex]
    lines = ["#!/bin/sh", "# lab %s, host %s: written by tests/lab/lab.py." % (name, host)]
    if cgroup:
        # Without systemd as PID 1 nspawn cannot get a scope of its own: it puts payload/ and
        # supervisor/ beside the cgroup it starts in, so each host needs its own.
        cmd[cmd.index("-M") + 2:cmd.index("-M") + 2] = ["--register=no", "--keep-unit"]
        lines += ["echo $$ > %s || exit 1" % shlex.quote(os.path.join(cgroup, "cgroup.procs")),
                  "export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1"]
    lines += ["while :; do",
              "    " + " ".join(shlex.quote(c) for c in cmd),
              "    rc=$?",
              "    # 133: the guest rebooted, so boot it again; anything else ends the host.",
              '    [ "$rc" -eq 133 ] || exit "$rc"',
              "done", ""]
    return "\n".join(lines)


def start_host(name, host_name, merged, uuid_hex):
    base = host_dir(name, host_name)
    cgroup = None
    if not _proc.pid1_is_systemd():
        root = _proc.cgroup_root()
        if root is None:
            raise LabError("no unified cgroup hierarchy under %s" % _proc.CGROUP_FS)
        cgroup = os.path.join(root, _plan.bridge_name(name), host_name)
        os.makedirs(cgroup, exist_ok=True)
    script = os.path.join(base, "launch.sh")
    write_if_changed(script, launcher_script(name, host_name, merged, uuid_hex, cgroup), 0o755)
    with open(os.path.join(base, "console.log"), "ab") as console:
        proc = subprocess.Popen(["/bin/sh", script], stdin=subprocess.DEVNULL, stdout=console,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd="/")
    return {"pid": proc.pid, "start": _proc.start_time(proc.pid)}


def host_pids(name, host_name, info):
    """{pid: start time} of every process of one host: its launcher and its cgroup."""
    pids = {}
    launcher = (info or {}).get("launcher") or {}
    if _proc.alive(launcher.get("pid"), launcher.get("start")):
        pids[launcher["pid"]] = launcher["start"]
    for tree in _proc.cgroup_trees(os.path.join(_plan.bridge_name(name), host_name)):
        for pid in _proc.cgroup_pids(tree):
            started = _proc.start_time(pid)
            if started is not None:
                pids[pid] = started
    return pids


def guest_pids(pids):
    """(nspawn pid, guest PID 1) among a host's processes; the guest's PID 1 is the child of
    nspawn named systemd."""
    nspawn = next((p for p in pids if _proc.comm(p) == "systemd-nspawn"), None)
    if nspawn is None:
        for pid in pids:
            nspawn = nspawn or _proc.child_named(pid, "systemd-nspawn")
    return nspawn, _proc.child_named(nspawn, "systemd")


def stop_host(name, host_name, info):
    """Power the guest off cleanly, or kill what is left; return how it ended."""
    pids = host_pids(name, host_name, info)
    if not pids:
        return "not running"
    nspawn, pid1 = guest_pids(pids)
    how = "powered off"
    if pid1 and _proc.kill(pid1, signal.SIGRTMIN + 4):
        # nspawn exits 0 once the guest is off, and the launcher exits with it.
        if _proc.wait_gone(pids, 20):
            how = "killed after power-off timed out"
    else:
        how = "killed (no guest PID 1)"
    left = {p: s for p, s in pids.items() if _proc.alive(p, s)}
    if left:
        launcher = ((info or {}).get("launcher") or {}).get("pid")
        # The launcher first, so it cannot boot the guest again.
        for pid in sorted(left, key=lambda p: p != launcher):
            _proc.kill(pid, signal.SIGKILL)
        # Killing nspawn does not end the guest: its PID 1 and all it runs go by pid too.
        for _attempt in range(50):
            left = host_pids(name, host_name, None)
            left.update({p: s for p, s in pids.items() if _proc.alive(p, s)})
            if not left:
                break
            for pid in left:
                _proc.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        if left:
            raise LabError("%s: processes survive SIGKILL: %s" % (host_name, sorted(left)))
    return how


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except FileNotFoundError:
        return "(none)"


def remove_host(name, host_name):
    left = _proc.umount_all(host_dir(name, host_name))
    if left:
        raise LabError("%s: still mounted: %s" % (host_name, ", ".join(left)))
    for tree in _proc.cgroup_trees(os.path.join(_plan.bridge_name(name), host_name)):
        failed = _proc.remove_cgroup_tree(tree)
        if failed:
            raise LabError("%s: cgroups left: %s" % (host_name, "; ".join(failed)))
    _proc.remove_tree(host_dir(name, host_name))


def ssh_argv(name, address, command, connect_timeout=2):
    return ["ssh", "-i", key_path(name), "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=%d" % connect_timeout, "root@" + address, command]


def system_state(name, address, timeout=5):
    """The guest's ``systemctl is-system-running``, or None when SSH does not answer."""
    try:
        proc = subprocess.run(ssh_argv(name, address, "systemctl is-system-running"),
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode == 255:
        return None  # ssh itself failed; otherwise the state is printed whatever the status
    return proc.stdout.strip() or None


def wait_ready(name, host, launcher, started_at, deadline):
    ssh_at = state = None
    while time.monotonic() < deadline:
        if not _proc.alive(launcher["pid"], launcher["start"]):
            return {"ready": None, "ssh": ssh_at, "state": "launcher exited"}
        state = system_state(name, host["address"])
        if state is not None and ssh_at is None:
            ssh_at = time.monotonic() - started_at
        if state in READY_STATES:
            return {"ready": time.monotonic() - started_at, "ssh": ssh_at, "state": state}
        time.sleep(0.2)
    return {"ready": None, "ssh": ssh_at, "state": state}


# --- commands --------------------------------------------------------------------------------

def provision(inventory):
    if not os.path.exists(SITE):
        log("note: %s does not exist yet; hosts are up but not provisioned" % SITE)
        return
    collections = os.path.join(REPO, ".tmp", "collections")
    link = os.path.join(collections, "ansible_collections", "hitless", "deploy")
    if not os.path.lexists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(REPO, link)
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", collections)
    releases = env.setdefault("HITLESS_RELEASES", os.path.join(REPO, ".tmp", "releases"))
    builder = os.path.join(REPO, "tests", "sample_app", "build_releases.py")
    if not os.path.exists(os.path.join(releases, "v1.tar.gz")) and os.path.exists(builder):
        log("building the sample app's releases into %s" % releases)
        _proc.run([sys.executable, builder, releases])
    env.update({"ANSIBLE_PIPELINING": "True", "ANSIBLE_HOST_KEY_CHECKING": "False"})
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    if not os.path.exists(playbook):
        playbook = shutil.which("ansible-playbook") or "ansible-playbook"
    log("provisioning: ansible-playbook -i %s %s" % (inventory, os.path.relpath(SITE, REPO)))
    started = time.monotonic()
    rc = subprocess.run([playbook, "-i", inventory, SITE], env=env, cwd=REPO,
                        check=False).returncode
    if rc != 0:
        raise LabError("provisioning failed (ansible-playbook exit %d)" % rc)
    log("provisioned in %.1f s" % (time.monotonic() - started))


def plan_from_args(args, state):
    net = _plan.lab_net(args.name, args.net)
    if state and state["net"] != net:
        raise LabError("lab %s is up on %s.0/24, not %s.0/24: run 'down' first"
                       % (args.name, state["net"], net))
    app_hosts = 2 if args.app_hosts is None else args.app_hosts
    if args.topology == "single" and args.app_hosts not in (None, 1):
        log("note: topology single has one host, app1; --app-hosts %d ignored" % args.app_hosts)
    return net, _plan.plan_hosts(net, args.topology, app_hosts, args.lb_hosts, args.queue_host)


def cmd_up(args):
    started = time.monotonic()
    state = load_state(args.name)
    net, hosts = plan_from_args(args, state)
    suites = _plan.host_suites(hosts, args.suite, args.lb_suite)
    _plan.instance_ports(args.instances)  # refused before anything boots
    rootfses = {}
    for suite in sorted(set(suites.values()), key=list(_rootfs.SUITES).index):
        rootfses[suite] = _rootfs.ensure(log, suite)
    os.makedirs(lab_dir(args.name), exist_ok=True)
    state = state or {"name": args.name, "net": net, "hosts": {}}
    state["suite"], state["lb_suite"] = args.suite, args.lb_suite or args.suite
    save_state(args.name, state)
    ensure_key(args.name)
    bridge = _plan.bridge_name(args.name)
    ensure_bridge(bridge, net)

    wanted = {h["name"]: h for h in hosts}
    running = set()
    for host_name in sorted(set(wanted) | set(state["hosts"]) | set(host_dirs(args.name))):
        info = state["hosts"].get(host_name)
        pids = host_pids(args.name, host_name, info)
        launcher = (info or {}).get("launcher") or {}
        # Without its launcher a guest would not come back from a reboot: start it afresh.
        if (info and host_name in wanted and info["address"] == wanted[host_name]["address"]
                and info["rootfs"] == rootfses[suites[host_name]]
                and os.path.isdir(info["rootfs"]) and guest_pids(pids)[1]
                and _proc.alive(launcher.get("pid"), launcher.get("start"))):
            running.add(host_name)
        elif info or pids or os.path.isdir(host_dir(args.name, host_name)):
            # Gone from the plan, moved, on another release, dead or half made: start again
            # from a clean overlay.
            log("%-6s %s; removing it" % (host_name, stop_host(args.name, host_name, info)))
            remove_host(args.name, host_name)
            state["hosts"].pop(host_name, None)
            save_state(args.name, state)

    booting = {}
    for host in hosts:
        info = state["hosts"].setdefault(host["name"], {
            "address": host["address"], "groups": host["groups"],
            "suite": suites[host["name"]], "rootfs": rootfses[suites[host["name"]]],
            "uuid": uuid.uuid4().hex})
        info["groups"] = host["groups"]
        merged = mount_overlay(args.name, host["name"], info["rootfs"])
        write_host_files(args.name, host, hosts, net, merged)
    save_state(args.name, state)
    for host in hosts:
        info = state["hosts"][host["name"]]
        if host["name"] in running:
            log("%-6s %-13s already up (launcher pid %d)"
                % (host["name"], host["address"], info["launcher"]["pid"]))
            continue
        booting[host["name"]] = time.monotonic()
        info["launcher"] = start_host(args.name, host["name"],
                                      os.path.join(host_dir(args.name, host["name"]), "merged"),
                                      info["uuid"])
        save_state(args.name, state)

    deadline = time.monotonic() + args.timeout
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        waits = {h["name"]: pool.submit(wait_ready, args.name, h,
                                        state["hosts"][h["name"]]["launcher"],
                                        booting.get(h["name"], time.monotonic()), deadline)
                 for h in hosts}
    failed = []
    for host in hosts:
        result = waits[host["name"]].result()
        if result["ready"] is None:
            failed.append(host["name"])
            console = os.path.join(host_dir(args.name, host["name"]), "console.log")
            log("%-6s %-13s NOT READY (%s); last lines of %s:\n%s"
                % (host["name"], host["address"], result["state"] or "no ssh", console,
                   tail(console)))
        elif host["name"] in booting:
            log("%-6s %-13s %-8s booted in %.1f s (ssh after %.1f s, %s)"
                % (host["name"], host["address"], suites[host["name"]], result["ready"],
                   result["ssh"], result["state"]))
        if result["state"] == "degraded":
            failed_units = subprocess.run(
                ssh_argv(args.name, host["address"], "systemctl --failed --no-legend --plain"),
                capture_output=True, text=True, timeout=15, check=False).stdout.strip()
            log("%-6s warning: degraded: %s" % (host["name"], failed_units or "?"))
    if failed:
        raise LabError("hosts not ready: %s (run 'lab.py down --name %s' to clean up)"
                       % (", ".join(failed), args.name))
    if booting:
        log("%d host(s) booted, lab ready in %.1f s" % (len(booting), time.monotonic() - started))

    inventory = os.path.join(lab_dir(args.name), "inventory.yml")
    write_if_changed(inventory, _plan.render_inventory(args.name, hosts, key_path(args.name),
                                                       suites, args.instances))
    if not args.no_provision:
        provision(inventory)
    log("total %.1f s" % (time.monotonic() - started))
    print("INVENTORY=%s" % inventory)
    print("LB_URL=%s" % _plan.lb_url(hosts), flush=True)
    return 0


def cmd_down(args):
    started = time.monotonic()
    state = load_state(args.name) or {"hosts": {}}
    bridge = _plan.bridge_name(args.name)
    names = set(state["hosts"]) | set(host_dirs(args.name))
    for tree in _proc.cgroup_trees(bridge):
        names.update(d for d in os.listdir(tree) if os.path.isdir(os.path.join(tree, d)))
    if not (names or os.path.exists(lab_dir(args.name)) or _proc.link_exists(bridge)):
        log("lab %s: nothing to tear down" % args.name)
        return 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        stops = {n: pool.submit(stop_host, args.name, n, state["hosts"].get(n))
                 for n in sorted(names)}
    problems = []
    for host_name, future in stops.items():
        try:
            log("%-6s %s" % (host_name, future.result()))
        except LabError as exc:
            problems.append(str(exc))
    left = _proc.umount_all(lab_dir(args.name))
    if left:
        problems.append("still mounted: " + ", ".join(left))
    for tree in _proc.cgroup_trees(bridge):
        problems += _proc.remove_cgroup_tree(tree)
    delete_bridge(bridge)
    # nspawn's per-machine scratch dirs, normally removed by nspawn itself.
    for host_name in names:
        for kind in ("propagate", "unix-export"):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(NSPAWN_STATE, kind, machine(args.name, host_name)))
    if left:
        problems.append("kept %s because of the mounts" % lab_dir(args.name))
    else:
        _proc.remove_tree(lab_dir(args.name))
        with contextlib.suppress(OSError):
            os.rmdir(LAB_ROOT)
    if problems:
        raise LabError("down left things behind:\n  " + "\n  ".join(problems))
    log("lab %s down in %.1f s" % (args.name, time.monotonic() - started))
    return 0


def cmd_status(args):
    state = load_state(args.name)
    if state is None:
        log("lab %s: not up" % args.name)
        return 1
    rows = []
    names = sorted(state["hosts"], key=lambda n: tuple(map(int, state["hosts"][n]["address"]
                                                           .split("."))))
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        states = {n: pool.submit(system_state, args.name, state["hosts"][n]["address"], 5)
                  for n in names}
    for host_name in names:
        info = state["hosts"][host_name]
        launcher = info.get("launcher") or {}
        alive = _proc.alive(launcher.get("pid"), launcher.get("start"))
        nspawn, pid1 = guest_pids(host_pids(args.name, host_name, info))
        rows.append({"host": host_name, "address": info["address"], "groups": info["groups"],
                     "suite": info.get("suite", _rootfs.SUITE),
                     "launcher": launcher.get("pid") if alive else None, "nspawn": nspawn,
                     "pid1": pid1, "state": states[host_name].result()})
    bridge = _plan.bridge_name(args.name)
    inventory = os.path.join(lab_dir(args.name), "inventory.yml")
    if args.json:
        print(json.dumps({"name": args.name, "bridge": bridge, "net": state["net"],
                          "bridge_up": _proc.link_exists(bridge), "inventory": inventory,
                          "hosts": rows}, indent=2))
    else:
        log("lab %s: bridge %s %s.1/24 (%s), inventory %s"
            % (args.name, bridge, state["net"],
               "present" if _proc.link_exists(bridge) else "MISSING", inventory))
        log("%-6s %-13s %-13s %-8s %-9s %-7s %-7s %s"
            % ("HOST", "ADDRESS", "GROUPS", "SUITE", "LAUNCHER", "NSPAWN", "PID1", "REACHABLE"))
        for row in rows:
            log("%-6s %-13s %-13s %-8s %-9s %-7s %-7s %s"
                % (row["host"], row["address"], ",".join(row["groups"]), row["suite"],
                   row["launcher"] or "-",
                   row["nspawn"] or "-", row["pid1"] or "-",
                   "yes (%s)" % row["state"] if row["state"] else "no"))
    return 0 if all(r["state"] in READY_STATES for r in rows) else 1


def name_arg(value):
    try:
        return _plan.check_name(value)
    except _plan.PlanError as exc:
        raise argparse.ArgumentTypeError(str(exc))


def parse_args(argv):
    summary = __doc__.split("\n\n", maxsplit=1)[0]
    parser = argparse.ArgumentParser(prog="lab.py", description=summary)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="boot (or complete) the lab; idempotent")
    down = sub.add_parser("down", help="tear the lab down, leaving nothing behind")
    status = sub.add_parser("status", help="hosts, pids, addresses and reachability")
    for p in (up, down, status):
        p.add_argument("--name", required=True, type=name_arg)
    up.add_argument("--app-hosts", type=int, default=None, help="app hosts (default 2)")
    up.add_argument("--lb-hosts", type=int, default=1, help="LB hosts (default 1)")
    up.add_argument("--topology", choices=_plan.TOPOLOGIES, default="lb")
    up.add_argument("--instances", type=int, default=1,
                    help="instances of the app per app host (default 1): ports 8080, 8082, ..., "
                         "clones on 8081, 8083, ...")
    up.add_argument("--queue-host", action="store_true",
                    help="add queue1, running Redis for the background workers")
    up.add_argument("--suite", choices=list(_rootfs.SUITES), default=_rootfs.SUITE,
                    help="Debian release of the hosts (default %s)" % _rootfs.SUITE)
    up.add_argument("--lb-suite", choices=list(_rootfs.SUITES), default=None,
                    help="Debian release of the HAProxy-only hosts (default: --suite)")
    up.add_argument("--net", help="first three octets of the lab's /24, e.g. 10.213.7")
    up.add_argument("--no-provision", action="store_true",
                    help="do not run tests/lab/site.yml")
    up.add_argument("--timeout", type=int, default=120,
                    help="seconds to wait for the hosts to be ready (default 120)")
    status.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if os.geteuid() != 0:
        log("lab.py must run as root (overlay mounts, bridges, systemd-nspawn)")
        return 2
    commands = {"up": cmd_up, "down": cmd_down}
    try:
        if args.command == "status":
            return cmd_status(args)
        with lab_lock(args.name):
            return commands[args.command](args)
    except (LabError, _plan.PlanError, _rootfs._sources.MirrorNotFound,
            subprocess.CalledProcessError) as exc:
        detail = ""
        if isinstance(exc, subprocess.CalledProcessError):
            detail = (exc.stderr or "").strip()
        log("lab.py %s: error: %s%s" % (args.command, exc, "\n" + detail if detail else ""))
        return 1


if __name__ == "__main__":
    sys.exit(main())
