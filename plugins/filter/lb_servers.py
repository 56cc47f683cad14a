"""Filter that turns the app hosts of a batch into the servers of one haproxy_server call."""

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


class FilterModule(object):
    def filters(self):
        return {"lb_servers": lb_servers}
