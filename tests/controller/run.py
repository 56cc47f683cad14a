#!/usr/bin/env python
"""Run a command from an Ansible controller with another ansible-core, oldest supported to newest.

    tests/controller/run.py --core 2.15|2.19|2.21 [--bind DIR]... [--no-version] -- COMMAND...

Prints the first line of that controller's ``ansible-playbook --version`` (``ansible-playbook
[core 2.21.5]``), then runs COMMAND with the controller's virtualenv first on PATH and exits
with its status. A COMMAND whose program is an ansible CLI (``ansible-playbook``, bare or the
path of another virtualenv's, as tests/integration/lab/_deploy.py passes it) is run from the
controller's virtualenv.

- 2.15 and 2.19 run on this machine's Python (3.11), from ``.tmp/core-X/``, created on demand
  with the pins of ``tests/controller/requirements-core-X.txt`` (recreated when they change).
- 2.21 needs Python >= 3.12, which Debian 12 lacks: it runs in a Debian 13 (trixie) container,
  one ``systemd-nspawn`` command (no boot, the host's network, so the lab bridges and the pip
  index are reachable) on a read-only rootfs built once with debootstrap into
  ``/var/cache/hitless-deploy-lab/controller-trixie-<key>``. The repository is bound at its own
  path (so ``.tmp/collections``, ``.lab/NAME/`` with the inventory and SSH key, and the release
  archives keep their paths), ``/root`` is a fresh tmpfs (``~/.ansible``) except
  ``~/.ansible/test`` (ansible-test's own virtualenvs, kept in ``.tmp/core-2.21-ansible-test``).
  ``.tmp/core-2.21/`` is created inside the container by its python3.13, so it only works
  there. ``--bind DIR`` binds more directories at their own path (a test's work dir).
  Every run gets a cgroup of its own (nspawn needs one without systemd as PID 1); whatever is
  left in it when the command ends is killed and the cgroup removed, and a run that was
  SIGKILLed is cleaned up by the next.

Environment passed into the container: ``ANSIBLE_*``, ``HITLESS_*``, ``SANITY_*``, ``VENV``,
``LAB_*``. ``CONTROLLER_MIRROR`` (or ``LAB_MIRROR``) overrides the Debian mirror for the build,
which is otherwise read from this machine's apt sources (never named in the repository).
"""
import argparse
import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TMP = os.path.join(REPO, ".tmp")
LAB_DIR = os.path.join(REPO, "tests", "lab")
sys.path.insert(0, LAB_DIR)

import _proc  # noqa: E402
import _rootfs  # noqa: E402
import _sources  # noqa: E402

# Where each controller runs: "host" (this machine's Python) or a container suite.
CORES = {"2.15": "host", "2.19": "host", "2.21": "trixie"}
ANSIBLE_CLIS = ("ansible", "ansible-playbook", "ansible-galaxy", "ansible-doc", "ansible-test",
                "ansible-config", "ansible-console", "ansible-inventory", "ansible-pull",
                "ansible-vault")
PASS_ENV = re.compile(r"^(ANSIBLE_|HITLESS_|SANITY_|LAB_)|^VENV$"
                      # the pip index as this machine reaches it (not its local wheel dirs)
                      r"|^PIP_(CERT|INDEX_URL|TRUSTED_HOST|DEFAULT_TIMEOUT|RETRIES)$"
                      r"|^(https?_proxy|no_proxy|HTTPS?_PROXY|NO_PROXY)$")
# This machine's CA bundle, bound over the container's: a proxy's or a site's own CA that this
# machine trusts (pip reaching its index through it) is trusted in the container too.
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# nspawn's complaint when /run is no tmpfs (it then leaves the propagation dir to us).
NSPAWN_NOISE = re.compile(r'^Attempted to remove disk file system under "/run/systemd/nspawn/'
                          r'propagate/[^"]*", and we can\'t allow that\.$')

CACHE = os.environ.get("LAB_CACHE", "/var/cache/hitless-deploy-lab")
CONTAINER_SUITE = "trixie"
CONTAINER_VARIANT = "minbase"
# git and shellcheck are for ansible-test sanity (tests/sanity/run.sh) in the container.
CONTAINER_PACKAGES = ("python3", "python3-venv", "openssh-client", "ca-certificates", "git",
                      "shellcheck")
# Bump when _customise() changes, so an existing rootfs is not reused.
CONTAINER_CUSTOMISE = 1
# Not under tests/lab/_rootfs.py's ".build-*", which it discards as stale under its own lock.
BUILD_PREFIX = ".controller-build-"
CGROUP_TOP = "hitless-controller"
MACHINE = "hitless-ctl-%d"  # run.py's pid
NSPAWN_PROPAGATE = "/run/systemd/nspawn/propagate"


