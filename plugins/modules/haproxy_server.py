#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hitless.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: haproxy_server
short_description: Put HAProxy servers in a state, through the runtime API, without a stale UP
version_added: 0.1.0
description:
  - Sets the state of one server of one backend of a running HAProxy through its runtime API
    (stats socket), adds a server at runtime, or removes one; optionally waits until the state
    is really reached.
  - HAProxy reports a server C(UP) the moment it leaves maintenance, with the check result it
    had before. This module never does so. With O(state=ready) the server goes through drain
    (health checks run, no new traffic), its health counter is reset with
    C(set server health down), so it needs O(check_rise) passing checks made B(after) the
    change, and only once it has risen in drain is it set ready and confirmed C(UP) with a
    passing check. Even with O(wait=false) the server stays C(DOWN), out of traffic, until
    those fresh checks pass.
  - Changes made through the runtime API are lost when HAProxy reloads unless the server state
    is saved first (C(server-state-file)); the hitless.deploy.haproxy role saves it before
    every reload. Servers added at runtime are not restored at all; servers declared in the
    configuration (the role's clone slots) are.
author:
  - hitless.deploy developers (@hitless-deploy)
extends_documentation_fragment:
  - hitless.deploy.haproxy_runtime
  - hitless.deploy.attributes
attributes:
  check_mode:
    support: full
    details: Sends no command that changes HAProxy and does not wait; RV(commands) lists what
      would be sent and RV(after) the predicted server.
  diff_mode:
    support: full
options:
  backend:
    description: Name of the backend.
    type: str
    required: true
  server:
    description:
      - Name of the server in O(backend).
      - When it does not exist and O(slots) is set, the server is the slot that holds
        O(address) and O(port); see O(slots).
      - One of O(server) and O(servers) is required.
    type: str
  servers:
    description:
      - Several servers of O(backend) in one call, each taken to O(state) as O(server) would
        be, with the other options shared. It is how the rolling role moves a whole batch of
        app hosts with one call per HAProxy host.
      - Every server is changed first, without waiting. For V(ready), that means armed, out of
        traffic until its fresh checks pass. For V(drain), V(maint) and V(absent), that means
        no new traffic. Then each server is waited for within what is left of one
        O(wait_timeout), so the waits overlap. A server that fails does not stop the others.
        RV(results) reports each server, and the call fails naming every server that failed.
    type: list
    elements: dict
    suboptions:
      server:
        description: Name of the server, as O(server).
        type: str
        required: true
      address:
        description: Its address, as O(address).
        type: str
      port:
        description: Its port, as O(port).
        type: int
  state:
    description:
      - V(ready) - takes traffic. From maint or drain, it goes to drain, C(health down), wait (with
        O(wait)) until O(check_rise) fresh checks passed in drain, C(state ready), wait until
        C(UP) with a passing check. A server already ready is only waited for.
      - V(drain) - no new traffic; with O(wait), wait until it has no sessions and no queue.
      - V(maint) - no traffic and no health checks; with O(wait), wait for its sessions too.
      - V(absent) - put in maint; with O(wait), waited for until it has no sessions (with
        O(shutdown_sessions), closed after O(wait_timeout)). Then a server added at runtime
        (a dynamic server, RV(dynamic)) is removed with C(del server). A server declared in the
        configuration - a clone slot such as the haproxy role's C(NAME-clone), an original -
        is never deleted, only left in maint without sessions, because HAProxy 2.6 would delete it
        and it would come back at the next reload in its configured state (a drained
        original back in traffic). So is a slot listed in O(slots), and a server whose kind
        HAProxy's answers do not tell (RV(dynamic) null). A server that does not exist is fine.
      - V(present) - exists with O(address) and O(port). A missing server is added with
        C(add server B/S ADDR:PORT check inter I rise R fall F) then C(enable health), and
        starts in maint (use V(ready) next). Its admin state is otherwise left alone.
      - V(present) creates a missing server, and so does V(ready) when O(address) and O(port)
        are given (added, then made ready after fresh checks, in one call); the others fail
        naming O(server) when it is missing.
      - V(ready) with O(wait=false) arms the server and returns at once; it is set ready with
        its health forced down, so it stays out of traffic until O(check_rise) fresh checks
        pass. A second call with O(wait=true) then only waits for it to be C(UP). That is how
        the rolling role waits once for several HAProxy hosts.
    type: str
    choices: [ready, drain, maint, absent, present]
    default: ready
  address:
    description:
      - IPv4 or IPv6 address of the server (not a host name, so that it compares with what
        HAProxy reports). Required with O(state=present), always together with O(port).
      - For an existing server at another address it is moved with
        C(set server B/S addr A port P), only while it is in drain or maint (or after this
        run put it there); a server that takes traffic is never moved, the module fails.
    type: str
  port:
    description: TCP port of the server, 1-65535. Goes with O(address).
    type: int
  weight:
    description: Weight of the server, 0-256 (C(set server B/S weight W)).
    type: int
  check_inter:
    description:
      - Milliseconds between health checks of a server this module adds. C(default-server)
        lines of the configuration do not apply to servers added at runtime.
      - Only used when the server is created; a slot keeps its configured check settings.
    type: int
    default: 2000
  check_rise:
    description: Passing checks that bring a server this module adds UP. Only used on creation.
    type: int
    default: 2
  check_fall:
    description: Failed checks that bring a server this module adds DOWN. Only used on creation.
    type: int
    default: 3
  wait:
    description:
      - Wait until the state is really reached, bounded by O(wait_timeout) for the whole run.
      - V(ready) waits for fresh passing checks (see above); it fails if the server has no
        health check. V(drain), V(maint) and V(absent) wait until the server has no sessions
        and nothing queued.
      - A run whose only work is waiting reports C(changed=false).
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds all the waits of one run may take together. When they run out, the module fails
        naming the server and its check status (with V(ready) the server is left in drain, out of
        traffic), or, for sessions with O(shutdown_sessions), closes them.
    type: float
    default: 60
  shutdown_sessions:
    description:
      - When the wait for sessions to end runs out of O(wait_timeout), send
        C(shutdown sessions server B/S) and wait up to 5 more seconds instead of failing.
      - For long-lived connections (SSE, websockets) whose clients reconnect elsewhere.
    type: bool
    default: false
  slots:
    description:
      - Names of servers declared in the configuration (typically C(disabled)) that stand in
        for O(server) when O(backend) cannot take dynamic servers (a C(balance) algorithm that
        is not dynamic, such as C(source) without C(hash-type consistent)).
      - When O(server) does not exist, the slot whose address and port are O(address) and
        O(port) is the server, for every O(state). With O(state=present) and no such slot, a
        backend whose algorithm is C(roundrobin), C(leastconn), C(first) or C(random) gets a
        dynamic server; any other takes the first free slot (in maint, without sessions) and
        moves it to O(address):O(port). If HAProxy refuses C(add server) for being not dynamic,
        a slot is taken too.
      - RV(server) and RV(slot) return the name of the slot in use. O(state=absent) leaves a
        slot in maint rather than deleting it, so it is free again.
      - Every name listed must exist in the backend, or the module fails naming O(slots).
    type: list
    elements: str
    default: []
notes:
  - The O(state=ready) flow takes about O(check_rise) check intervals; measured on HAProxy 2.6
    with C(inter 500 rise 2) it took 0.6 to 0.85 seconds.
  - The health reset marks the server C(DOWN) for that time. Sessions it still has are not cut,
    unless the server has C(on-marked-down shutdown-sessions). A check already running when
    the counter is reset may count as the first of the O(check_rise) passes.
  - A server declared C(disabled) in the configuration keeps that mark (C(srv_admin_state)
    0x04) after it is put in drain or ready; it is not in maint for this module nor HAProxy.
  - Whether a server is dynamic is asked with C(set server B/S ssl) without its argument,
    which HAProxy refuses without changing anything, for a dynamic server with C(not
    supported on dynamic servers) (HAProxy 2.6 built with OpenSSL, as Debian's is). Neither
    C(show stat) nor C(show servers state) tells them apart in 2.6.
seealso:
  - module: hitless.deploy.haproxy_info
  - name: HAProxy 2.6 management guide, runtime API
    description: The commands this module sends.
    link: https://docs.haproxy.org/2.6/management.html#9.3
"""

EXAMPLES = r"""
- name: Take app1 out of traffic and wait for its sessions to end
  hitless.deploy.haproxy_server:
    socket: /run/haproxy/admin.sock
    backend: demo
    server: app1
    state: drain
    wait_timeout: 30
    shutdown_sessions: true

- name: Add a clone server (it starts in maint)
  hitless.deploy.haproxy_server:
    backend: demo
    server: app1-clone
    state: present
    address: 10.213.0.11
    port: 8081
    check_inter: 500
    check_rise: 2
    check_fall: 2

- name: Put it in traffic once fresh health checks pass
  hitless.deploy.haproxy_server:
    backend: demo
    server: app1-clone
    state: ready
    wait_timeout: 20

- name: Drain a batch of originals in one call, their sessions given one grace together
  hitless.deploy.haproxy_server:
    backend: demo
    servers:
      - server: app2
      - server: app3
    state: drain
    wait_timeout: 10
    shutdown_sessions: true

- name: Remove it after draining (a slot declared in the configuration is left in maint)
  hitless.deploy.haproxy_server:
    backend: demo
    server: app1-clone
    state: absent
    wait_timeout: 30
    shutdown_sessions: true

- name: Same on a backend with `balance source`, using pre-declared disabled slots
  hitless.deploy.haproxy_server:
    socket: 127.0.0.1:9999
    backend: sticky
    server: app1-clone
    state: present
    address: 10.213.0.11
    port: 8081
    slots: [slot1, slot2]
  register: clone
"""

RETURN = r"""
backend:
  description: The backend.
  returned: always
  type: str
server:
  description: The server acted on; the slot's name when a slot stands in for O(server).
  returned: with O(server)
  type: str
  sample: app1-clone
slot:
  description: The slot in use, or null.
  returned: with O(server)
  type: str
  sample: slot1
dynamic:
  description:
    - Whether the server was added at runtime (true) or is declared in the configuration
      (false); null when the server does not exist or HAProxy's answer does not tell.
    - Only a dynamic server is deleted by O(state=absent).
  returned: with O(server)
  type: bool
  sample: false
before:
  description: The server before the run (null when it did not exist), with the keys
    M(hitless.deploy.haproxy_info) returns for a server.
  returned: with O(server)
  type: dict
  sample: {"name": "app1", "status": "UP", "admin_state": "ready", "address": "10.213.0.11",
           "port": 8080, "weight": 1, "scur": 3, "qcur": 0, "check_status": "L7OK"}
after:
  description:
    - The server after the run (null when it no longer exists); on failure, where it stands.
    - In check mode, the prediction of C(admin_state), C(address), C(port) and C(weight).
  returned: with O(server)
  type: dict
diff:
  description: C(state), C(address), C(port) and C(weight) before and after.
  returned: always
  type: dict
  sample: {"before": {"state": "ready", "address": "10.213.0.11", "port": 8080, "weight": 1},
           "after": {"state": "drain", "address": "10.213.0.11", "port": 8080, "weight": 1}}
commands:
  description: The runtime API commands sent (in check mode, that would be sent).
  returned: always
  type: list
  elements: str
  sample: ["set server demo/app1 state drain", "set server demo/app1 health down",
           "set server demo/app1 state ready"]
elapsed:
  description: Seconds the run took, waits included.
  returned: always
  type: float
  sample: 1.42
results:
  description:
    - With O(servers), one item per server in its order, with the keys above (RV(server),
      RV(slot), RV(dynamic), RV(before), RV(after), RV(diff), RV(commands), RV(elapsed)),
      C(requested) (the name asked for, where RV(server) is the slot standing in for it),
      C(failed) and, for a server that failed, C(msg). The top-level RV(commands) lists
      them all; RV(diff) maps each server's name to its state.
  returned: with O(servers)
  type: list
  elements: dict
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hitless.deploy.plugins.module_utils._haproxy_runtime import (
    HAProxyRuntimeError,
    open_client,
    runtime_error_message,
)
from ansible_collections.hitless.deploy.plugins.module_utils._haproxy_batch import run_batch
from ansible_collections.hitless.deploy.plugins.module_utils._haproxy_server import (
    STATES,
    ParamError,
    PlanError,
    Runner,
    StateError,
    build_request,
)


def run_servers(module, client, requests):
    started = time.monotonic()
    try:
        results = run_batch(client, requests, check_mode=module.check_mode)
    except ParamError as e:
        module.fail_json(msg=str(e))
    except HAProxyRuntimeError as e:
        module.fail_json(msg=runtime_error_message(e))
    summary = dict(
        changed=any(r.get("changed") for r in results),
        backend=requests[0].backend,
        results=results,
        commands=[c for r in results for c in r.get("commands", [])],
        diff={"before": dict((r["server"], (r.get("diff") or {}).get("before")) for r in results),
              "after": dict((r["server"], (r.get("diff") or {}).get("after")) for r in results)},
        elapsed=round(time.monotonic() - started, 3),
    )
    failed = [r for r in results if r.get("failed")]
    if failed:
        module.fail_json(msg="; ".join("%s: %s" % (r["server"], r["msg"]) for r in failed), **summary)
    module.exit_json(**summary)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            socket=dict(type="str", default="/run/haproxy/admin.sock"),
            timeout=dict(type="float", default=5.0),
            backend=dict(type="str", required=True),
            server=dict(type="str"),
            servers=dict(type="list", elements="dict", options=dict(
                server=dict(type="str", required=True),
                address=dict(type="str"),
                port=dict(type="int"),
            )),
            state=dict(type="str", default="ready", choices=list(STATES)),
            address=dict(type="str"),
            port=dict(type="int"),
            weight=dict(type="int"),
            check_inter=dict(type="int", default=2000),
            check_rise=dict(type="int", default=2),
            check_fall=dict(type="int", default=3),
            wait=dict(type="bool", default=True),
            wait_timeout=dict(type="float", default=60.0),
            shutdown_sessions=dict(type="bool", default=False),
            slots=dict(type="list", elements="str", default=[]),
        ),
        required_one_of=[("server", "servers")],
        mutually_exclusive=[("server", "servers"), ("servers", "address"), ("servers", "port")],
        required_together=[("address", "port")],
        supports_check_mode=True,
    )
    params = dict((k, module.params[k]) for k in (
        "backend", "server", "state", "address", "port", "weight", "check_inter", "check_rise",
        "check_fall", "wait", "wait_timeout", "shutdown_sessions", "slots"))
    try:
        if module.params["servers"] is not None:
            requests = [build_request(dict(params, **item)) for item in module.params["servers"]]
        else:
            request = build_request(params)
    except ParamError as e:
        module.fail_json(msg=str(e))
    try:
        client = open_client(module.params["socket"], module.params["timeout"])
    except ValueError as e:
        module.fail_json(msg=str(e))
    if module.params["servers"] is not None:
        run_servers(module, client, requests)
    runner = Runner(client, request, check_mode=module.check_mode)
    try:
        result = runner.run()
    except ParamError as e:
        module.fail_json(msg=str(e))
    except PlanError as e:
        module.fail_json(msg=str(e), before=runner.before, changed=False, commands=[])
    except StateError as e:
        module.fail_json(msg=e.msg, **e.result)
    except HAProxyRuntimeError as e:
        module.fail_json(msg=runtime_error_message(e))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
