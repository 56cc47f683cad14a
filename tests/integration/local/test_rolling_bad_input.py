"""Bad deploy variables stop the rolling role at its first check, with a message that names
only the variables at fault, before anything is read or changed on any host.

The play runs on the controller itself over the local connection: a role that got further than
its variable checks would try to read /srv/demo and take a deploy lock, and fail otherwise.
"""
import json
import os
import re
import subprocess
import sys

import pytest

BIN = os.path.dirname(sys.executable)

PLAY = """\
- name: The rolling role with bad variables
  hosts: localhost
  gather_facts: false
  roles:
    - role: hitless.deploy.rolling
"""


TASK_RE = re.compile(r"^TASK \[hitless\.deploy\.rolling : (.*?)\] \**$", re.M)
FATAL_RE = re.compile(r"^fatal: \[localhost\]: FAILED! => (\{.*\})$", re.M)


def run_role(tmp_path, variables):
    """Run the role with ``variables``; return the names of the tasks it started and the
    message of the last failure."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY)
    proc = subprocess.run(
        [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
         str(playbook), "-e", json.dumps(variables)],
        capture_output=True, text=True, timeout=120, check=False,
        env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_CALLBACK_RESULT_FORMAT="json"))
    assert proc.returncode != 0, proc.stdout[-2000:]
    failures = FATAL_RE.findall(proc.stdout)
    assert failures, proc.stdout[-2000:]
    return TASK_RE.findall(proc.stdout), json.loads(failures[-1])["msg"]


@pytest.mark.parametrize("variables, named, not_named", [
    ({"rolling_haproxy_hosts": [], "rolling_release_name": "v2"},
     ["rolling_haproxy_hosts must name at least one HAProxy host", "hitless_rolling_haproxy_hosts"],
     ["rolling_clone_port", "Set rolling_release_src"]),
    ({"rolling_haproxy_hosts": ["lb1"], "rolling_release_name": "v2", "rolling_clone_port": 8080},
     ["rolling_clone_port must be a port other than rolling_port (8080); got 8080"],
     ["rolling_haproxy_hosts", "Set rolling_release_src"]),
    ({"rolling_haproxy_hosts": ["lb1"]},
     ["Set rolling_release_src", "rolling_release_url", "rolling_release_name"],
     ["rolling_haproxy_hosts", "rolling_clone_port"]),
    ({"rolling_haproxy_hosts": ["lb1"], "rolling_release_name": "v2",
      "rolling_hooks": {"after_upgrade": "/x.yml", "before_rout_back": "/y.yml"}},
     ["rolling_hooks names no phase with before_rout_back (hooks are before_ or after_ one of "
      "preflight, prepare, clone, route_to_clone, upgrade, post_start, route_back, bake, cleanup)"],
     ["after_upgrade", "rolling_clone_port"]),
    ({"rolling_haproxy_hosts": ["lb1"], "rolling_release_name": "v2",
      "rolling_ports": [8080, 8082], "rolling_clone_ports": [8081]},
     ["rolling_clone_ports must give one clone port for each port of rolling_ports ([8080, 8082])"
      " or be empty (each port + 1); got [8081]"],
     ["rolling_clone_port ", "Set rolling_release_src"]),
    # Each port + 1 collides with the next instance's port.
    ({"rolling_haproxy_hosts": ["lb1"], "rolling_release_name": "v2", "rolling_ports": [8080, 8081]},
     ["rolling_ports and rolling_clone_ports must be ports (1-65535), all different;"
      " got [8080, 8081] and clone ports [8081, 8082]"],
     ["rolling_clone_ports must give", "Set rolling_release_src"]),
    ({"rolling_haproxy_hosts": ["lb1"], "rolling_release_name": "v2", "rolling_instance_clones": False},
     ["rolling_instance_clones false swaps instances one at a time while the others serve, so it"
      " needs at least two instances in rolling_ports; got [8080]"],
     ["rolling_clone_port", "Set rolling_release_src"]),
])
def test_bad_variables_are_named_and_nothing_is_read(tmp_path, variables, named, not_named):
    names, message = run_role(tmp_path, variables)
    assert message.startswith("hitless.deploy.rolling failed on localhost at step preflight "
                              "(Check the deploy variables): "), message
    assert message.endswith("Nothing was changed."), message
    for text in named:
        assert text in message, message
    cause = message.split("): ", 1)[1]
    for text in not_named:
        assert text not in cause, message
    # Stopped before reading the host or taking the lock.
    assert "Read the journal, the links and who runs on the app ports" not in names, names
    assert not any(name.startswith("Take the deploy lock") for name in names), names


def test_rolling_part_is_refused_naming_the_entry_points(tmp_path):
    """A playbook written for the switch that chose a part (rolling_part: stage) would now run
    the whole deploy in its first play: refused before the role reads or changes anything."""
    names, message = run_role(tmp_path, {"rolling_part": "stage", "rolling_haproxy_hosts": ["lb1"],
                                         "rolling_release_name": "v2"})
    assert message.startswith("rolling_part (stage) was replaced by the role's entry points: "
                              "import the role with tasks_from: stage, swap or finish"), message
    assert names == ["Validating arguments against arg spec 'main' - Deploy one app host without "
                     "dropping a request (clone, swap, upgrade, check, swap back)",
                     "Refuse rolling_part, replaced by the entry points"], names
