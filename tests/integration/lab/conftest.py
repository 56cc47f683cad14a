"""The ``lab`` fixture: real lab hosts (systemd-nspawn guests) for the whole test session.

The session boots the lab ``itest`` (or ``$HITLESS_ITEST_LAB``): one LB host and two app
hosts, provisioned by tests/lab/site.yml. It always tears the lab down again, also when booting
failed halfway or a test failed. Needs root, like the lab itself.
"""
import os
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
LAB = os.path.join(REPO, "tests", "lab", "lab.py")
# Another name lets two sessions run side by side (each lab gets its own bridge and /24).
LAB_NAME = os.environ.get("HITLESS_ITEST_LAB", "itest")
UP_TIMEOUT = 900  # a first run builds the rootfs (about 75 s) before booting and provisioning


class Lab:
    """A booted lab: its inventory, load balancer URL, hosts and groups."""

    def __init__(self, name, inventory, lb_url):
        self.name = name
        self.inventory = inventory
        self.lb_url = lb_url
        with open(inventory) as handle:
            data = yaml.safe_load(handle)["all"]
        self.vars = data["vars"]
        self.groups = {group: sorted(body.get("hosts") or {})
                       for group, body in data["children"].items()}
        self.hosts = {}
        for body in data["children"].values():
            for host, host_vars in (body.get("hosts") or {}).items():
                self.hosts[host] = host_vars["ansible_host"]
        self.key = self.vars["ansible_ssh_private_key_file"]

    def ssh(self, host, command, timeout=60, check=False):
        """Run a shell ``command`` on lab ``host`` (inventory name or address) as root."""
        address = self.hosts.get(host, host)
        argv = ["ssh", "-i", self.key, "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "ConnectTimeout=5", "root@" + address, command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              check=check)


def _releases():
    """The release archives the lab's playbook deploys; built when missing."""
    releases = os.environ.setdefault("HITLESS_RELEASES", os.path.join(REPO, ".tmp", "releases"))
    builder = os.path.join(REPO, "tests", "sample_app", "build_releases.py")
    if not os.path.exists(os.path.join(releases, "v1.tar.gz")) and os.path.exists(builder):
        subprocess.run([sys.executable, builder, releases], check=True, capture_output=True)
    return releases


def _lab(command, *args, timeout):
    return subprocess.run([sys.executable, LAB, command, "--name", LAB_NAME, *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def _tail(proc, lines=60):
    text = (proc.stdout or "") + (proc.stderr or "")
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def lab():
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (overlay mounts, bridges, systemd-nspawn)")
    _releases()
    try:
        up = _lab("up", "--app-hosts", "2", "--topology", "lb", timeout=UP_TIMEOUT)
        outputs = dict(line.split("=", 1) for line in up.stdout.splitlines()[-2:]
                       if "=" in line)
        if up.returncode != 0 or set(outputs) != {"INVENTORY", "LB_URL"}:
            pytest.fail("lab.py up --name %s failed (exit %d):\n%s"
                        % (LAB_NAME, up.returncode, _tail(up)), pytrace=False)
        yield Lab(LAB_NAME, outputs["INVENTORY"], outputs["LB_URL"])
    finally:
        down = _lab("down", timeout=300)
        if down.returncode != 0:
            # Teardown problems must not pass silently: the next run would find leftovers.
            pytest.fail("lab.py down --name %s failed:\n%s" % (LAB_NAME, _tail(down)),
                        pytrace=False)
