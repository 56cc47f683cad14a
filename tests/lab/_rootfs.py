"""The shared, read-only root file systems lab hosts boot from (the overlays' lower dirs).

One per Debian release (suite): bullseye (11), bookworm (12, the default) or trixie (13).
Each is built once with debootstrap into a temporary directory and renamed into the cache only
when complete, so an interrupted build is never booted. The cache key covers the suite, the
package list and the customisation, so changing any builds a fresh one beside the old.
"""
import contextlib
import fcntl
import glob
import hashlib
import json
import os
import tempfile
import time

import _proc
import _sources

CACHE = os.environ.get("LAB_CACHE", "/var/cache/hitless-deploy-lab")
SUITE = "bookworm"  # the default
# What each suite ships, for the record (checked by hand and by test_platforms.py).
SUITES = {
    "bullseye": {"debian": "11", "systemd": "247", "python": "3.9", "haproxy": "2.2"},
    "bookworm": {"debian": "12", "systemd": "252", "python": "3.11", "haproxy": "2.6"},
    "trixie": {"debian": "13", "systemd": "257", "python": "3.13", "haproxy": "3.0"},
}
VARIANT = "minbase"
# nodejs: the real Node.js app of tests/real_apps runs on Debian's own (docs/apps.md);
# redis-server: the queue host's (lab.py up --queue-host), for the RQ workers of tests/real_apps.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "iproute2",
            "haproxy", "nodejs", "redis-server")
# Packages split out of systemd in later releases that the lab needs (networkd configures
# host0; in trixie it is still in systemd, resolved is not needed).
EXTRA_PACKAGES = {}
# Bump when customise() changes, so existing caches are not reused.
CUSTOMISE_VERSION = 2

SSHD_DROP_IN = ("# Each lab host generates its own ed25519 host key when its overlay is made.\n"
                "HostKey /etc/ssh/ssh_host_ed25519_key\n")


def check_suite(suite):
    if suite not in SUITES:
        raise ValueError("suite %r: one of %s" % (suite, ", ".join(SUITES)))
    return suite


def packages(suite=SUITE):
    return tuple(PACKAGES) + tuple(EXTRA_PACKAGES.get(suite, ()))


def cache_key(suite=SUITE):
    spec = {"suite": suite, "variant": VARIANT, "packages": sorted(packages(suite)),
            "customise": CUSTOMISE_VERSION}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def path(suite=SUITE):
    return os.path.join(CACHE, "rootfs-%s-%s" % (suite, cache_key(suite)))


@contextlib.contextmanager
def locked(lock_path):
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _discard(tree):
    # debootstrap mounts /proc and /sys (and may bind /dev) inside the target while it works.
    left = _proc.umount_all(tree)
    if left:
        raise RuntimeError("cannot discard %s: still mounted: %s" % (tree, ", ".join(left)))
    _proc.remove_tree(tree)


def customise(root):
    def rel(p):
        return os.path.join(root, p.lstrip("/"))

    _proc.run(["systemctl", "--root", root, "enable", "systemd-networkd"])
    # The haproxy role enables HAProxy where it belongs; app hosts must not run one.
    _proc.run(["systemctl", "--root", root, "disable", "haproxy"])
    # Only the queue host runs Redis (tests/lab/site.yml enables it there).
    _proc.run(["systemctl", "--root", root, "disable", "redis-server"])
    # Empty: systemd fills it from nspawn's --uuid, one id per host. dbus's copy must follow
    # it, or every host reports the id written when the rootfs was built.
    with open(rel("/etc/machine-id"), "w"):
        pass
    dbus_id = rel("/var/lib/dbus/machine-id")
    if os.path.lexists(dbus_id):
        os.unlink(dbus_id)
    os.makedirs(os.path.dirname(dbus_id), exist_ok=True)
    os.symlink("/etc/machine-id", dbus_id)
    for key in glob.glob(rel("/etc/ssh/ssh_host_*")):
        os.unlink(key)
    os.makedirs(rel("/etc/ssh/sshd_config.d"), exist_ok=True)
    with open(rel("/etc/ssh/sshd_config.d/hitless-lab.conf"), "w") as handle:
        handle.write(SSHD_DROP_IN)
    for deb in glob.glob(rel("/var/cache/apt/archives/*.deb")):
        os.unlink(deb)


def ensure(log, suite=SUITE):
    """Return the cached rootfs of ``suite``, building it first if needed (about 75 s)."""
    check_suite(suite)
    final = path(suite)
    if os.path.isdir(final):
        return final
    os.makedirs(CACHE, exist_ok=True)
    with locked(os.path.join(CACHE, ".lock")):
        if os.path.isdir(final):
            return final
        for stale in glob.glob(os.path.join(CACHE, ".build-*")):
            log("rootfs: discarding unfinished build %s" % stale)
            _discard(stale)
        mirror = os.environ.get("LAB_MIRROR") or _sources.find_mirror(suite)
        build = tempfile.mkdtemp(prefix=".build-", dir=CACHE)
        # mkdtemp makes it 0700; as the guests' / it must let non-root users through.
        os.chmod(build, 0o755)
        build_log = final + ".log"
        log("rootfs: debootstrap %s %s from %s into %s (once, about 75 s; log %s)"
            % (VARIANT, suite, mirror, final, build_log))
        started = time.monotonic()
        cmd = ["debootstrap", "--variant=" + VARIANT,
               "--include=" + ",".join(packages(suite)), suite, build, mirror]
        try:
            with open(build_log, "w") as out:
                _proc.run(cmd, stdout=out, stderr=out, capture_output=False)
            customise(build)
        except Exception:
            with open(build_log, errors="replace") as out:
                tail = out.read()[-3000:]
            log("rootfs: build failed; last lines of %s:\n%s" % (build_log, tail))
            _discard(build)
            raise
        left = _proc.mounts_under(build)
        if left:
            raise RuntimeError("rootfs build left mounts behind: %s" % ", ".join(left))
        os.rename(build, final)
        log("rootfs: built in %.0f s" % (time.monotonic() - started))
    return final
