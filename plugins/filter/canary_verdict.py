"""Filter that judges a canary server from two reads of HAProxy's counters on every HAProxy host."""

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.hitless.deploy.plugins.module_utils._canary import LIMIT_DEFAULTS, judge, names

DOCUMENTATION = r"""
name: canary_verdict
short_description: Judge a canary server by HAProxy's counters against its peers
version_added: 0.2.0
description:
  - Takes the registered results of M(hitless.deploy.haproxy_info) looped over the HAProxy
    hosts (C(loop) with C(delegate_to)) at the end of a bake window, and the same at its start.
  - 'The canary is judged on what its server answered in the window, summed over the HAProxy
    hosts: the share of 5xx answers, the mean response time (from HAProxy''s moving average
    C(rtime) before and after) and the failed health checks. The reference is every other
    server of the backend over the same window (the peers), or, when they answered fewer than
    O(limits.min_responses), the canary''s own server as read before the deploy (O(before)).'
options:
  _input:
    description: Results of M(hitless.deploy.haproxy_info) at the end of the window, one per HAProxy host.
    type: list
    elements: dict
    required: true
  start:
    description: The same at the start of the window.
    type: list
    elements: dict
    required: true
  before:
    description: The same, read before the deploy; the reference when the peers answered too little.
    type: list
    elements: dict
    default: []
  backend:
    description: The backend.
    type: str
    required: true
  server:
    description:
      - The canary's server, or its servers (a host with several instances of the app), judged
        as one.
    type: raw
    required: true
  exclude:
    description: Servers that are not peers (the canary batch's servers and clones).
    type: list
    elements: str
    default: []
  limits:
    description:
      - C(min_responses) (fewer gives the verdict C(too_few)), C(max_5xx_excess) (percentage
        points above the reference's 5xx share), C(rtime_ratio) and C(rtime_margin_ms) (the
        response time may reach the larger of reference x ratio and reference + margin),
        C(max_failed_checks).
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Judge the canary
  ansible.builtin.set_fact:
    verdict: >-
      {{ bake_end.results | hitless.deploy.canary_verdict(start=bake_start.results,
         backend='demo', server='app1', exclude=['app1', 'app1-clone']) }}
"""

RETURN = r"""
_value:
  description:
    - C(verdict) (pass, fail or too_few), C(message) (the figures against their limits, for
      instance "5xx 20.0 % of 1,830 responses on app1, peers 0.0 %, limit 1.0 %"), C(reasons),
      C(canary) and C(reference) (responses, errors, share_5xx, rtime_ms, failed_checks),
      C(reference_kind) (peers, before or none).
  type: dict
"""


def _reads(results, backend, what):
    """{HAProxy host: {server: counters}} from looped haproxy_info results."""
    if not isinstance(results, list):
        raise AnsibleFilterError("canary_verdict: %s must be the results of a loop, got %s"
                                 % (what, type(results).__name__))
    reads = {}
    for result in results:
        if not isinstance(result, Mapping) or result.get("failed") or result.get("unreachable"):
            continue
        host = result.get("item") or result.get("_ansible_delegated_vars", {}).get("ansible_host")
        servers = result.get("backends", {}).get(backend, {}).get("servers", {})
        reads[host] = {name: view["counters"] for name, view in servers.items()
                       if isinstance(view, Mapping) and "counters" in view}
    return reads


def canary_verdict(end, start, backend, server, before=(), exclude=(), limits=None):
    unknown = set(limits or {}) - set(LIMIT_DEFAULTS)
    if unknown:
        raise AnsibleFilterError("canary_verdict: unknown limits %s (known: %s)"
                                 % (", ".join(sorted(unknown)), ", ".join(sorted(LIMIT_DEFAULTS))))
    end_reads = _reads(end, backend, "_input")
    if not end_reads:
        raise AnsibleFilterError("canary_verdict: no HAProxy host was read at the end of the bake")
    skip = set(exclude) | set(names(server))
    peers = sorted({name for read in end_reads.values() for name in read} - skip)
    return judge(_reads(start, backend, "start"), end_reads, server, peers,
                 before=_reads(list(before), backend, "before"), limits=limits)


class FilterModule(object):
    def filters(self):
        return {"canary_verdict": canary_verdict}
