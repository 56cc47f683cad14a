# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""hitless.deploy.deploy_record: close one host's deploy record, publish it as a custom stat
and write it on the controller, in one task that starts no module.

The rolling role used to do this with set_fact, set_stats, file and copy: four tasks per host,
two of them modules run on the controller through the local connection. At fleet scale, with
every task of every host sharing the controller's CPU, that was a second or more per batch.
"""

import os
import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.hitless.deploy.plugins.module_utils._atomic import write_json
from ansible_collections.hitless.deploy.plugins.module_utils._deploy_record import ARGUMENT_SPEC


def mark_steps(marks, end):
    """Seconds from each mark to the next (the last one to ``end``), as ``[{step, seconds}]``."""
    ends = [mark["at"] for mark in marks[1:]] + [end]
    return [{"step": mark["step"], "seconds": round(float(stop) - float(mark["at"]), 3)}
            for mark, stop in zip(marks, ends)]


def build_record(host, args, end):
    marks = [dict(mark, at=float(mark["at"])) for mark in args["marks"]]
    for index, mark in enumerate(marks):
        if "step" not in mark:
            raise ValueError("marks: item %d has no step" % index)
    return {
        "host": host,
        "release": args["release"],
        "from_release": args["from_release"],
        "outcome": args["outcome"],
        "repaired": args["repaired"],
        "deploy_id": args["deploy_id"],
        "failure": args["failure"],
        "clone_lifetime": args["clone_lifetime"],
        "canary": args["canary"],
        "started_at": marks[0]["at"] if marks else None,
        "marks": marks,
        "steps": mark_steps(marks, end),
    }


def write_record(dest, host, record):
    """Write ``dest/host.json`` whole (mode 0644, ``dest`` made 0755 if missing); its path."""
    os.makedirs(dest, mode=0o755, exist_ok=True)
    path = os.path.join(dest, "%s.json" % host)
    write_json(path, record)
    return path


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars or {})
        del tmp
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        host = (task_vars or {}).get("inventory_hostname", "")
        try:
            record = build_record(host, args, time.time())
        except ValueError as e:
            raise AnsibleActionFail(str(e))
        path = None
        if args["dest"]:
            try:
                path = write_record(args["dest"], host, record)
            except OSError as e:
                raise AnsibleActionFail("dest: cannot write the deploy record in %s: %s"
                                        % (args["dest"], e))
        # What set_stats returns: the strategy merges it into the run's custom stats.
        result["ansible_stats"] = {"data": {args["stats_key"]: {host: record}},
                                   "per_host": False, "aggregate": True}
        result.update(changed=False, record=record, path=path)
        return result