class ControllerError(Exception):
    pass


def log(message):
    sys.stderr.write("controller: %s\n" % message)
    sys.stderr.flush()


def requirements(core):
    return os.path.join(HERE, "requirements-core-%s.txt" % core)


def venv_dir(core):
    return os.path.join(TMP, "core-" + core)


# --- the controller's virtualenv (on this machine, or inside the container) -----------------

def _venv_stamp(core, python):
    with open(requirements(core), "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    version = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    return json.dumps({"requirements": digest, "python": python, "version": version},
                      sort_keys=True)


def ensure_venv(core, python):
    """``.tmp/core-CORE`` with the pinned requirements, made with ``python``; returns its path."""
    venv = venv_dir(core)
    stamp_path = os.path.join(venv, ".stamp")
    wanted = _venv_stamp(core, python)
    with _rootfs.locked(venv + ".lock"):
        try:
            with open(stamp_path) as handle:
                if handle.read() == wanted:
                    return venv
        except FileNotFoundError:
            pass
        log("creating %s (ansible-core %s, %s)" % (venv, core, python))
        started = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python, "-m", "venv", venv], check=True, stdout=sys.stderr)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q",
                        "--disable-pip-version-check", "-r", requirements(core)],
                       check=True, stdout=sys.stderr)
        with open(stamp_path, "w") as handle:
            handle.write(wanted)
        log("%s ready in %.0f s" % (venv, time.monotonic() - started))
    return venv


def run_in_venv(core, python, command, print_version):
    """Print the controller's version line, then exec ``command`` from its virtualenv."""
    venv = ensure_venv(core, python)
    bin_dir = os.path.join(venv, "bin")
    env = dict(os.environ)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = venv
    env.setdefault("LANG", "C.UTF-8")
    if print_version:
        first = subprocess.run([os.path.join(bin_dir, "ansible-playbook"), "--version"],
                               capture_output=True, text=True, env=env, check=False)
        if first.returncode != 0:
            raise ControllerError("ansible-playbook --version failed (%d): %s"
                                  % (first.returncode, first.stderr.strip()))
        print(first.stdout.splitlines()[0], flush=True)
    program = command[0]
    if os.path.basename(program) in ANSIBLE_CLIS:
        program = os.path.join(bin_dir, os.path.basename(program))
    sys.stdout.flush()
    os.execvpe(program, [program] + command[1:], env)


# --- the container's rootfs -----------------------------------------------------------------

def find_mirror(suite):
    return (os.environ.get("CONTROLLER_MIRROR") or os.environ.get("LAB_MIRROR")
            or _sources.find_mirror(suite))


def rootfs_key():
    spec = {"suite": CONTAINER_SUITE, "variant": CONTAINER_VARIANT,
            "packages": sorted(CONTAINER_PACKAGES), "customise": CONTAINER_CUSTOMISE}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def rootfs_path():
    return os.path.join(CACHE, "controller-%s-%s" % (CONTAINER_SUITE, rootfs_key()))


def _discard(tree):
    # debootstrap mounts /proc and /sys inside the target while it works.
    left = _proc.umount_all(tree)
    if left:
        raise ControllerError("cannot discard %s: still mounted: %s" % (tree, ", ".join(left)))
    _proc.remove_tree(tree)


def _customise(root):
    for deb in glob.glob(os.path.join(root, "var/cache/apt/archives/*.deb")):
        os.unlink(deb)
    # Mount points: the repository (and its .tmp) at its own path, /root as a tmpfs.
    os.makedirs(os.path.join(root, REPO.lstrip("/")), exist_ok=True)
    # nspawn binds the host's resolv.conf onto it; a read-only image cannot get one later.
    resolv = os.path.join(root, "etc/resolv.conf")
    if os.path.islink(resolv) or not os.path.exists(resolv):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(resolv)
        open(resolv, "w").close()
    with open(os.path.join(root, "etc/hitless-controller"), "w") as handle:
        handle.write("Debian %s controller for hitless.deploy (tests/controller/run.py)\n"
                     % CONTAINER_SUITE)


