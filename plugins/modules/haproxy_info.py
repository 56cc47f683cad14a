#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hitless.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: haproxy_info
short_description: Backends and servers of a running HAProxy, with state, sessions and health
version_added: 0.1.0
description:
  - Reads C(show stat) and C(show servers state) from the HAProxy runtime API and reports every
    backend (or one) with its servers.
  - Each server says whether it is RV(backends.servers.ready), which is stricter than HAProxy's
    C(UP) - see there, and whether it was added at runtime (RV(backends.servers.dynamic)).
author:
  - hitless.deploy developers (@hitless-deploy)
extends_documentation_fragment:
  - hitless.deploy.haproxy_runtime
  - hitless.deploy.attributes
  - hitless.deploy.attributes.info_module
options:
  backend:
    description:
      - Report only this backend; the module fails naming O(backend) when it does not exist.
    type: str
seealso:
  - module: hitless.deploy.haproxy_server
"""

EXAMPLES = r"""
- name: Read the demo backend
  hitless.deploy.haproxy_info:
    socket: /run/haproxy/admin.sock
    backend: demo
  register: lb

- name: Every server of demo is in traffic and healthy
  ansible.builtin.assert:
    that: lb.backends.demo.servers.values() | rejectattr('ready') | list | length == 0
"""

RETURN = r"""
version:
  description: HAProxy's version, from C(show info).
  returned: always
  type: str
  sample: 2.6.12-1+deb12u4
backends:
  description: Backends by name.
  returned: always
  type: dict
  contains:
    name:
      description: Name of the backend.
      type: str
    algo:
      description: Its C(balance) algorithm.
      type: str
      sample: roundrobin
    status:
      description: Its status, C(UP) when at least one server is usable.
      type: str
    servers:
      description: Its servers by name.
      type: dict
      contains:
        name:
          description: Name of the server.
          type: str
        backend:
          description: Name of its backend.
          type: str
        status:
          description:
            - HAProxy's status, C(UP), C(DOWN), C(DRAIN), C(MAINT), C(no check), with an
              C(a/b) fraction while rising or falling (C(UP 1/3), C(DOWN 1/2)).
          type: str
        op_state:
          description: C(stopped), C(starting), C(running) or C(stopping), from health.
          type: str
        admin_state:
          description: C(ready), C(drain) or C(maint), set by an operator or the configuration.
          type: str
        address:
          description: IP address.
          type: str
        port:
          description: TCP port.
          type: int
        weight:
          description: Weight set by the configuration or the runtime API (user weight).
          type: int
        scur:
          description: Current sessions.
          type: int
        qcur:
          description: Requests queued for it.
          type: int
        stot:
          description: Sessions since start.
          type: int
        check_configured:
          description: Whether it has a health check.
          type: bool
        check_enabled:
          description: Whether its health check is enabled (paused in maint).
          type: bool
        check_in_progress:
          description: Whether a check was running when read.
          type: bool
        check_status:
          description: Result of the last health check (C(L7OK), C(L4CON), C(INI), ...), or null.
          type: str
        check_code:
          description:
            - Layer 7 code of the last check (HTTP status), or null.
            - Null while a check runs (C(check_in_progress) true), because HAProxy clears the code until it ends.
          type: int
        check_desc:
          description: HAProxy's description of the last check result.
          type: str
        last_check:
          description: Detail of the last check (for example C(Connection refused)).
          type: str
        check_health:
          description:
            - The health counter, 0 to RV(backends.servers.check_rise) +
              RV(backends.servers.check_fall) - 1; UP from rise.
          type: int
        check_rise:
          description: Passing checks needed to come UP.
          type: int
        check_fall:
          description: Failed checks needed to go DOWN.
          type: int
        check_passing:
          description: Whether the last check passed (C(L4OK), C(L6OK), C(L7OK), C(L7OKC)).
          type: bool
        fully_risen:
          description: Whether the health counter is at its top (no fraction in
            RV(backends.servers.status)).
          type: bool
        ready:
          description:
            - C(UP) with no fraction, admin state ready, health check enabled and its last
              result passing. A server that just left maint shows C(UP 1/3) with the stale
              result from before, and is not ready; nor is a server without health check.
          type: bool
        dynamic:
          description:
            - True for a server added at runtime (C(add server)), which a reload loses; false
              for one declared in the configuration (a clone slot too); null when HAProxy's
              answer does not tell (a build without OpenSSL).
            - Asked with C(set server B/S ssl) without its argument, which HAProxy refuses
              without changing anything, naming dynamic servers; one command per server.
          type: bool
        counters:
          description:
            - Its traffic counters since HAProxy started (or last reloaded), which
              P(hitless.deploy.canary_verdict#filter) compares between two reads.
          type: dict
          contains:
            responses:
              description: Answers it gave (C(hrsp_1xx) to C(hrsp_other)).
              type: int
            errors:
              description: Answers of class 5xx (C(hrsp_5xx)).
              type: int
            rtime:
              description: Moving average of its response time over its last 512 answers, in ms.
              type: int
            ttime:
              description: The same for the total session time, in ms.
              type: int
            failed_checks:
              description: Health checks that failed (C(chkfail)).
              type: int
            selected:
              description: Times the balancing algorithm chose it (C(lbtot)).
              type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hitless.deploy.plugins.module_utils._haproxy_runtime import (
    NAME_RE,
    HAProxyRuntimeError,
    open_client,
    runtime_error_message,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            socket=dict(type="str", default="/run/haproxy/admin.sock"),
            timeout=dict(type="float", default=5.0),
            backend=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    backend = module.params["backend"]
    if backend is not None and not NAME_RE.match(backend):
        module.fail_json(msg="backend: %r is not a valid HAProxy name" % backend)
    try:
        client = open_client(module.params["socket"], module.params["timeout"])
    except ValueError as e:
        module.fail_json(msg=str(e))
    try:
        backends = client.backends(backend, probe_dynamic=True)
        version = client.version()
    except HAProxyRuntimeError as e:
        module.fail_json(msg=runtime_error_message(e))
    module.exit_json(changed=False, version=version, backends=backends)


if __name__ == "__main__":
    main()
