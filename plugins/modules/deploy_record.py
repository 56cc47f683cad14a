#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: deploy_record
short_description: Close, publish and keep the record of one host's rolling deploy
version_added: 0.1.0
description:
  - Builds the deploy record of the current host from the phase marks of the
    C(hitless.deploy.rolling) role (each mark a phase and the time it began), adds how long each
    phase took (from its mark to the next, the last one to now), publishes it as the custom stat
    O(stats_key) (as M(ansible.builtin.set_stats) with C(aggregate) does, so AWX shows it among
    the job's artifacts) and, with O(dest), writes it on the controller as C(DEST/HOST.json).
  - Runs entirely on the controller, in the action plugin, and starts no module, which is why the
    role uses it instead of M(ansible.builtin.set_stats) and M(ansible.builtin.copy).
author: hitless.deploy developers (@hitless-deploy)
extends_documentation_fragment:
  - hitless.deploy.attributes
attributes:
  check_mode:
    support: full
    details: The record is published and written in check mode too; it records the run on the
      controller and changes no host.
  diff_mode:
    support: none
  action:
    support: full
    description: Runs on the controller only, in the action plugin; the host is not contacted.
options:
  release:
    description: The release the deploy was for.
    type: str
    required: true
  from_release:
    description: The release that served before the deploy, empty when unknown.
    type: str
    default: ""
  outcome:
    description: How the deploy of this host ended.
    type: str
    required: true
    choices: [failed, repaired, unchanged, would_deploy, deployed, checked, prepared]
  repaired:
    description: What a repair of an earlier, interrupted deploy did, empty when nothing.
    type: str
    default: ""
  deploy_id:
    description: The deploy's identifier (its lock and journal).
    type: str
    default: ""
  failure:
    description: The failure (step, task, cause), empty when the deploy did not fail.
    type: dict
    default: {}
  clone_lifetime:
    description: Seconds the clone lived, null when there was no clone.
    type: float
  canary:
    description:
      - The canary bake of this host (its window and P(hitless.deploy.canary_verdict#filter)'s
        verdict), empty when it did not bake.
    type: dict
    default: {}
  marks:
    description:
      - The start of each phase, in order. Each item needs C(step) (the phase) and C(at) (epoch
        seconds on the controller).
    type: list
    elements: dict
    default: []
  dest:
    description:
      - Directory on the controller to write the record in, as C(HOST.json) (mode C(0644),
        replaced atomically); made with mode C(0755) when missing.
      - Without it, nothing is written.
    type: path
  stats_key:
    description: "Name of the custom stat that gets C({HOST: record}), aggregated over the hosts."
    type: str
    default: hitless_rolling
"""

EXAMPLES = r"""
- name: Close the deploy record
  hitless.deploy.deploy_record:
    release: v2
    from_release: v1
    outcome: deployed
    marks:
      - {step: clone, at: 1764700000.0}
      - {step: route_back, at: 1764700006.5}
    dest: "{{ playbook_dir }}/deploys"
  register: record

- name: Say how long the host took
  ansible.builtin.debug:
    msg: "{{ record.record.steps | map(attribute='seconds') | sum }} s"
"""

RETURN = r"""
record:
  description: The deploy record, as published and written.
  returned: always
  type: dict
  contains:
    host:
      description: The inventory host.
      type: str
      sample: app1
    outcome:
      description: O(outcome).
      type: str
      sample: deployed
    started_at:
      description: When the first phase began (epoch seconds), null without marks.
      type: float
      sample: 1764700000.0
    marks:
      description: O(marks), their C(at) as numbers.
      type: list
      elements: dict
    steps:
      description: Each phase and its duration in seconds, from its mark to the next.
      type: list
      elements: dict
      sample: [{step: clone, seconds: 6.5}, {step: route_back, seconds: 2.1}]
path:
  description: The file written, null without O(dest).
  returned: always
  type: str
  sample: /home/me/deploys/app1.json
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hitless.deploy.plugins.module_utils._deploy_record import ARGUMENT_SPEC


def main():
    # The work is done by the action plugin of the same name, on the controller.
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.fail_json(msg="hitless.deploy.deploy_record runs on the controller through its action "
                         "plugin; it cannot run as a module")


if __name__ == "__main__":
    main()
