# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of hitless.deploy.deploy_lock: say who the holder is, and take over a lock
whose holder is provably gone.

Only the controller knows who is deploying (its host name, user and ansible-playbook process),
and only here can one tell that a holder on this same controller has died: its pid is gone or
belongs to a process started at another time. A holder on another controller cannot be proven
gone from here, so its lock is only taken over when the user names it (O(takeover_from)).
"""

import getpass
import os
import socket
import time

from ansible.plugins.action import ActionBase


def process_start(pid, proc="/proc"):
    """Start time of ``pid`` in clock ticks since boot, or None when there is no such process."""
    try:
        with open(os.path.join(proc, str(pid), "stat")) as handle:
            stat = handle.read()
    except (IOError, OSError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return stat.rsplit(")", 1)[1].split()[19]


def controller_identity():
    """The holder fields of this run: the ansible-playbook process is the workers' parent."""
    pid = os.getppid()
    try:
        user = getpass.getuser()
    except Exception:  # pylint: disable=broad-except
        user = str(os.getuid())
    return {"controller": socket.gethostname(), "user": user, "pid": pid,
            "pid_start": process_start(pid)}


def default_deploy_id(identity):
    return "%s-%d-%s" % (identity["controller"], identity["pid"], identity["pid_start"] or "0")


def holder_gone(holder, identity, proc="/proc"):
    """True only when ``holder`` ran on this controller and its process no longer exists."""
    if not holder or holder.get("controller") != identity["controller"] or not holder.get("pid"):
        return False
    start = process_start(holder["pid"], proc)
    return start is None or (holder.get("pid_start") is not None and start != holder["pid_start"])


def lock_abandoned(lock, identity, proc="/proc"):
    """True only when every run holding ``lock`` is gone: the slices of one sliced job hold it
    together, and one slice that died does not let another rollout in while the others work."""
    holders = list((lock.get("holders") or {}).values()) or [lock.get("holder")]
    return all(holder_gone(holder, identity, proc) for holder in holders)


class ActionModule(ActionBase):

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars or {})
        del tmp
        args = self._task.args.copy()
        identity = controller_identity()
        holder = dict(identity, started=round(time.time(), 3))
        holder.update(args.get("holder") or {})
        args["holder"] = holder
        args["deploy_id"] = args.get("deploy_id") or default_deploy_id(identity)
        take_over_dead = args.pop("takeover_dead", True)
        answer = self._execute_module(module_name="hitless.deploy.deploy_lock", module_args=args,
                                      task_vars=task_vars)
        lock = answer.get("held_by") or {}
        if (answer.get("failed") and lock and take_over_dead and args.get("state") == "held"
                and lock_abandoned(lock, identity)):
            args["takeover_from"] = lock.get("deploy_id")
            answer = self._execute_module(module_name="hitless.deploy.deploy_lock",
                                          module_args=args, task_vars=task_vars)
            answer["holder_gone"] = True
        result.update(answer)
        result["deploy_id"] = args["deploy_id"]
        return result
