#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: app_check
short_description: Run an app instance's post_start checks on the app host until they all pass
version_added: 0.1.0
description:
  - Runs HTTP, TCP and command checks against an app instance from the app host itself, in
    rounds. Every round runs every check once; the module succeeds once O(require_consecutive)
    rounds in a row passed completely, and fails when O(retries) or O(deadline) run out.
  - On failure the message names each failing check (index, name, kind, target) and its last
    error, such as the HTTP status and the start of the body, or the exception.
  - With O(ports) it checks several instances of the host side by side, one O(deadline) for all.
  - It only reads, so it never reports C(changed).
author: hitless.deploy developers (@hitless-deploy)
attributes:
  check_mode:
    support: full
    description:
      - The checks run in check mode too, because they change nothing (HTTP requests, TCP
        connects, and commands that are expected to be read-only), so the result is the real one.
  diff_mode:
    support: none
    description: Nothing is compared or changed, so there is no diff.
options:
  checks:
    description:
      - The checks; each item has an optional O(checks[].name) and exactly one of
        O(checks[].http), O(checks[].tcp) or O(checks[].command).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name shown in results and failure messages.
        type: str
      http:
        description: An HTTP request whose response must match.
        type: dict
        suboptions:
          url:
            description:
              - Full C(http://) or C(https://) URL. Credentials in the URL are refused, use
                O(checks[].http.secret_headers).
              - Give either this or O(checks[].http.path).
            type: str
          path:
            description: Path (with query) requested from C(http://)O(host):O(port).
            type: str
          method:
            description: HTTP method. Redirects are not followed and no proxy is used.
            type: str
            default: GET
            choices: [GET, HEAD, OPTIONS, POST]
          status:
            description: Expected status code, or a list of accepted codes.
            type: raw
            default: 200
          body_regex:
            description: Python regular expression searched for in the body (the first 1 MiB).
            type: str
          headers:
            description:
              - Expected response headers; each key is a header name (case-insensitive), each
                value a regular expression searched for in that header's value.
            type: dict
          request_headers:
            description:
              - Headers sent with the request, such as C(Host) or C(Accept). They never appear in
                the results or messages, but they are not secret either, since like any option
                they appear in the task's C(invocation).
              - Put credentials in O(checks[].http.secret_headers).
            type: dict
          secret_headers:
            description:
              - Headers carrying credentials, such as C(Authorization), sent with the request.
              - Their values are C(no_log) - never returned, and Ansible masks every occurrence of
                them in the output, so a short or common value would mask unrelated text too.
            type: dict
          timeout:
            description: Seconds per attempt (cut to the time left before O(deadline)).
            type: float
            default: 5
          validate_certs:
            description: Verify the server certificate of an C(https://) URL.
            type: bool
            default: true
      tcp:
        description: A TCP connect that must succeed.
        type: dict
        suboptions:
          host:
            description: Address to connect to; defaults to O(host).
            type: str
          port:
            description: Port to connect to (1-65535); defaults to O(port).
            type: int
          timeout:
            description: Seconds per attempt (cut to the time left before O(deadline)).
            type: float
            default: 5
      command:
        description:
          - A command run on the app host as the module's user (use C(become) to change it),
            without a shell, whose exit code (and output) must match.
        type: dict
        suboptions:
          argv:
            description: The command as a list of arguments. Give either this or O(checks[].command.cmd).
            type: list
            elements: str
          cmd:
            description: The command as a string, split like a shell would (C(shlex)) but run without one.
            type: str
          rc:
            description: Expected exit code.
            type: int
            default: 0
          stdout_regex:
            description: Python regular expression searched for in the standard output.
            type: str
          timeout:
            description: Seconds per attempt; the command and its children are killed after it.
            type: float
            default: 30
  host:
    description:
      - Address of the instance, used by O(checks[].http.path) and as the default of
        O(checks[].tcp.host).
    type: str
    default: 127.0.0.1
  port:
    description: The instance's port (1-65535), used by O(checks[].http.path) and O(checks[].tcp).
    type: int
  ports:
    description:
      - Several instances' ports (each 1-65535, each once) instead of O(port). Every instance
        gets the same O(checks), and the instances are checked side by side, each under its own
        O(deadline) counted from the module's start, so a release that never passes fails after
        one deadline, not one per instance.
      - The module fails when any instance fails; its message names each failing port, as in
        C(on 8082) followed by that instance's own message.
    type: list
    elements: int
  retries:
    description:
      - Rounds after the first one before giving up; at most O(retries) + 1 rounds run.
      - Without it only O(deadline) bounds the rounds.
    type: int
  interval:
    description: Seconds to wait between rounds.
    type: float
    default: 1
  deadline:
    description:
      - Overall time limit in seconds, counted from the start of the module, O(initial_delay)
        included. No round starts when it could not begin before the deadline.
    type: float
    default: 60
  initial_delay:
    description: Seconds to wait before the first round.
    type: float
    default: 0
  require_consecutive:
    description: Number of consecutive rounds in which every check must pass.
    type: int
    default: 1
notes:
  - Checks run from the app host, so C(127.0.0.1) reaches the instance directly, never through
    the load balancer.
  - Command checks' output may appear in failure messages; keep secrets out of them.
seealso:
  - module: hitless.deploy.app_instance
"""

EXAMPLES = r"""
- name: Wait until the restarted instance is healthy and serves the new release
  hitless.deploy.app_check:
    port: 8080
    deadline: 60
    interval: 0.5
    require_consecutive: 2
    checks:
      - name: health
        http:
          path: /health
          body_regex: "^ok"
      - name: version
        http:
          path: /
          body_regex: '"version": "v2"'
          headers:
            Content-Type: ^application/json
      - name: listening
        tcp: {}
      - name: migrations applied
        command:
          argv: [/srv/demo/current/bin/manage, check-migrations]

- name: Check two instances of the host side by side (one deadline for both)
  hitless.deploy.app_check:
    ports: [8080, 8082]
    deadline: 60
    checks:
      - name: health
        http:
          path: /health

- name: An authenticated endpoint (the token stays out of the output)
  hitless.deploy.app_check:
    checks:
      - http:
          url: https://127.0.0.1:8443/ready
          status: [200, 204]
          validate_certs: false
          request_headers:
            Host: demo.example.com
          secret_headers:
            Authorization: "Bearer {{ ready_token }}"
"""

RETURN = r"""
msg:
  description: Summary; on failure it names each failing check and its last error.
  returned: always
  type: str
  sample: "all 2 checks passed after 3 rounds in 2.214s"
param:
  description: The option at fault, such as V(checks[1].http.body_regex); no check ran.
  returned: on invalid input
  type: str
  sample: checks[1].http.body_regex
elapsed:
  description: Seconds from the start of the module until it finished (with O(ports), the longest instance's).
  returned: when the checks ran
  type: float
  sample: 2.214
rounds:
  description: Number of rounds run (with O(ports), the most any instance ran).
  returned: when the checks ran
  type: int
  sample: 3
results:
  description:
    - One item per check, in the order of O(checks).
    - With O(ports), each instance's items in the order of O(ports), each with its RV(results[].port).
  returned: when the checks ran
  type: list
  elements: dict
  contains:
    name:
      description: The check's O(checks[].name), or null.
      type: str
      sample: health
    kind:
      description: V(http), V(tcp) or V(command).
      type: str
      sample: http
    target:
      description:
        - What was checked (method and URL, host:port, or the command line); never any request
          header.
      type: str
      sample: GET http://127.0.0.1:8080/health
    passed:
      description: Whether the check's last attempt passed.
      type: bool
      sample: true
    attempts:
      description: Number of attempts.
      type: int
      sample: 3
    failures:
      description: Number of failed attempts.
      type: int
      sample: 2
    last_error:
      description: Error of the most recent failed attempt (even if later ones passed), or null.
      type: str
      sample: connection refused
    elapsed:
      description: Seconds spent in this check's attempts.
      type: float
      sample: 0.012
    port:
      description: The instance checked.
      returned: with O(ports)
      type: int
      sample: 8082
instances:
  description: With O(ports), one item per instance, in the order of O(ports).
  returned: when the checks of O(ports) ran
  type: list
  elements: dict
  contains:
    port:
      description: The instance's port.
      type: int
      sample: 8082
    passed:
      description: Whether the instance's checks passed.
      type: bool
      sample: false
    msg:
      description: The instance's summary, as RV(msg) of a single instance.
      type: str
      sample: "all 2 checks passed after 1 round in 0.013s"
    elapsed:
      description: Seconds the instance's checks took.
      type: float
      sample: 0.013
    rounds:
      description: Number of rounds run for the instance.
      type: int
      sample: 1
    results:
      description: The instance's items of RV(results).
      type: list
      elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hitless.deploy.plugins.module_utils._app_check import (
    CheckError,
    argument_spec,
    instances_result,
    parse_checks,
    parse_ports,
    parse_settings,
    run_side_by_side,
)


def main():
    module = AnsibleModule(argument_spec=dict(argument_spec(), ports=dict(type="list", elements="int")),
                           mutually_exclusive=[("port", "ports")], supports_check_mode=True)
    try:
        settings = parse_settings(module.params)
        ports = parse_ports(module.params)
        check_lists = [parse_checks(dict(module.params, port=port)) for port in ports]
    except CheckError as e:
        module.fail_json(msg=e.msg, param=e.param)
    # Check mode runs the checks too: they only read.
    outcomes = run_side_by_side(check_lists, settings)
    result = instances_result(ports, check_lists, settings, outcomes)
    if not result.pop("passed"):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
