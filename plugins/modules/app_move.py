#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: app_move
short_description: One move of a rolling deploy on an app host, in one call
version_added: 0.2.0
description:
  - Runs, in one call on the host and in this order, the parts given of one move of a rolling
    deploy. It writes the deploy journal's step (O(journal)), points C(current) at a release
    (O(link)), starts, restarts or removes an instance (O(instance)), checks it (O(checks)), and
    closes the journal (O(close)).
  - Each part is the logic of the module of the same purpose, with that module's options, from
    M(hitless.deploy.deploy_journal), M(hitless.deploy.release) (C(state=current)),
    M(hitless.deploy.app_instance) and M(hitless.deploy.app_check). Each part's options are
    validated against that module's argument spec before anything runs.
  - The first part that fails stops the move. The failure names it (RV(part)), so a caller can
    tell a release that does not start from a journal that could not be written.
  - The rolling role makes each move one call with it, because a module call costs the host and
    the controller the same whatever it does (C(docs/cpu.md)).
notes:
  - A call holds an exclusive lock C(/run/hitless-deploy/<name>.lock) (the instance's C(name)) on the host for as long as it
    acts, and a second call on the same units waits for it (up to 900 s, then fails naming the
    holder). A controller killed mid-call leaves its module running on the host until it is
    done; the next run's converge waits for it instead of acting on the same units at once.
    Check mode takes no lock.
author: hitless.deploy developers (@hitless-deploy)
extends_documentation_fragment:
  - hitless.deploy.attributes
attributes:
  check_mode:
    support: partial
    details: Each part reports what it would change; the checks do not run, since nothing was started.
  diff_mode:
    support: full
    details: Each part's before and after, keyed by the part.
options:
  journal:
    description:
      - The deploy journal's step, written first (M(hitless.deploy.deploy_journal) with
        C(state=step)). Keys C(root), C(deploy_id), C(step) and C(data).
    type: dict
  link:
    description:
      - Points C(ROOT/current) at a release already on the host (M(hitless.deploy.release) with
        C(state=current)). Keys C(root), C(name), C(keep) (prune in the same call) and C(pin_dir).
    type: dict
  instance:
    description:
      - The instance to start, restart, stop or remove, with the options of
        M(hitless.deploy.app_instance).
    type: dict
  checks:
    description:
      - Checks run after O(instance), with the options of M(hitless.deploy.app_check). Without
        C(port), they check O(instance)'s port.
    type: dict
  close:
    description:
      - Closes the deploy journal last (M(hitless.deploy.deploy_journal) with C(state=done)).
        Keys C(root), C(deploy_id), C(outcome) and C(data).
    type: dict
seealso:
  - module: hitless.deploy.app_instance
  - module: hitless.deploy.app_check
  - module: hitless.deploy.deploy_journal
  - module: hitless.deploy.release
"""

EXAMPLES = r"""
- name: Journal the step, start the clone on the serving release and check it, in one call
  hitless.deploy.app_move:
    journal:
      root: /srv/demo
      deploy_id: "{{ deploy_id }}"
      step: clone
      data: {release: v2, serving_release: v1}
    instance:
      name: demo
      port: 8081
      original_port: 8080
      release_path: /srv/demo/releases/v1
    checks:
      checks:
        - http: {path: /health}
      deadline: 30

- name: Remove the clone and close the journal
  hitless.deploy.app_move:
    instance: {name: demo, port: 8081, state: absent}
    close: {root: /srv/demo, deploy_id: "{{ deploy_id }}", outcome: deployed}
"""

RETURN = r"""
parts:
  description: What each part that ran returned, keyed by the part (as its module returns it).
  returned: always
  type: dict
part:
  description: The part that failed (V(journal), V(link), V(instance), V(checks) or V(close)).
  returned: failure
  type: str
param:
  description: The option at fault within the part, when one is.
  returned: failure
  type: str
active_state:
  description: The unit's C(ActiveState) when the O(instance) part failed on it, as M(hitless.deploy.app_instance) returns it.
  returned: failure of the instance part
  type: str
  sample: failed
sub_state:
  description: The unit's C(SubState) when the O(instance) part failed on it.
  returned: failure of the instance part
  type: str
  sample: failed
"""

import contextlib

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hitless.deploy.plugins.module_utils._app_instance import module_systemctl
from ansible_collections.hitless.deploy.plugins.module_utils._app_move import MoveError, run
from ansible_collections.hitless.deploy.plugins.module_utils._unit_lock import UnitLockTimeout, held


def secret_values(checks):
    """The values of the checks' secret headers: hidden in the output as app_check hides them."""
    for check in (checks or {}).get("checks") or []:
        for value in ((check or {}).get("http") or {}).get("secret_headers", {}).values():
            yield str(value)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            journal=dict(type="dict"),
            link=dict(type="dict"),
            instance=dict(type="dict"),
            checks=dict(type="dict"),
            close=dict(type="dict"),
        ),
        supports_check_mode=True,
    )
    module.no_log_values.update(secret_values(module.params["checks"]))
    systemctl = module_systemctl(module, required=module.params["instance"] is not None)
    instance = module.params["instance"] or {}
    # Calls on one app's instances one at a time (a killed controller's call may still run);
    # a dry run, or a call with no instance (the journal alone), takes no lock.
    lock = held(instance["name"]) if instance.get("name") and not module.check_mode else contextlib.nullcontext()
    try:
        with lock:
            result = run(module.params, systemctl, module.check_mode)
    except UnitLockTimeout as e:
        module.fail_json(msg=str(e), part="instance", param="name")
    except MoveError as e:
        module.fail_json(msg=e.msg, part=e.part, param=e.param, **e.result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
