"""The rolling deploy on every supported Debian release, and on a fleet that mixes them.

Three labs, booted side by side for this module only, each one LB host (lb1) in front of ONE
app host (app1) to keep the run short:
- ``itest-deb11``: Debian 11 (bullseye) everywhere: systemd 247, Python 3.9, HAProxy 2.2 (no
  dynamic servers worth the name, no ``option idle-close-on-response``: the clone goes into the
  declared slot ``app1-clone``, as in every lab).
- ``itest-deb13``: Debian 13 (trixie) everywhere: systemd 257, Python 3.13, HAProxy 3.0.
- ``itest-mixed``: HAProxy 3.0 on trixie in front of a bullseye app host (Python 3.9,
  systemd 247).
(Debian 12, bookworm, is what every other lab test runs on.)

Each test first checks that the hosts run the intended release (``/etc/os-release``), HAProxy,
Python and systemd, then deploys v1 -> v2 under the load probe and the ``show stat`` poller: no
failed request, never fewer UP servers than app hosts, the clone answered (port 8081) with v1
while the original restarted, only v2 from the original after the playbook, and a clean state
after. The figures (requests, failed, min UP, seconds, versions) go to
``.tmp/itest/platforms.json``, one entry per lab, for docs/platforms.md.
"""
import json
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _deploy import (CLONE_PORT, PORT, base_name, check_clean, check_under_load,  # noqa: E402
                     current_release, deploy)
from _labs import REPO, booted_labs  # noqa: E402

FIGURES = os.path.join(REPO, ".tmp", "itest", "platforms.json")

# What each Debian release ships (tests/lab/_rootfs.py SUITES says the same).
RELEASES = {
    "bullseye": {"debian": "11", "systemd": "247", "python": "3.9", "haproxy": "2.2"},
    "bookworm": {"debian": "12", "systemd": "252", "python": "3.11", "haproxy": "2.6"},
    "trixie": {"debian": "13", "systemd": "257", "python": "3.13", "haproxy": "3.0"},
}
LABS = {
    # name: (app hosts' suite, LB host's suite)
    "itest-deb11": ("bullseye", "bullseye"),
    "itest-deb13": ("trixie", "trixie"),
    "itest-mixed": ("bullseye", "trixie"),
}


@pytest.fixture(scope="module")
def labs():
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (overlay mounts, bridges, systemd-nspawn)")
    specs = [(name, "--app-hosts", "1", "--suite", app, "--lb-suite", lb)
             for name, (app, lb) in LABS.items()]
    with booted_labs(*specs) as booted:
        yield dict(zip(LABS, booted))


# One ssh round trip: what the host runs, as KEY=VALUE lines.
VERSIONS = ("echo debian=$(. /etc/os-release && echo $VERSION_ID $VERSION_CODENAME); "
            "echo python=$(python3 -c 'import sys; print(\"%d.%d.%d\" % sys.version_info[:3])'); "
            "echo systemd=$(systemctl --version | sed -n '1s/^systemd \\([0-9]*\\).*/\\1/p'); "
            "echo haproxy=$(haproxy -v 2>/dev/null | sed -n '1s/.*version \\([0-9.]*\\).*/\\1/p')")


def host_versions(lab, host):
    proc = lab.ssh(host, VERSIONS)
    assert proc.returncode == 0, (host, proc.stdout, proc.stderr)
    return dict(line.split("=", 1) for line in proc.stdout.splitlines())


def check_platform(lab, host, suite):
    """``host`` runs Debian ``suite`` with its own systemd, Python and HAProxy; return them."""
    want = RELEASES[suite]
    got = host_versions(lab, host)
    assert got["debian"] == "%s %s" % (want["debian"], suite), (host, got)
    assert got["systemd"] == want["systemd"], (host, got)
    assert re.match(r"%s\.\d+$" % re.escape(want["python"]), got["python"]), (host, got)
    # Every lab host has the package (the rootfs is shared); only LB hosts run it.
    assert re.match(r"%s\.\d+$" % re.escape(want["haproxy"]), got["haproxy"]), (host, got)
    return got


def record(name, figures):
    """Add this lab's figures to FIGURES (created by the first test of the run)."""
    os.makedirs(os.path.dirname(FIGURES), exist_ok=True)
    try:
        with open(FIGURES) as handle:
            data = json.load(handle)
    except (FileNotFoundError, ValueError):
        data = {}
    data[name] = figures
    with open(FIGURES + ".tmp", "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    os.replace(FIGURES + ".tmp", FIGURES)


def deploy_on(lab, tmp_path):
    app_suite, lb_suite = LABS[lab.name]
    assert lab.groups == {"haproxy": ["lb1"], "app": ["app1"]}
    platform = {"lb1": check_platform(lab, "lb1", lb_suite),
                "app1": check_platform(lab, "app1", app_suite)}
    assert current_release(lab, "app1") == "v1"

    result = deploy(lab, tmp_path, release="v2")
    figures = {
        "app_suite": app_suite, "lb_suite": lb_suite, "rc": result.rc,
        "requests": result.requests, "failed": result.failed,
        "min_up": {lb: p["min_up"] for lb, p in result.pollers.items()},
        "seconds": round(result.seconds, 1), "by_version": result.by_version,
        "by_instance": result.by_instance,
        "haproxy": platform["lb1"]["haproxy"], "lb_systemd": platform["lb1"]["systemd"],
        "lb_debian": platform["lb1"]["debian"], "app_debian": platform["app1"]["debian"],
        "app_python": platform["app1"]["python"], "app_systemd": platform["app1"]["systemd"],
    }
    record(lab.name, figures)
    print("%s: %s" % (lab.name, json.dumps(figures, sort_keys=True)))

    assert result.rc == 0, result.tail()
    check_under_load(result, swapped=["app1"], app_hosts=["app1"])
    # Who answered: the clone stood in with the old release while the original restarted, and
    # once the playbook ended only the original, with the new one.
    assert result.versions_from("app1", CLONE_PORT) == {"v1"}, result.by_instance
    assert result.versions_from("app1", PORT) == {"v1", "v2"}, result.by_instance
    assert result.answered_after_end() == {("app1", "v2")}, result.answered_after_end()
    rec = result.records["app1"]
    assert (rec["outcome"], base_name(rec["release"]), base_name(rec["from_release"])) == (
        "deployed", "v2", "v1"), rec
    check_clean(lab, "v2")
    # HAProxy's configuration passes its own check with no warning on this version.
    check = lab.ssh("lb1", "haproxy -dW -c -f /etc/haproxy/haproxy.cfg")
    assert check.returncode == 0, (check.stdout, check.stderr)


def test_debian_11_bullseye(labs, tmp_path):
    deploy_on(labs["itest-deb11"], tmp_path)


def test_debian_13_trixie(labs, tmp_path):
    deploy_on(labs["itest-deb13"], tmp_path)


def test_mixed_haproxy_3_0_on_trixie_in_front_of_bullseye(labs, tmp_path):
    deploy_on(labs["itest-mixed"], tmp_path)
