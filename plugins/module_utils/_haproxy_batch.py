# -*- coding: utf-8 -*-
# Copyright: hitless.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Several servers of one backend moved to one state in one call, their waits overlapping.

A batch of app hosts swaps as one: every clone routed in, every original drained, and so on,
in one module call per HAProxy host. Each server goes the way :class:`Runner` takes it alone,
in two passes:

1. every server is changed without waiting (``ready`` is armed: set ready with its health
   forced down, so it stays out of traffic until fresh checks pass; ``drain`` and ``absent``
   stop its new traffic);
2. each is then waited for within what is left of one deadline for the batch (``absent``
   deletes a dynamic server once it has no sessions).

All the servers started their drain or their checks in pass 1, so the waits overlap: a batch
waits about as long as its slowest server. A server that fails does not stop the others; the
call reports each.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.hitless.deploy.plugins.module_utils._haproxy_runtime import (
    NotFoundError,
)
from ansible_collections.hitless.deploy.plugins.module_utils._haproxy_server import (
    ParamError,
    PlanError,
    Request,
    Runner,
    StateError,
)

# What pass 1 does for each state: absent deletes only once idle, so it first goes to maint.
FIRST_PASS_STATE = {"absent": "maint"}
# A reload whose saver read the state before a server left traffic, and whose new worker takes
# over after the wait's last look, puts the server back as it was. One more look this long
# after the waits sends it out again (seen in the lab: the new worker answered 50 ms after the
# server went to maint, the wait had already seen the old worker idle).
SETTLE_S = 1.0


def _with(req, **changes):
    values = dict((name, getattr(req, name)) for name in Request.FIELDS)
    values.update(changes)
    return Request(**values)


def _merge(first, second):
    """One server's result over both passes: its state before the first, after the second."""
    merged = dict(first)
    merged.update(second)
    merged["changed"] = bool(first.get("changed") or second.get("changed"))
    merged["before"] = first.get("before")
    merged["diff"] = {"before": (first.get("diff") or {}).get("before"),
                      "after": (second.get("diff") or first.get("diff") or {}).get("after")}
    merged["commands"] = first.get("commands", []) + second.get("commands", [])
    return merged


class BatchRunner:
    """Runs :class:`Runner` for each request in two passes; ``run()`` returns one result per
    request, in order, each with ``failed`` and, when it failed, ``msg``."""

    def __init__(self, client, requests, check_mode=False, clock=time.monotonic, sleep=time.sleep):
        self.client = client
        self.requests = requests
        self.check_mode = check_mode
        self.clock = clock
        self.sleep = sleep

    def _one(self, req):
        # `requested` names the server as asked for; `server` is the slot that stands in for it.
        runner = Runner(self.client, req, check_mode=self.check_mode, clock=self.clock,
                        sleep=self.sleep)
        try:
            return dict(runner.run(), failed=False, requested=req.server)
        except StateError as e:
            return dict(e.result or {"server": req.server, "commands": []}, failed=True, msg=e.msg,
                        requested=req.server)
        except (PlanError, ParamError, NotFoundError) as e:
            msg = ("%s %s does not exist" % (e.kind, e.name) if isinstance(e, NotFoundError)
                   else str(e))
            return {"server": req.server, "requested": req.server, "before": runner.before,
                    "commands": [], "changed": False, "failed": True, "msg": msg}

    def run(self):
        if self.check_mode:
            # Nothing is sent nor waited for: each server's prediction is that of a call alone.
            return [self._one(req) for req in self.requests]
        started = self.clock()
        firsts = [self._one(_with(req, state=FIRST_PASS_STATE.get(req.state, req.state), wait=False))
                  for req in self.requests]
        results = []
        for req, first in zip(self.requests, firsts):
            if first["failed"] or not (req.wait or req.state in FIRST_PASS_STATE):
                results.append(first)
                continue
            left = max(req.wait_timeout - (self.clock() - started), 0.0)
            results.append(_merge(first, self._one(_with(req, wait_timeout=left))))
        leaving = [i for i, req in enumerate(self.requests)
                   if req.state == "absent" and req.wait and not results[i]["failed"]]
        if leaving:
            self.sleep(SETTLE_S)
            for i in leaving:
                req = self.requests[i]
                results[i] = _merge(results[i], self._one(_with(req, wait_timeout=req.wait_timeout)))
        return results


def run_batch(client, requests, check_mode=False, clock=time.monotonic, sleep=time.sleep):
    """Results of :class:`BatchRunner` for requests of one backend."""
    if len({req.backend for req in requests}) > 1:
        raise ParamError("servers", "every server of one call is in one backend")
    return BatchRunner(client, requests, check_mode, clock, sleep).run()