def ensure_rootfs():
    """The cached trixie controller rootfs; built once (debootstrap, about a minute)."""
    final = rootfs_path()
    if os.path.isdir(final):
        return final
    os.makedirs(CACHE, exist_ok=True)
    with _rootfs.locked(os.path.join(CACHE, ".controller.lock")):
        if os.path.isdir(final):
            return final
        for stale in glob.glob(os.path.join(CACHE, BUILD_PREFIX + "*")):
            log("discarding unfinished build %s" % stale)
            _discard(stale)
        if not shutil.which("debootstrap"):
            raise ControllerError("debootstrap not found: apt-get install debootstrap (make apt)")
        mirror = find_mirror(CONTAINER_SUITE)
        build = tempfile.mkdtemp(prefix=BUILD_PREFIX, dir=CACHE)
        os.chmod(build, 0o755)
        build_log = final + ".log"
        log("debootstrap %s %s from %s into %s (once, about a minute; log %s)"
            % (CONTAINER_VARIANT, CONTAINER_SUITE, mirror, final, build_log))
        started = time.monotonic()
        cmd = ["debootstrap", "--variant=" + CONTAINER_VARIANT,
               "--include=" + ",".join(CONTAINER_PACKAGES), CONTAINER_SUITE, build, mirror]
        try:
            with open(build_log, "w") as out:
                subprocess.run(cmd, stdout=out, stderr=out, check=True)
            _customise(build)
        except Exception:
            with open(build_log, errors="replace") as out:
                log("build failed; last lines of %s:\n%s" % (build_log, out.read()[-3000:]))
            _discard(build)
            raise
        left = _proc.mounts_under(build)
        if left:
            raise ControllerError("rootfs build left mounts behind: %s" % ", ".join(left))
        os.rename(build, final)
        log("rootfs built in %.0f s" % (time.monotonic() - started))
    return final


# --- one run's cgroup (systemd-nspawn without systemd as PID 1) -----------------------------

def _started(pid):
    """The process's start time as text (part of a run's cgroup name), or None when it is gone."""
    started = _proc.start_time(pid)
    return None if started is None else str(started)


def _kill_cgroup(name):
    """Kill what is left in run ``name``'s cgroup and remove it; return what stayed."""
    for tree in _proc.cgroup_trees(os.path.join(CGROUP_TOP, name)):
        if os.path.exists(os.path.join(tree, "cgroup.kill")):
            try:
                with open(os.path.join(tree, "cgroup.kill"), "w") as handle:
                    handle.write("1")
            except OSError:
                pass
        else:
            for pid in _proc.cgroup_pids(tree):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    problems = []
    deadline = time.monotonic() + 10
    for tree in _proc.cgroup_trees(os.path.join(CGROUP_TOP, name)):
        while _proc.cgroup_pids(tree) and time.monotonic() < deadline:
            time.sleep(0.05)
        problems += _proc.remove_cgroup_tree(tree)
    return problems


def _clean_stale_cgroups(root):
    """Cgroups of runs whose run.py is gone (SIGKILLed with its process group)."""
    for path in glob.glob(os.path.join(root, CGROUP_TOP, "*")):
        name = os.path.basename(path)
        match = re.match(r"^(\d+)-(\d+)$", name)
        if match and _started(int(match.group(1))) == match.group(2):
            continue
        problems = _kill_cgroup(name)
        if problems:
            log("stale cgroup %s not removed: %s" % (name, "; ".join(problems)))


def _workdir():
    """The current directory when the container has it (inside the repository), else the repo."""
    cwd = os.getcwd()
    return cwd if cwd == REPO or cwd.startswith(REPO + os.sep) else REPO


def _mount_points(rootfs, directories):
    """Make each bind's mount point in the image: nspawn cannot in a --read-only one.

    The cached image is shared by every checkout on the machine, so a checkout at another path
    than the one that built it (a CI clone) needs its own.
    """
    for directory in directories:
        os.makedirs(os.path.join(rootfs, directory.lstrip("/")), exist_ok=True)


