"""The app role on the app hosts: unprivileged user, release layout, hardened running unit."""
import json
import os

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("app")

APP = "demo"
PORT = 8080
UNIT = "%s@%d" % (APP, PORT)
ROOT = "/srv/%s" % APP
SYSTEMD_TRUE = ("yes", "true", "on", "1")


def unit_properties(host, *names):
    out = host.check_output("systemctl show --property=%s %s", ",".join(names), UNIT)
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_app_user_is_not_root(host):
    user = host.user(APP)
    assert user.exists
    assert user.uid != 0
    assert user.group == APP


def test_release_layout(host):
    assert host.file(ROOT + "/releases").is_directory
    assert host.file(ROOT + "/shared").is_directory
    current = host.file(ROOT + "/current")
    assert current.is_symlink
    assert current.linked_to == ROOT + "/releases/v1"
    assert host.file(ROOT + "/releases/v1/app.py").is_file


def test_unit_running_and_enabled(host):
    service = host.service(UNIT)
    assert service.is_running
    assert service.is_enabled


def test_unit_file_is_hardened(host):
    props = unit_properties(host, "FragmentPath", "NoNewPrivileges", "ProtectSystem", "PrivateTmp")
    # What systemd applies, whatever spelling the unit uses ...
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["PrivateTmp"] == "yes"
    # ... and it comes from the template unit itself, not from a drop-in that could go away.
    unit_file = host.file(props["FragmentPath"])
    assert unit_file.path.endswith("/%s@.service" % APP)
    directives = dict(
        line.strip().split("=", 1)
        for line in unit_file.content_string.splitlines()
        if "=" in line and not line.lstrip().startswith(("#", ";"))
    )
    assert directives.get("NoNewPrivileges") in SYSTEMD_TRUE
    assert directives.get("ProtectSystem") == "strict"
    assert directives.get("PrivateTmp") in SYSTEMD_TRUE


def test_process_runs_as_app_user(host):
    pid = int(unit_properties(host, "MainPID")["MainPID"])
    assert pid > 0
    status = host.file("/proc/%d/status" % pid).content_string
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    # real, effective, saved and filesystem uid: all of them, so nothing can switch back.
    assert set(uids) == {str(host.user(APP).uid)}


def test_port_listens(host):
    # The sample app binds IPv4 only (BIND defaults to 0.0.0.0).
    assert host.socket("tcp://0.0.0.0:%d" % PORT).is_listening


def test_health_answers_200(host, http_get):
    status, _body = http_get(host, "http://127.0.0.1:%d/health" % PORT)
    assert status == 200


def test_root_answers_release_v1(host, http_get):
    status, body = http_get(host, "http://127.0.0.1:%d/" % PORT)
    assert status == 200
    identity = json.loads(body)
    assert identity["version"] == "v1"
    assert identity["port"] == PORT
