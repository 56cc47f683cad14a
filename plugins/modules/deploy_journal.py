#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: deploy_journal
short_description: Write the on-host journal of a rolling deploy
version_added: 0.1.0
description:
  - Keeps C(ROOT/.hitless/journal.json), the record of one host's rolling deploy. Each step is
    recorded before it acts, atomically (temporary file, fsync, rename), so a deploy interrupted
    at any moment (a controller killed, a CI runner gone) leaves a journal that says what may
    have been done. The rescue and the repair of the C(hitless.deploy.rolling) role both read it.
  - M(hitless.deploy.deploy_journal_info) reads it, and what the host runs, in one call.
author: hitless.deploy developers (@hitless-deploy)
extends_documentation_fragment:
  - hitless.deploy.attributes
attributes:
  check_mode:
    support: full
    details: Reports the change and writes nothing.
  diff_mode:
    support: full
    details: The journal before and after.
options:
  root:
    description: The app's root, as laid out by M(hitless.deploy.release).
    type: path
    required: true
  state:
    description:
      - V(step) records entering O(step) and merges O(data) into the journal; it refuses when
        the open journal belongs to another O(deploy_id) (repair first), unless O(replace).
      - V(done) closes the journal (it becomes C(journal-last.json)) with O(outcome).
    type: str
    choices: [step, done]
    required: true
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
seealso:
  - ref: ansible_collections.hitless.deploy.rolling_role
    description: >-
      The rolling deploy role, which writes this journal on every app host and reads it in
      its rescue and repair. See C(ansible-doc -t role hitless.deploy.rolling).
  - module: hitless.deploy.deploy_journal_info
  - module: hitless.deploy.deploy_lock
"""

EXAMPLES = r"""
- name: Record that the clone is about to start
  hitless.deploy.deploy_journal:
    root: /srv/demo
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
  description: The journal closed by O(state=done).
  returned: when O(state=done) closed one
  type: dict
path:
  description: The journal file.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hitless.deploy.plugins.module_utils._journal import (
    STATES,
    JournalError,
    run,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            state=dict(type="str", required=True, choices=list(STATES)),
            deploy_id=dict(type="str"),
            step=dict(type="str"),
            data=dict(type="dict", default={}),
            outcome=dict(type="str", default="done"),
            replace=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    try:
        result = run(module.params, module.check_mode)
    except JournalError as e:
        module.fail_json(msg=e.msg, param=e.param)
    except (IOError, OSError) as e:
        module.fail_json(msg="journal under %s: %s" % (module.params["root"], e))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
