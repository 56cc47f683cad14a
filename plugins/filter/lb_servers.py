"""Filters for a batch's HAProxy calls: the servers of one call, and what failed for one host."""

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: lb_servers
short_description: The servers of a batch of app hosts, for one call per HAProxy host
version_added: 0.2.0
description:
  - Maps the app hosts of a batch, each described by a dict with C(host), C(server),
    C(clone), C(address) and C(clone_port), to the O(hitless.deploy.haproxy_server#module:servers)
    list of one call.
  - With O(lb), the clones get their address and port as that HAProxy host reaches them,
    which is C(127.0.0.1) for an app host that is the HAProxy host itself.
options:
  _input:
    description: The app hosts of the batch.
    type: list
    elements: dict
    required: true
  kind:
    description: C(original) for the app hosts' servers, C(clone) for their clones'.
    type: str
    choices: [original, clone]
    required: true
  lb:
    description: The HAProxy host of the call; with it, each clone has its address and port.
    type: str
"""

EXAMPLES = r"""
- name: Every clone of the batch in one call on each HAProxy host
  hitless.deploy.haproxy_server:
    backend: demo
    servers: "{{ batch | hitless.deploy.lb_servers('clone', item) }}"
    state: ready
  delegate_to: "{{ item }}"
  loop: "{{ groups['haproxy'] }}"
"""

RETURN = r"""
_value:
  description: A list of dicts with C(server), and with O(lb) for clones, C(address) and C(port).
  type: list
  elements: dict
"""

KEYS = ("host", "server", "clone", "address", "clone_port")


def lb_servers(hosts, kind, lb=None):
    if kind not in ("original", "clone"):
        raise AnsibleFilterError("lb_servers: kind must be original or clone, got %r" % (kind,))
    servers = []
    for spec in hosts:
        if not isinstance(spec, Mapping) or any(key not in spec for key in KEYS):
            raise AnsibleFilterError("lb_servers: each app host needs %s, got %r"
                                     % (", ".join(KEYS), spec))
        if kind == "original":
            servers.append({"server": spec["server"]})
        elif lb is None:
            servers.append({"server": spec["clone"]})
        else:
            address = "127.0.0.1" if spec["host"] == lb else spec["address"]
            servers.append({"server": spec["clone"], "address": address,
                            "port": int(spec["clone_port"])})
    return servers


def lb_errors(results, servers):
    """What went wrong, for an app host whose servers are ``servers``, in the looped results of
    haproxy_server calls made with ``failed_when: false`` for a whole batch: one sentence per
    HAProxy host that was not reached, whose call failed as a whole, or that did not take one
    of these servers. A server of another host that failed is that host's failure."""
    errors = []
    for result in results:
        if not isinstance(result, Mapping) or result.get("skipped"):
            continue
        where = "on %s: " % result.get("item", "?")
        if result.get("unreachable"):
            errors.append(where + str(result.get("msg") or "unreachable").strip())
        elif "results" not in result:
            if result.get("msg") and (result.get("failed") or "failed_when_result" in result):
                errors.append(where + str(result["msg"]).strip())
        else:
            errors += [where + str(r.get("msg", "failed")).strip() for r in result["results"]
                       if r.get("failed") and r.get("requested", r.get("server")) in servers]
    return errors


class FilterModule(object):
    def filters(self):
        return {"lb_servers": lb_servers, "lb_errors": lb_errors}
