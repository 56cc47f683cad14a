#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: app_instance
short_description: Start, stop or remove one instance of a systemd template unit, pinned to a release
version_added: 0.1.0
description:
  - Manages the instance C(NAME@PORT.service) of the template unit C(NAME@.service), whose
    instance name is the port it listens on.
  - With O(release_path) (a release directory C(ROOT/releases/NAME)) the instance is pinned to
    that release by a runtime drop-in C(RUNTIME_DIR/NAME@PORT.service.d/hitless-pin.conf). It
    gives the instance its own view of C(ROOT) (C(TemporaryFileSystem=ROOT:ro)), in which the
    release's real path (resolved on the host) is bound read-only onto C(ROOT/current) and
    C(ROOT/shared) is bound read-write, reads the release's O(environment_file) and sets
    C(HITLESS_RELEASE=<release directory name>). Whatever path the instance takes through
    C(current), it reaches that release, also after C(current) moves on the host. Runtime
    drop-ins vanish at reboot, so a clone never outlives one. Without O(release_path) the
    drop-in is removed and the instance gets the template's own view (for the unit of
    P(hitless.deploy.app#role), C(current) as it is when the instance starts). See C(docs/apps.md).
  - Before a start or restart it refuses, changing nothing, when a process outside the unit
    already listens on O(port) (any local address, IPv4 or IPv6), and names that process.
  - After a start or restart it waits until the unit is active and running, a process of the
    unit (in its cgroup, C(ControlGroup)) listens on O(port) and O(wait_host):O(port) accepts
    TCP connections. It fails as soon as the unit dies or a process outside the unit listens on
    the port, instead of taking a stray process's answer for the instance's.
author: hitless.deploy developers (@hitless-deploy)
attributes:
  check_mode:
    support: full
    description: Reports what would change (C(actions)) and changes nothing.
  diff_mode:
    support: full
    description: Shows the active state, the pinned path and the drop-in's content before and after.
options:
  name:
    description: Prefix of the template unit C(NAME@.service); the template must exist on the host.
    type: str
    required: true
  port:
    description: The instance name, and the TCP port the instance listens on (1-65535).
    type: int
    required: true
  state:
    description:
      - V(started) makes the drop-in match O(release_path) and the unit active; it restarts an
        active unit only when its drop-in changed.
      - V(restarted) does the same and always restarts.
      - V(stopped) makes the drop-in match O(release_path) and stops the unit.
      - V(absent) stops the unit, removes the drop-in, reloads systemd and clears a failed state.
    type: str
    choices: [started, stopped, restarted, absent]
    default: started
  release_path:
    description:
      - Release directory C(ROOT/releases/NAME) to pin the instance to; it must exist on the
        host. Symlinks such as C(/srv/demo/current) are resolved on the host, so the pin does
        not move when they do. Paths with blanks, quotes, backslashes or colons are refused.
    type: path
  environment_file:
    description: File inside the release read as C(EnvironmentFile=-) (missing is fine).
    type: str
    default: .env
  original_port:
    description:
      - Port of the original instance this one is a clone of. Equal to O(port) is refused, since a clone
        must never take over the original's unit and port.
    type: int
  wait:
    description:
      - After a start or restart, wait until the unit's own process listens on O(port) and
        O(wait_host):O(port) accepts connections.
      - When V(true) and the instance is already running, also check that no process outside the
        unit listens on O(port).
    type: bool
    default: true
  wait_host:
    description: Address probed by O(wait).
    type: str
    default: 127.0.0.1
  wait_timeout:
    description: Seconds to wait for the port before failing.
    type: int
    default: 60
  runtime_dir:
    description: Directory of runtime unit drop-ins (for tests).
    type: path
    default: /run/systemd/system
notes:
  - The wait checks that the unit's own process accepts connections on the port; use an HTTP
    health check afterwards to know the application is ready.
  - Listeners are read from C(/proc/net/tcp), C(/proc/net/tcp6) and C(/proc/PID/fd), so the
    module must run as root to see other users' processes. A socket-activated unit is refused,
    since its listening socket belongs to PID 1, not to the unit.
seealso:
  - module: hitless.deploy.release
"""

EXAMPLES = r"""
- name: Start a clone on 8081 serving the release that is current now
  hitless.deploy.app_instance:
    name: demo
    port: 8081
    original_port: 8080
    release_path: /srv/demo/current
    state: started

- name: Remove the clone
  hitless.deploy.app_instance:
    name: demo
    port: 8081
    state: absent
"""

RETURN = r"""
unit:
  description: The instance's unit name.
  returned: always
  type: str
  sample: demo@8081.service
active_state:
  description: C(ActiveState) of the unit afterwards (predicted in check mode).
  returned: always
  type: str
  sample: active
sub_state:
  description: C(SubState) of the unit afterwards (predicted in check mode).
  returned: always
  type: str
  sample: running
main_pid:
  description: C(MainPID) of the unit afterwards, 0 when not running.
  returned: always
  type: int
  sample: 4242
running_release_path:
  description:
    - Real path of the release directory the unit's main process works in afterwards, which is
      the release it was started in, or null when not running, unreadable or not a directory of
      the releases directory that the unit's C(WorkingDirectory=) leads into. Found by the
      directory's identity (device and inode), since in the instance's own mount namespace its
      working directory is the mount point C(ROOT/current).
    - In check mode, that of the process running now.
  returned: always
  type: str
  sample: /srv/demo/releases/v1
running_release:
  description: Last component of RV(running_release_path) (the release name), or null.
  returned: always
  type: str
  sample: v1
listeners:
  description:
    - Processes listening on O(port) afterwards (in check mode, now), sorted by PID.
  returned: always
  type: list
  elements: dict
  contains:
    pid:
      description: Process ID.
      type: int
      sample: 4242
    cmdline:
      description: Command line, arguments joined by spaces, at most 200 characters.
      type: str
      sample: /usr/bin/python3 app.py
    unit:
      description: systemd unit (C(.service) or C(.scope)) the process runs in, or null.
      type: str
      sample: demo@8081.service
pinned_to:
  description: Real path the drop-in pins the instance to, or null without a pin.
  returned: always
  type: str
  sample: /srv/demo/releases/v1
drop_in:
  description: Path of the pin drop-in (whether it exists or not).
  returned: always
  type: str
  sample: /run/systemd/system/demo@8081.service.d/hitless-pin.conf
actions:
  description: What was done (or would be, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [write, daemon-reload, start]
diff:
  description: C(active_state), C(pinned_to) and the drop-in's content before and after.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hitless.deploy.plugins.module_utils._app_instance import (
    ARGUMENT_SPEC, InstanceError, ensure, failure, module_systemctl)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    systemctl = module_systemctl(module)
    try:
        result = ensure(module.params, systemctl, module.check_mode)
    except InstanceError as e:
        module.fail_json(**failure(e))
    except (IOError, OSError) as e:
        module.fail_json(msg="%s@%s: %s" % (module.params["name"], module.params["port"], e))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
