# -*- coding: utf-8 -*-
# Copyright: hitless.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The canary verdict: a freshly upgraded server judged by HAProxy's own counters.

Input is what ``hitless.deploy.haproxy_info`` reports per server (its ``counters``, from
``_haproxy_runtime.server_counters``), read on
every HAProxy host at the start and at the end of the bake. The canary's window (what its
server answered in between, summed over the HAProxy hosts) is judged against a reference: the
servers of the backend that were not upgraded, over the same window, or when they answered too
little, the canary's own server before the deploy (HAProxy's figures since it started).

Stdlib only: the filter plugin ``hitless.deploy.canary_verdict`` runs it on the controller.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

# HAProxy keeps a server's response time (rtime) as a moving average over TIME_STATS_SAMPLES
# responses: sum = sum - sum / N + t, rtime = sum / N (swrate_add and swrate_avg in its
# include/haproxy/freq_ctr.h). The mean of the k responses of a window follows from the
# average before and after it.
SAMPLES = 512

LIMIT_DEFAULTS = {
    "min_responses": 50,
    "max_5xx_excess": 1.0,
    "rtime_ratio": 2.0,
    "rtime_margin_ms": 50,
    "max_failed_checks": 0,
}


def _samples_in(view):
    # HAProxy averages over fewer samples while a server has answered fewer than SAMPLES.
    return min(max(view["selected"], view["responses"]), SAMPLES) or 1


def window_mean_rtime(before, after, responses):
    """Mean response time (ms) of the ``responses`` answered between two reads, or None."""
    if responses <= 0:
        return None
    decay = (1.0 - 1.0 / SAMPLES) ** responses
    sum_before = before["rtime"] * _samples_in(before)
    sum_after = after["rtime"] * _samples_in(after)
    mean = (sum_after - sum_before * decay) / (SAMPLES * (1.0 - decay))
    return max(mean, 0.0)


def server_window(before, after):
    """What one server did between two reads of one HAProxy host's counters.

    Counters that went down mean HAProxy restarted or reloaded in between: its new process
    counts from zero, so the window is what it counted since.
    """
    if before is None or any(after[k] < before[k] for k in ("responses", "errors", "failed_checks")):
        before = {"responses": 0, "errors": 0, "rtime": 0, "ttime": 0, "failed_checks": 0,
                  "selected": 0}
    responses = after["responses"] - before["responses"]
    return {
        "responses": responses,
        "errors": after["errors"] - before["errors"],
        "failed_checks": after["failed_checks"] - before["failed_checks"],
        "rtime_ms": window_mean_rtime(before, after, responses),
    }


def combine(windows):
    """Several windows (servers, HAProxy hosts) as one: sums, and the response-weighted mean."""
    total = {"responses": 0, "errors": 0, "failed_checks": 0, "rtime_ms": None}
    weighted = 0.0
    for item in windows:
        total["responses"] += item["responses"]
        total["errors"] += item["errors"]
        total["failed_checks"] += item["failed_checks"]
        if item["rtime_ms"] is not None and item["responses"] > 0:
            weighted += item["rtime_ms"] * item["responses"]
    if total["responses"] > 0 and weighted:
        total["rtime_ms"] = weighted / total["responses"]
    elif total["responses"] > 0:
        total["rtime_ms"] = 0.0
    total["share_5xx"] = 100.0 * total["errors"] / total["responses"] if total["responses"] else 0.0
    return total


def names(canary):
    """The canary's servers: one name, or a list (several instances on the canary host)."""
    return [canary] if isinstance(canary, str) else list(canary)


def baseline(reads, server):
    """The canary's own servers before the deploy, from one read per HAProxy host."""
    found = [read[name] for read in reads.values() for name in names(server) if name in read]
    if not found:
        return None
    responses = sum(c["responses"] for c in found)
    errors = sum(c["errors"] for c in found)
    rtime = (sum(c["rtime"] * c["responses"] for c in found) / responses) if responses else None
    return {"responses": responses, "errors": errors, "failed_checks": 0, "rtime_ms": rtime,
            "share_5xx": 100.0 * errors / responses if responses else 0.0}


