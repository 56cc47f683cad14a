#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: deploy_journal
short_description: The on-host journal of a rolling deploy, and what the host runs now
version_added: 0.1.0
description:
  - Keeps C(ROOT/.hitless/journal.json), the record of one host's rolling deploy. Each step is
    recorded before it acts, atomically (temporary file, fsync, rename), so a deploy interrupted
    at any moment (a controller killed, a CI runner gone) leaves a journal that says what may
    have been done. The rescue and the repair of the C(hitless.deploy.rolling) role both read it.
  - O(state=info) also reads what the host runs, in one call; where C(current) and C(previous)
    point, free space under O(root), and for each of O(ports) the unit C(NAME@PORT), the
    release its main process really runs (the working directory it started in) and every
    process listening on the port, naming those that do not belong to the unit.
author: hitless.deploy developers (@hitless-deploy)
extends_documentation_fragment:
  - hitless.deploy.attributes
attributes:
  check_mode:
    support: full
    details: V(info) reads in check mode too; V(step) and V(done) report the change and write nothing.
  diff_mode:
    support: full
    details: The journal before and after.
options:
  root:
    description: The app's root, as laid out by M(hitless.deploy.release).
    type: path
    required: true
  name:
    description: Prefix of the app's template unit C(NAME@.service).
    type: str
    required: true
  state:
    description:
      - V(info) reads the journal, the last closed one and the host.
      - V(step) records entering O(step) and merges O(data) into the journal; it refuses when
        the open journal belongs to another O(deploy_id) (repair first), unless O(replace).
      - V(done) closes the journal (it becomes C(journal-last.json)) with O(outcome).
    type: str
    choices: [info, step, done]
    default: info
  deploy_id:
    description: The rollout's id (see M(hitless.deploy.deploy_lock)).
    type: str
  step:
    description: The step entered (O(state=step)).
    type: str
  data:
    description: Fields merged into the journal (serving release and path, the new release, ...).
    type: dict
    default: {}
  outcome:
    description: How the deploy ended (O(state=done)), for example V(deployed) or V(rolled_back).
    type: str
    default: done
  replace:
    description: With O(state=step), replace an open journal of another deploy.
    type: bool
    default: false
  ports:
    description: Ports whose instance and listeners O(state=info) reports.
    type: list
    elements: int
    default: []
seealso:
  - ref: ansible_collections.hitless.deploy.rolling_role
    description: >-
      The rolling deploy role, which writes this journal on every app host and reads it in
      its rescue and repair. See C(ansible-doc -t role hitless.deploy.rolling).
  - module: hitless.deploy.deploy_lock
"""

EXAMPLES = r"""
- name: Read the journal and what runs on ports 8080 and 8081
  hitless.deploy.deploy_journal:
    root: /srv/demo
    name: demo
    ports: [8080, 8081]
  register: host_state

- name: Record that the clone is about to start
  hitless.deploy.deploy_journal:
    root: /srv/demo
    name: demo
    state: step
    step: clone
    deploy_id: "{{ deploy_id }}"
"""

RETURN = r"""
journal:
  description: The open journal after the task, or null.
  returned: always
  type: dict
last:
  description: The last closed journal (O(state=info), O(state=done)).
  returned: when there is one
  type: dict
host:
  description: What the host runs (O(state=info)).
  returned: when O(state=info)
  type: dict
  contains:
    current:
      description: Release C(current) points to, or null.
      type: str
    current_is_link:
      description: Whether C(current) is a symlink.
      type: bool
    previous:
      description: Release C(previous) points to, or null.
      type: str
    free_mb:
      description: MiB available under O(root).
      type: int
    instances:
      description:
        - For each of O(ports) (as a string key), C(unit), C(active_state), C(sub_state),
          C(main_pid), C(running_path) and C(running_release) (the release directory the main
          process runs in, or null), C(listeners) (C(pid), C(cmdline), C(unit)) and
          C(foreign_listeners) (descriptions of listeners that are not the unit's).
      type: dict
path:
  description: The journal file.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hitless.deploy.plugins.module_utils._app_instance import parse_show
from ansible_collections.hitless.deploy.plugins.module_utils._journal import (
    SHOW_ARGS,
    STATES,
    JournalError,
    run,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            name=dict(type="str", required=True),
            state=dict(type="str", default="info", choices=list(STATES)),
            deploy_id=dict(type="str"),
            step=dict(type="str"),
            data=dict(type="dict", default={}),
            outcome=dict(type="str", default="done"),
            replace=dict(type="bool", default=False),
            ports=dict(type="list", elements="int", default=[]),
        ),
        supports_check_mode=True,
    )
    systemctl = module.get_bin_path("systemctl", required=True)

    def show(unit):
        rc, out, err = module.run_command([systemctl] + SHOW_ARGS + [unit],
                                          environ_update={"SYSTEMD_PAGER": "", "LC_ALL": "C"})
        if rc != 0:
            module.fail_json(msg="systemctl show %s failed (rc=%d): %s" % (unit, rc, err.strip()))
        return parse_show(out)

    try:
        result = run(module.params, show, module.check_mode)
    except JournalError as e:
        module.fail_json(msg=e.msg, param=e.param)
    except (IOError, OSError) as e:
        module.fail_json(msg="journal under %s: %s" % (module.params["root"], e))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
