"""Extra labs for the deploy tests: ``booted_lab(name, *args)`` boots one with tests/lab/lab.py
(``booted_labs`` several side by side) and always tears it down again, also when ``up`` failed
halfway or the test body raised.

The session ``lab`` fixture (conftest.py) boots the usual lb + 2 app hosts with it; the rolling
tests boot other shapes (two LB hosts, HAProxy on the app host) for one module.
"""
import concurrent.futures
import contextlib
import os
import subprocess
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
LAB = os.path.join(REPO, "tests", "lab", "lab.py")
UP_TIMEOUT = 900  # a first run builds the rootfs before booting and provisioning
DOWN_TIMEOUT = 300


class LabError(Exception):
    pass


class BootedLab:
    """A booted lab: inventory, URL of every LB host, hosts, groups, and ssh to a host."""

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


def ensure_releases():
    """The sample app's release archives, brought up to date with its sources (the builder is
    reproducible and rewrites only an archive that changed, in a second)."""
    releases = os.environ.setdefault("HITLESS_RELEASES", os.path.join(REPO, ".tmp", "releases"))
    builder = os.path.join(REPO, "tests", "sample_app", "build_releases.py")
    subprocess.run([sys.executable, builder, releases], check=True, capture_output=True, timeout=120)
    return releases


def _lab(command, name, args, timeout):
    # Not the session's stdin: Ansible refuses a stdin that a sibling made non-blocking.
    return subprocess.run([sys.executable, LAB, command, "--name", name] + list(args),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _tail(proc, lines=60):
    text = (proc.stdout or "") + (proc.stderr or "")
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def booted_labs(*specs):
    """Boot the labs ``specs`` (each ``(name, *lab.py up options)``) side by side; yield a
    :class:`BootedLab` for each, in order.

    ``down`` runs for every one of them in every case; its failure raises after the body
    (leftovers would break the next run), without hiding the body's own exception.
    """
    ensure_releases()
    finished = False
    try:
        with concurrent.futures.ThreadPoolExecutor(len(specs)) as pool:
            ups = list(pool.map(lambda spec: _lab("up", spec[0], spec[1:], UP_TIMEOUT), specs))
        labs = []
        for spec, up in zip(specs, ups):
            outputs = dict(line.split("=", 1) for line in up.stdout.splitlines()[-2:]
                           if "=" in line)
            if up.returncode != 0 or set(outputs) != {"INVENTORY", "LB_URL"}:
                raise LabError("lab.py up --name %s %s failed (exit %d):\n%s"
                               % (spec[0], " ".join(spec[1:]), up.returncode, _tail(up)))
            labs.append(BootedLab(spec[0], outputs["INVENTORY"], outputs["LB_URL"]))
        yield labs
        finished = True
    finally:
        with concurrent.futures.ThreadPoolExecutor(len(specs)) as pool:
            downs = list(pool.map(lambda spec: _lab("down", spec[0], (), DOWN_TIMEOUT), specs))
        problems = ["lab.py down --name %s failed:\n%s" % (spec[0], _tail(down))
                    for spec, down in zip(specs, downs) if down.returncode != 0]
        if problems and finished:
            raise LabError("\n".join(problems))
        for problem in problems:
            # The exception already on its way is the one to see; this one must not vanish.
            sys.stderr.write(problem + "\n")


@contextlib.contextmanager
def booted_lab(name, *args):
    """Boot lab ``name`` with ``lab.py up`` options ``args``; yield a :class:`BootedLab`."""
    with booted_labs((name,) + args) as labs:
        yield labs[0]


def guest_run(name, host, command, timeout=30):
    """Run ``command`` (sh) inside lab ``name``'s ``host`` without SSH: in the namespaces of
    its systemd (nsenter), so a test can take the host's sshd away and bring it back."""
    sys.path.insert(0, os.path.dirname(LAB))
    import lab as lab_tool  # noqa: E402  (tests/lab/lab.py)
    info = (lab_tool.load_state(name) or {}).get("hosts", {}).get(host)
    _nspawn, pid1 = lab_tool.guest_pids(lab_tool.host_pids(name, host, info))
    if not pid1:
        raise LabError("lab %s: host %s has no running systemd" % (name, host))
    return subprocess.run(["nsenter", "-t", str(pid1), "-a", "--", "/bin/sh", "-c", command],
                          capture_output=True, text=True, timeout=timeout, check=False)


SSH_DOWN = ("systemctl stop ssh.socket ssh.service >/dev/null 2>&1; pkill -KILL sshd; "
            "! ss -ltn | grep -q ':22 '")
SSH_UP = "systemctl start ssh.service && for i in $(seq 50); do ss -ltn | grep -q ':22 ' && exit 0; sleep 0.1; done; exit 1"
