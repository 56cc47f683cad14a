"""Filter that says what runs where from one read of every app host and HAProxy host."""

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.hitless.deploy.plugins.module_utils._fleet_status import fleet_status as _fleet_status
from ansible_collections.hitless.deploy.plugins.module_utils._fleet_status import lines

DOCUMENTATION = r"""
name: fleet_status
short_description: What runs where, and what in it is inconsistent
version_added: 0.2.0
description:
  - Takes, per app host, its names and the result of M(hitless.deploy.deploy_journal_info), and
    per HAProxy host and backend the results of M(hitless.deploy.haproxy_info) and
    M(hitless.deploy.deploy_lock_info) (each looped over pairs C([HAProxy host, backend])).
  - Returns one row per app host (each instance of the app on the host, C(instances), with the
    release its process really runs and its clone; the release each background worker's process
    really runs, each worker's overlap, C(current), C(previous), the releases kept, bad marks,
    an open journal, the last closed one) and per
    HAProxy host and backend (each server's state, the deploy lock's holder), and the findings
    (C(flags)), each with what to run.
  - 'Flagged: a host not read; an open journal whose deploy holds no lock (an interrupted
    deploy); C(current) not a link or marked bad; and, when nobody deploys on the backend: an
    instance not active or running a release other than C(current), a clone running, a worker
    not active, not installed or running a release other than C(current), a worker''s overlap
    running or its pin left, a server of an app host missing, not C(ready) or not C(UP), a
    clone server in service.'''
  - 'Each instance is judged on its own: with several instances per host, a finding about an
    instance''s clone or servers names it (C(of demo@8082)); one instance''s findings read as
    they did before several instances per host.'
  - Used by the entry point C(status) of the role M(hitless.deploy.rolling) (playbook
    C(hitless.deploy.status)).
options:
  _input:
    description:
      - Per app host, C(spec) (C(host), C(app), C(root), C(backend), C(server), C(clone_server),
        C(port), C(clone_port), C(instances)) and C(read) (the registered result of
        M(hitless.deploy.deploy_journal_info) over every instance's port and clone port, failed
        or unreachable ones included).
      - C(instances) lists the app's instances on the host, each C(port), C(clone_port),
        C(server), C(clone) (its clone's server), as the role's C(_rolling_instances). Without
        it the spec is one instance, C(port), C(clone_port), C(server) and C(clone_server).
    type: list
    elements: dict
    required: true
  haproxy:
    description: Registered results of M(hitless.deploy.haproxy_info) looped over C([HAProxy host, backend]).
    type: list
    elements: dict
    required: true
  locks:
    description: Registered results of M(hitless.deploy.deploy_lock_info) looped over the same pairs.
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Say what runs where
  ansible.builtin.debug:
    msg: "{{ (apps | hitless.deploy.fleet_status(haproxy=lb_info.results, locks=lb_locks.results)).lines }}"
"""

RETURN = r"""
_value:
  description:
    - C(apps) (rows of app hosts; C(instances) each with C(port), C(unit), C(state),
      C(release), C(pid), C(clone_port), C(server), C(clone_server) and C(clone); the first one
      also as C(instance) and C(clone)), C(haproxy) (rows of HAProxy hosts and backends), C(flags)
      (C(host), C(what), C(fix)), C(consistent) (no flag) and C(lines) (the same as a table, for
      the terminal).
  type: dict
"""


def _by_pair(results, what):
    if not isinstance(results, list):
        raise AnsibleFilterError("fleet_status: %s must be the results of a loop over [HAProxy host, backend], got %s"
                                 % (what, type(results).__name__))
    found = {}
    for result in results:
        item = result.get("item") if isinstance(result, Mapping) else None
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise AnsibleFilterError("fleet_status: every result of %s must have an item [HAProxy host, backend], got %r"
                                     % (what, item))
        found[tuple(item)] = dict(result)
    return found


_INSTANCE_KEYS = ("port", "clone_port", "server", "clone")


def _check_instances(spec):
    instances = spec.get("instances")
    if instances is None:
        return
    if not isinstance(instances, list) or not all(
            isinstance(i, Mapping) and all(k in i for k in _INSTANCE_KEYS) for i in instances):
        raise AnsibleFilterError("fleet_status: the instances of %s must be a list of {%s}, got %r"
                                 % (spec.get("host"), ", ".join(_INSTANCE_KEYS), instances))


def fleet_status(apps, haproxy, locks):
    if not isinstance(apps, list) or not all(isinstance(a, Mapping) and isinstance(a.get("spec"), Mapping)
                                             for a in apps):
        raise AnsibleFilterError("fleet_status: the input must be a list of {spec, read} per app host")
    for app in apps:
        _check_instances(app["spec"])
    infos, held = _by_pair(haproxy, "haproxy"), _by_pair(locks, "locks")
    lbs = [{"host": host, "backend": backend, "info": infos[(host, backend)],
            "lock": held.get((host, backend), {"failed": True, "msg": "the lock was not read"})}
           for host, backend in infos]
    status = _fleet_status([{"spec": dict(a["spec"]), "read": a.get("read")} for a in apps], lbs)
    status["lines"] = lines(status)
    return status


class FilterModule(object):
    def filters(self):
        return {"fleet_status": fleet_status}
