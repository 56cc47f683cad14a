#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: deploy_lock_info
short_description: Read the deploy lock of one HAProxy backend
version_added: 0.1.0
description:
  - Reads the deploy lock that M(hitless.deploy.deploy_lock) keeps for one HAProxy backend, the
    JSON file C(LOCK_DIR/BACKEND.json) on the HAProxy host, without taking or changing it. Run
    it on the HAProxy hosts of the backend (C(delegate_to)).
author: hitless.deploy developers (@hitless-deploy)
extends_documentation_fragment:
  - hitless.deploy.attributes
  - hitless.deploy.attributes.info_module
options:
  backend:
    description: The HAProxy backend whose lock is read.
    type: str
    required: true
  lock_dir:
    description: Directory of the lock files.
    type: path
    default: /var/lib/hitless-deploy/locks
seealso:
  - module: hitless.deploy.deploy_lock
"""

EXAMPLES = r"""
- name: Read who holds the deploy lock of backend demo
  hitless.deploy.deploy_lock_info:
    backend: demo
  delegate_to: "{{ groups['haproxy'][0] }}"
  register: demo_lock

- name: Say who deploys
  ansible.builtin.debug:
    msg: >-
      {{ 'free' if demo_lock.lock is none else 'held by ' ~ demo_lock.lock.deploy_id ~ ' for '
         ~ demo_lock.lock.hosts | join(', ') }}
"""

RETURN = r"""
lock:
  description:
    - The lock as found, or null when the backend is free.
    - C(deploy_id), C(holder) (controller, user, pid, release, start time), C(hosts) (the app
      hosts of the rollout that have not finished), C(since) and C(updated) (epoch seconds).
  returned: always
  type: dict
path:
  description: The lock file.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hitless.deploy.plugins.module_utils._deploy_lock import (
    LockError,
    read,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            backend=dict(type="str", required=True),
            lock_dir=dict(type="path", default="/var/lib/hitless-deploy/locks"),
        ),
        supports_check_mode=True,
    )
    try:
        result = read(module.params)
    except LockError as e:
        module.fail_json(msg=e.msg, param=e.param)
    except (IOError, OSError) as e:
        module.fail_json(msg="lock of backend %s: %s" % (module.params["backend"], e))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
