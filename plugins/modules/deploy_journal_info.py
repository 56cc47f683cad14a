#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: deploy_journal_info
short_description: Read the on-host journal of a rolling deploy, and what the host runs now
version_added: 0.1.0
description:
  - Reads C(ROOT/.hitless/journal.json), the record of one host's rolling deploy that
    M(hitless.deploy.deploy_journal) writes, and the last closed one.
  - Reads in the same call what the host runs; where C(current) and C(previous) point, free
    space under O(root), and for each of O(ports) the unit C(NAME@PORT), the release its main
    process really runs (the working directory it started in) and every process listening on
    the port, naming those that do not belong to the unit.
  - With O(worker_unit), the app's background workers too (the instances C(WORKER_UNIT@ID) that
    M(hitless.deploy.app_worker) moves); each of O(workers), then every other one the host
    runs or has left something of (see RV(host.workers)), so a worker nobody listed is still
    reported.
author: hitless.deploy developers (@hitless-deploy)
extends_documentation_fragment:
  - hitless.deploy.attributes
  - hitless.deploy.attributes.info_module
options:
  root:
    description: The app's root, as laid out by M(hitless.deploy.release).
    type: path
    required: true
  name:
    description: Prefix of the app's template unit C(NAME@.service).
    type: str
    required: true
  ports:
    description:
      - Ports whose instance and listeners are reported.
      - The ports (instances and clones) the open journal recorded are reported too, after
        these, since a repair acts on them whatever the reader's own variables name.
    type: list
    elements: int
    default: []
  worker_unit:
    description:
      - Prefix of the workers' template unit C(WORKER_UNIT@.service), as
        M(hitless.deploy.app_worker)'s O(hitless.deploy.app_worker#module:unit); unset, no
        worker is read.
    type: str
  workers:
    description:
      - IDs of the workers expected on the host (as the deploy's C(rolling_workers)); reported
        even when systemd does not know them. Needs O(worker_unit).
    type: list
    elements: str
    default: []
seealso:
  - module: hitless.deploy.deploy_journal
  - ref: ansible_collections.hitless.deploy.rolling_role
    description: >-
      The rolling deploy role, whose preflight and repair start from this read. See
      C(ansible-doc -t role hitless.deploy.rolling).
"""

EXAMPLES = r"""
- name: Read the journal and what runs on ports 8080 and 8081
  hitless.deploy.deploy_journal_info:
    root: /srv/demo
    name: demo
    ports: [8080, 8081]
  register: host_state

- name: Read the workers demo-worker@1 and @2 too, and any other demo-worker@ID running
  hitless.deploy.deploy_journal_info:
    root: /srv/demo
    name: demo
    ports: [8080]
    worker_unit: demo-worker
    workers: ["1", "2"]
  register: host_state

- name: Stop when an interrupted deploy is still open
  ansible.builtin.assert:
    that: host_state.journal is none
    fail_msg: "Deploy {{ host_state.journal.deploy_id }} stopped at {{ host_state.journal.step }}"
"""

RETURN = r"""
journal:
  description: The open journal, or null.
  returned: always
  type: dict
last:
  description: The last closed journal, or null.
  returned: always
  type: dict
host:
  description: What the host runs.
  returned: always
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
    releases:
      description: The release directories under C(ROOT/releases), the most recently made current first.
      type: list
      elements: str
      sample: [v3, v2, v1]
    bad:
      description:
        - The bad marks under C(ROOT/.hitless/bad) by release (a mark can outlive its release),
          each as M(hitless.deploy.release) returns RV(hitless.deploy.release#module:bad_mark).
      type: dict
      sample: {broken: {step: post_start, task: Run post_start checks on the original, cause: "GET /health returned 500"}}
    instances:
      description:
        - For each of O(ports) and of the open journal's ports (as a string key), C(unit), C(active_state), C(sub_state),
          C(main_pid), C(running_path) and C(running_release) (the release directory the main
          process runs in, found by its identity since the instance sees it at C(current), or
          null), C(listeners) (C(pid), C(cmdline), C(unit)), C(foreign_listeners) (descriptions
          of listeners that are not the unit's) and C(fixed_view) (true when the unit gives its
          instances their own view of O(root), C(TemporaryFileSystem=) over it and a release
          bound onto C(current), see C(docs/apps.md)).
      type: dict
    workers:
      description:
        - Without O(worker_unit), empty. Otherwise one entry per worker, those of O(workers)
          first in their order, then by ID every other worker whose unit or overlap systemd has
          loaded and not inactive (running, starting, stopping, failed), or whose overlap's pin
          is left under C(/run/systemd/system).
        - C(worker) (its ID), C(listed) (whether O(workers) names it), C(unit),
          C(load_state), C(active_state), C(sub_state), C(main_pid), C(running_release) (the
          release directory its main process runs in, found by its identity as for the
          instances, or null) and C(overlap) (C(unit) C(WORKER_UNIT@ID-next), C(active_state),
          C(main_pid), C(running_release), C(pinned_to), the release directory its runtime
          drop-in pins or null).
      type: list
      elements: dict
      sample:
        - worker: "1"
          listed: true
          unit: demo-worker@1.service
          load_state: loaded
          active_state: active
          sub_state: running
          main_pid: 4242
          running_release: v2
          overlap: {unit: demo-worker@1-next.service, active_state: inactive, main_pid: 0,
                    running_release: null, pinned_to: null}
path:
  description: The journal file.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hitless.deploy.plugins.module_utils import _app_worker
from ansible_collections.hitless.deploy.plugins.module_utils._app_instance import (
    InstanceError, failure, module_systemctl, parse_show)
from ansible_collections.hitless.deploy.plugins.module_utils._journal import (
    SHOW_ARGS,
    JournalError,
    read,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            name=dict(type="str", required=True),
            ports=dict(type="list", elements="int", default=[]),
            worker_unit=dict(type="str"),
            workers=dict(type="list", elements="str", default=[]),
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
        result = read(module.params, show)
        result["host"]["workers"] = _app_worker.read(module.params, module_systemctl(module))
    except JournalError as e:
        module.fail_json(msg=e.msg, param=e.param)
    except InstanceError as e:
        module.fail_json(**failure(e))
    except (IOError, OSError) as e:
        module.fail_json(msg="journal under %s: %s" % (module.params["root"], e))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