def run_in_container(core, command, binds, print_version):
    rootfs = ensure_rootfs()
    # One machine name per run: nspawn keeps per-machine state under /run/systemd/nspawn.
    machine = MACHINE % os.getpid()
    venv = venv_dir(core)
    os.makedirs(venv, exist_ok=True)
    test_home = os.path.join(TMP, "core-%s-ansible-test" % core)
    os.makedirs(test_home, exist_ok=True)
    nspawn = shutil.which("systemd-nspawn") or "/usr/bin/systemd-nspawn"
    argv = [nspawn, "--quiet", "--directory=" + rootfs, "--read-only", "--register=no",
            "--keep-unit", "--console=pipe", "--as-pid2", "--link-journal=no",
            "--resolv-conf=bind-host", "--timezone=off",
            "--machine=" + machine, "--bind=" + REPO, "--tmpfs=/root:mode=0700",
            "--bind=%s:/root/.ansible/test" % test_home,
            "--chdir=" + _workdir()]
    extra = []
    for directory in binds:
        directory = os.path.abspath(directory)
        if directory != REPO and not directory.startswith(REPO + os.sep):
            os.makedirs(directory, exist_ok=True)
            extra.append(directory)
            argv.append("--bind=" + directory)
    _mount_points(rootfs, [REPO] + extra)
    env = {"HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb",
           "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    if os.path.isfile(CA_BUNDLE):
        argv.append("--bind-ro=" + CA_BUNDLE)
        env.update(PIP_CERT=CA_BUNDLE, SSL_CERT_FILE=CA_BUNDLE, REQUESTS_CA_BUNDLE=CA_BUNDLE)
    env.update({k: v for k, v in os.environ.items() if PASS_ENV.search(k)})
    argv += ["--setenv=%s=%s" % item for item in sorted(env.items())]
    argv += ["/usr/bin/python3", os.path.abspath(__file__), "--inside", "--core", core]
    if not print_version:
        argv.append("--no-version")
    argv += ["--"] + command

    root = _proc.cgroup_root()
    if root is None:
        raise ControllerError("no unified cgroup hierarchy under /sys/fs/cgroup")
    _clean_stale_cgroups(root)
    name = "%d-%s" % (os.getpid(), _started(os.getpid()))
    cgroup = os.path.join(root, CGROUP_TOP, name)
    for _attempt in range(3):
        try:
            os.makedirs(cgroup, exist_ok=True)
            break
        except FileNotFoundError:  # another run just removed the empty parent
            time.sleep(0.1)

    # Killing nspawn does not end the container: a watcher outside this process group ends it
    # when this process dies without cleaning up (SIGKILLed with its group, as a CI runner
    # kills a job).
    watcher = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--watch", name],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               start_new_session=True)

    def enter_cgroup():
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as handle:
            handle.write(str(os.getpid()))

    child_env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
    proc = subprocess.Popen(argv, preexec_fn=enter_cgroup, env=child_env,
                            stderr=subprocess.PIPE)

    def relay():
        # The container's stderr (nspawn's own, in pipe mode) minus nspawn's noise.
        for line in iter(proc.stderr.readline, b""):
            if not NSPAWN_NOISE.match(line.decode("utf-8", "replace").rstrip("\n")):
                sys.stderr.buffer.write(line)
                sys.stderr.buffer.flush()
    relay_thread = threading.Thread(target=relay, daemon=True)
    relay_thread.start()

    def forward(signum, _frame):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    try:
        rc = proc.wait()
        relay_thread.join(5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        problems = _kill_cgroup(name)
        if problems:
            log("cgroup not removed: %s" % "; ".join(problems))
        for path in [os.path.join(NSPAWN_PROPAGATE, machine)] + [
                os.path.dirname(tree) for tree in _proc.cgroup_trees(os.path.join(CGROUP_TOP, name))] + [
                os.path.join(base, CGROUP_TOP) for base in glob.glob("/sys/fs/cgroup/*")]:
            with contextlib.suppress(OSError):
                os.rmdir(path)  # only when empty: another run may be using it
        watcher.kill()
        watcher.wait()
    return rc


def watch(name):
    """Wait for run ``name``'s run.py (``PID-STARTTIME``) to end, then end its container."""
    pid, started = name.split("-")
    while _started(int(pid)) == started:
        time.sleep(0.2)
    problems = _kill_cgroup(name)
    if problems:
        log("cgroup %s not removed: %s" % (name, "; ".join(problems)))
    for path in [os.path.join(NSPAWN_PROPAGATE, MACHINE % int(pid))] + [
            os.path.join(base, CGROUP_TOP) for base in glob.glob("/sys/fs/cgroup/*")]:
        with contextlib.suppress(OSError):
            os.rmdir(path)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n", maxsplit=1)[0],
        usage="%%(prog)s --core {%s} [--bind DIR]... [--no-version] -- COMMAND..."
        % ",".join(CORES))
    parser.add_argument("--core", required=True, choices=sorted(CORES))
    parser.add_argument("--bind", action="append", default=[],
                        help="(container) bind this directory at its own path too")
    parser.add_argument("--no-version", action="store_true",
                        help="do not print the ansible-playbook --version line first")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    if argv is None and sys.argv[1:2] == ["--watch"]:
        watch(sys.argv[2])
        return 0
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no COMMAND after --")
    try:
        where = CORES[args.core]
        if args.inside or where == "host":
            python = sys.executable if args.inside else getattr(
                sys, "_base_executable", sys.executable)
            run_in_venv(args.core, python, command, not args.no_version)
        if os.geteuid() != 0:
            raise ControllerError("--core %s runs in a container: run as root" % args.core)
        return run_in_container(args.core, command, args.bind, not args.no_version)
    except (ControllerError, subprocess.CalledProcessError) as exc:
        log("error: %s" % exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
