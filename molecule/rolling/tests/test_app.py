"""After the rolling deploy, every app host serves v2 from its original instance only."""
import json
import os

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("app")

APP = "demo"
PORT = 8080
CLONE_PORT = 8081
ROOT = "/srv/%s" % APP
# testinfra quotes every argument with shlex.quote: strings only.
UNIT = "%s@%d" % (APP, PORT)
CLONE_UNIT = "%s@%d" % (APP, CLONE_PORT)


def v2_dir(host):
    """v2 with its configuration: the directory is named v2+<digest of the rendered files>."""
    return host.file(ROOT + "/current").linked_to


def test_current_is_v2_and_previous_is_v1(host):
    current = host.file(ROOT + "/current")
    assert current.is_symlink
    assert current.linked_to.startswith(ROOT + "/releases/v2+")
    previous = host.file(ROOT + "/previous")
    assert previous.is_symlink
    assert previous.linked_to == ROOT + "/releases/v1"


def test_v2_is_not_marked_bad(host):
    assert not host.file(ROOT + "/.hitless/bad/" + v2_dir(host).rsplit("/", 1)[1]).exists


def test_v2_has_its_environment_file(host):
    env = host.file(v2_dir(host) + "/.env")
    assert env.is_file
    assert env.user == "root"
    assert env.group == APP
    assert env.mode == 0o640
    assert "STARTUP_DELAY=" in env.content_string


def test_original_runs_enabled(host):
    service = host.service(UNIT)
    assert service.is_running
    assert service.is_enabled


def test_original_runs_from_v2(host):
    pid = host.check_output("systemctl show --property=MainPID --value %s", UNIT)
    assert int(pid) > 0
    # The instance sees its release at ROOT/current in a mount namespace of its own
    # (docs/apps.md), so its working directory reads ROOT/current; the directory itself (device
    # and inode) is v2's.
    assert host.check_output("readlink /proc/%s/cwd", pid) == ROOT + "/current"
    identity = "stat --dereference --format=%%d:%%i %s"
    assert host.check_output(identity, "/proc/%s/cwd" % pid) == host.check_output(identity, v2_dir(host))


def test_clone_is_gone(host):
    # Not active, not even starting or failed: unknown to systemd or plainly inactive.
    state = host.check_output("systemctl show --property=ActiveState --value %s", CLONE_UNIT)
    assert state == "inactive", "%s is %s" % (CLONE_UNIT, state)
    assert not host.file("/run/systemd/system/%s.service.d" % CLONE_UNIT).exists
    assert not host.socket("tcp://0.0.0.0:%d" % CLONE_PORT).is_listening


def test_only_the_original_instance_is_active(host):
    units = host.check_output(
        "systemctl list-units --plain --no-legend --state=active '%s@*.service'", APP)
    names = sorted(line.split()[0] for line in units.splitlines() if line.strip())
    assert names == [UNIT + ".service"]


def test_original_answers_v2(host, http_get):
    status, body = http_get(host, "http://127.0.0.1:%d/" % PORT)
    assert status == 200
    identity = json.loads(body)
    assert identity["version"] == "v2"
    assert identity["port"] == PORT
