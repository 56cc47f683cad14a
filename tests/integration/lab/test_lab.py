"""The lab itself: real systemd hosts, each its own machine, reachable from each other."""
import json
import os
import shlex
import subprocess
import sys
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(REPO, "tests", "lab"))

import _plan  # noqa: E402


def test_inventory_groups(lab):
    net = "10.213.1" if lab.name == "itest" else _plan.lab_net(lab.name)
    assert lab.groups == {"haproxy": ["lb1"], "app": ["app1", "app2"]}
    assert lab.hosts == {"lb1": net + ".10", "app1": net + ".11", "app2": net + ".12"}
    assert lab.lb_url == "http://%s.10:80" % net == lab.vars["lab_lb_url"]
    assert lab.vars["lab_name"] == lab.name
    assert lab.vars["ansible_user"] == "root"
    assert os.path.exists(lab.key)


def test_pid1_is_systemd_and_system_running(lab):
    for host in lab.hosts:
        proc = lab.ssh(host, "cat /proc/1/comm; systemctl is-system-running")
        comm, state = (proc.stdout.split() + ["", ""])[:2]
        assert comm == "systemd", (host, proc.stdout, proc.stderr)
        failed = lab.ssh(host, "systemctl --failed --no-legend --plain").stdout
        assert state == "running", "%s is %s; failed units:\n%s" % (host, state, failed)


def test_each_host_is_its_own_machine(lab):
    seen = {}
    for host in lab.hosts:
        proc = lab.ssh(host, "cat /etc/machine-id /var/lib/dbus/machine-id; hostname")
        machine_id, dbus_id, hostname = proc.stdout.split()
        assert len(machine_id) == 32 and machine_id == dbus_id, (host, proc.stdout)
        assert hostname == host
        seen[machine_id] = host
    assert len(seen) == len(lab.hosts), seen


def test_hosts_reach_each_other_by_name(lab):
    probe = ("import socket, sys\n"
             "for name in sys.argv[1:]:\n"
             "    socket.create_connection((name, 22), timeout=3).close()\n"
             "    print(name, socket.gethostbyname(name))\n")
    names = sorted(lab.hosts)
    for host in names:
        proc = lab.ssh(host, "python3 -c %s %s" % (shlex.quote(probe), " ".join(names)))
        assert proc.returncode == 0, (host, proc.stderr)
        assert dict(line.split() for line in proc.stdout.splitlines()) == {
            name: lab.hosts[name] for name in names}


def test_ansible_reaches_every_host_through_the_inventory(lab):
    ansible = os.path.join(os.path.dirname(sys.executable), "ansible")
    proc = subprocess.run([ansible, "all", "-i", lab.inventory, "-m", "ansible.builtin.ping"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(line.split()[0] for line in proc.stdout.splitlines()
                  if " | SUCCESS => " in line) == sorted(lab.hosts)


def test_status_reports_every_host_reachable(lab):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "lab", "lab.py"),
                           "status", "--name", lab.name, "--json"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hosts = {h["host"]: h for h in json.loads(proc.stdout)["hosts"]}
    assert sorted(hosts) == sorted(lab.hosts)
    for host in hosts.values():
        assert host["state"] == "running" and host["pid1"] and host["nspawn"], host


def test_load_balancer_serves_v1_from_both_app_hosts(lab):
    # Provisioned by tests/lab/site.yml: HAProxy on lb1 in front of the app on both app hosts.
    answers = []
    for _request in range(6):
        with urllib.request.urlopen(lab.lb_url + "/", timeout=10) as response:
            assert response.status == 200
            answers.append(json.loads(response.read()))
    assert {a["version"] for a in answers} == {"v1"}, answers
    assert {a["host"] for a in answers} == set(lab.groups["app"]), answers
