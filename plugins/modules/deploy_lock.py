#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: deploy_lock
short_description: One rollout per HAProxy backend at a time, recording who holds it
version_added: 0.1.0
description:
  - Takes, leaves or removes the deploy lock of one HAProxy backend, a JSON file
    C(LOCK_DIR/BACKEND.json) on the HAProxy host. Run it on every HAProxy host of the backend
    (C(delegate_to)). M(hitless.deploy.deploy_lock_info) reads it.
  - The lock names its holder (controller host, user, ansible-playbook pid, release, start time)
    and the O(deploy_id) of the rollout, and lists the app hosts of that rollout that have not
    finished. A second rollout with another O(deploy_id) is refused with a message naming the
    holder, before it changes anything. Rollouts that share a O(deploy_id) (the slices of one
    sliced job, a re-run to resume) enter together.
  - Changes are made under an C(flock) and written atomically (temporary file, fsync, rename).
  - The action plugin fills O(holder) and the default O(deploy_id) on the controller. When the
    lock's holder ran on this same controller and its process is gone, it takes the lock over
    (the unfinished hosts stay listed, to be repaired); a holder on another controller can only
    be taken over by naming its deploy id in O(takeover_from).
author: hitless.deploy developers (@hitless-deploy)
extends_documentation_fragment:
  - hitless.deploy.attributes
attributes:
  check_mode:
    support: full
    details: Reports whether the lock would be taken or left; refuses as a real run would.
  diff_mode:
    support: full
    details: The lock before and after.
options:
  backend:
    description: The HAProxy backend the rollout rewrites; one lock per backend.
    type: str
    required: true
  state:
    description:
      - V(held) enters the lock for O(host), creating it with O(hosts) when it is free, and fails
        when another rollout holds it.
      - V(released) removes the hosts of O(host) from the lock; the lock is free when no host is
        left.
      - V(absent) frees the lock if O(deploy_id) holds it (a rollout that stops).
      - V(released) and V(absent) never touch a lock held by another O(deploy_id).
    type: str
    choices: [held, released, absent]
    default: held
  deploy_id:
    description:
      - Identity of the rollout. Empty (the default) makes the action plugin derive one from the
        controller's host name and the ansible-playbook process (pid and start time), which is
        the same for every host and batch of one run.
    type: str
    default: ""
  host:
    description:
      - The app host entering or leaving (O(state=held), O(state=released)), or a list of them,
        so that the hosts of a serial batch enter or leave in one call per HAProxy host.
      - A run entering with the same O(deploy_id) as the lock's answers for these hosts from
        then on (the slices of a sliced job, a re-run that resumes).
    type: list
    elements: str
  hosts:
    description: All app hosts of the rollout, listed when the lock is created.
    type: list
    elements: str
    default: []
  holder:
    description:
      - Extra fields recorded about the holder (for example C(release)); C(controller),
        C(user), C(pid), C(pid_start) and C(started) are filled by the action plugin.
    type: dict
    default: {}
  takeover_from:
    description:
      - Take over a lock held by this deploy id (its holder is gone, for example a CI runner
        that died). Its unfinished hosts stay listed.
    type: str
  takeover_dead:
    description:
      - Let the action plugin take over a lock whose holder ran on this controller and whose
        process is gone.
    type: bool
    default: true
  lock_dir:
    description: Directory of the lock files.
    type: path
    default: /var/lib/hitless-deploy/locks
  haproxy_socket:
    description:
      - With O(state=held), also read backend O(backend) from this HAProxy admin socket once the
        lock is held, and return it as RV(backends), in the form of
        M(hitless.deploy.haproxy_info)'s RV(hitless.deploy.haproxy_info#module:backends).
      - The rolling role's preflight locks and reads in this one call per HAProxy host; what it
        reads can no longer be changed by another rollout of the backend.
    type: str
notes:
  - The lock is not a change to the host in the sense of idempotence; the rolling role reports
    its tasks as not changed.