def windows(start, end, servers):
    """Each named server's windows, one per HAProxy host that has it at the end."""
    result = {}
    for lb, after in end.items():
        before = start.get(lb, {})
        for name in servers:
            if name in after:
                result.setdefault(name, []).append(server_window(before.get(name), after[name]))
    return result


def _n(value):
    return "{:,}".format(value)


def _pct(value):
    return "%.1f %%" % value


def _ms(value):
    return "%.0f ms" % value


def judge(start, end, canary, peers, before=None, limits=None):
    """The verdict on server ``canary`` over the bake.

    ``start`` and ``end`` map each HAProxy host to {server: counters}; ``peers`` names the
    servers not upgraded; ``before`` maps each HAProxy host to {server: counters} read before
    the deploy (the reference when the peers answered too little). Returns a dict: ``verdict``
    (pass, fail or too_few), ``reasons`` (one sentence per limit exceeded), ``canary`` and
    ``reference`` (the figures), ``reference_kind`` (peers, before or none) and ``message``.
    """
    limits = dict(LIMIT_DEFAULTS, **(limits or {}))
    minimum = int(limits["min_responses"])
    own_names = names(canary)
    mine = combine([w for ws in windows(start, end, own_names).values() for w in ws])
    peer_windows = windows(start, end, [p for p in peers if p not in own_names])
    canary = ", ".join(own_names)
    reference = combine([w for ws in peer_windows.values() for w in ws])
    kind = "peers"
    if reference["responses"] < minimum:
        own = baseline(before or {}, canary)
        if own is not None and own["responses"] >= minimum:
            reference, kind = own, "before"
        else:
            kind = "none"
    ref_name = {"peers": "peers", "before": "before the deploy", "none": "no reference"}[kind]
    result = {"canary": mine, "reference": reference, "reference_kind": kind,
              "server": canary, "limits": limits, "reasons": []}
    if mine["responses"] < minimum:
        result["verdict"] = "too_few"
        result["message"] = ("too few responses for a verdict: %s on %s during the bake, at least %s"
                             " needed (rolling_bake_min_responses)"
                             % (_n(mine["responses"]), canary, _n(minimum)))
        return result

    reasons = result["reasons"]
    ref_share = reference["share_5xx"] if kind != "none" else 0.0
    limit_5xx = ref_share + float(limits["max_5xx_excess"])
    if mine["share_5xx"] > limit_5xx:
        reasons.append("5xx %s of %s responses on %s, %s %s, limit %s"
                       % (_pct(mine["share_5xx"]), _n(mine["responses"]), canary, ref_name,
                          _pct(ref_share), _pct(limit_5xx)))
    if kind != "none" and reference["rtime_ms"] is not None and mine["rtime_ms"] is not None:
        limit_rtime = max(reference["rtime_ms"] * float(limits["rtime_ratio"]),
                          reference["rtime_ms"] + float(limits["rtime_margin_ms"]))
        result["limit_rtime_ms"] = limit_rtime
        if mine["rtime_ms"] > limit_rtime:
            reasons.append("response time %s on %s, %s %s, limit %s"
                           % (_ms(mine["rtime_ms"]), canary, ref_name,
                              _ms(reference["rtime_ms"]), _ms(limit_rtime)))
    if mine["failed_checks"] > int(limits["max_failed_checks"]):
        reasons.append("%s failed health checks on %s, limit %s"
                       % (_n(mine["failed_checks"]), canary, limits["max_failed_checks"]))
    result["limit_5xx"] = limit_5xx
    result["verdict"] = "fail" if reasons else "pass"
    figures = ("5xx %s of %s responses, response time %s; %s: 5xx %s, %s"
               % (_pct(mine["share_5xx"]), _n(mine["responses"]), _ms(mine["rtime_ms"] or 0),
                  ref_name, _pct(ref_share),
                  _ms(reference["rtime_ms"]) if reference.get("rtime_ms") is not None
                  else "no response time"))
    result["message"] = "; ".join(reasons) if reasons else "%s passed: %s" % (canary, figures)
    if kind == "none":
        result["message"] += (" (the peers answered fewer than %s responses and nothing was read"
                              " before the deploy: judged against the limits alone)" % _n(minimum))
    return result