seealso:
  - module: hitless.deploy.deploy_lock_info
  - ref: ansible_collections.hitless.deploy.rolling_role
    description: >-
      The rolling deploy role, which takes this lock on every HAProxy host before a rollout
      and leaves it after. See C(ansible-doc -t role hitless.deploy.rolling).
"""

EXAMPLES = r"""
- name: Take the deploy lock of backend demo on every HAProxy host
  hitless.deploy.deploy_lock:
    backend: demo
    host: "{{ inventory_hostname }}"
    hosts: "{{ ansible_play_hosts_all }}"
    holder:
      release: app-2.4.1
  delegate_to: "{{ item }}"
  loop: "{{ groups['haproxy'] }}"
  register: lock

- name: Leave it when this host is done
  hitless.deploy.deploy_lock:
    backend: demo
    deploy_id: "{{ lock.results[0].deploy_id }}"
    host: "{{ inventory_hostname }}"
    state: released
  delegate_to: "{{ item }}"
  loop: "{{ groups['haproxy'] }}"

- name: Or leave it once for the whole serial batch
  hitless.deploy.deploy_lock:
    backend: demo
    deploy_id: "{{ lock.results[0].deploy_id }}"
    host: "{{ ansible_play_batch }}"
    state: released
  delegate_to: "{{ item }}"
  loop: "{{ groups['haproxy'] }}"
  run_once: true
"""

RETURN = r"""
deploy_id:
  description: The deploy id used (derived on the controller when O(deploy_id) was empty).
  returned: always
  type: str
lock:
  description: The lock after the task (null when free).
  returned: success
  type: dict
held_by:
  description: The lock of the other rollout that made the task fail.
  returned: failure
  type: dict
took_over_from:
  description: The deploy id whose lock was taken over, or null.
  returned: success
  type: str
holder_gone:
  description: True when the action plugin took over the lock of a dead holder on this controller.
  returned: when it did
  type: bool
path:
  description: The lock file.
  returned: success
  type: str
backends:
  description: Backend O(backend) as HAProxy shows it, keyed by its name.
  returned: with O(haproxy_socket) and O(state=held)
  type: dict
haproxy_version:
  description: HAProxy's version, from C(show info) (C(add server) came with 2.5).
  returned: with O(haproxy_socket) and O(state=held)
  type: str
  sample: 2.6.12-1+deb12u2
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hitless.deploy.plugins.module_utils._deploy_lock import (
    STATES,
    LockError,
    ensure,
)
from ansible_collections.hitless.deploy.plugins.module_utils._haproxy_runtime import (
    HAProxyRuntimeError,
    open_client,
    runtime_error_message,
)


def read_backend(socket_path, backend):
    """The backend and HAProxy's version (what its runtime API can do), over one socket."""
    client = open_client(socket_path, 5.0)
    return client.backends(backend, probe_dynamic=True), client.version()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            backend=dict(type="str", required=True),
            state=dict(type="str", default="held", choices=list(STATES)),
            deploy_id=dict(type="str", default=""),
            host=dict(type="list", elements="str"),
            hosts=dict(type="list", elements="str", default=[]),
            holder=dict(type="dict", default={}),
            takeover_from=dict(type="str"),
            takeover_dead=dict(type="bool", default=True),
            lock_dir=dict(type="path", default="/var/lib/hitless-deploy/locks"),
            haproxy_socket=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    try:
        result = ensure(module.params, module.check_mode)
    except LockError as e:
        module.fail_json(msg=e.msg, param=e.param, held_by=e.lock)
    except (IOError, OSError) as e:
        module.fail_json(msg="lock of backend %s: %s" % (module.params["backend"], e))
    if module.params["haproxy_socket"] and module.params["state"] == "held":
        try:
            result["backends"], result["haproxy_version"] = read_backend(
                module.params["haproxy_socket"], module.params["backend"])
        except ValueError as e:
            # open_client names its option "socket": here it is haproxy_socket.
            module.fail_json(msg="haproxy_%s" % e, **result)
        except HAProxyRuntimeError as e:
            module.fail_json(msg=runtime_error_message(e, "haproxy_socket"), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
