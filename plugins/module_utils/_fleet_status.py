# -*- coding: utf-8 -*-
# Copyright: hitless.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What runs where: the fleet's state from one read of every app host and HAProxy host, and
what in it is inconsistent, with what to run.

Input is what the status entry point of the rolling role registers: per app host the result
of ``hitless.deploy.deploy_journal_info`` (its instances, and its background workers with their
overlaps) with the host's names (app, root, ports, servers), per
HAProxy host and backend the results of ``hitless.deploy.haproxy_info`` and
``hitless.deploy.deploy_lock_info``. A host that could not be read is a finding, not an error.

Stdlib and module_utils only: the filter plugin ``hitless.deploy.fleet_status`` runs it on the controller.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.hitless.deploy.plugins.module_utils._journal import recorded_instances


def when(epoch):
    """Epoch seconds as UTC text, or None."""
    try:
        moment = datetime.datetime.fromtimestamp(float(epoch), datetime.timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _failure(result):
    """Why a registered result holds no reading, or None when it does."""
    if not isinstance(result, dict):
        return "nothing was read"
    if result.get("unreachable"):
        return "unreachable: %s" % str(result.get("msg", "")).strip()
    if result.get("failed") or result.get("skipped"):
        return str(result.get("msg", "failed")).strip() or "failed"
    return None


def _instance(instances, port, name):
    seen = instances.get(str(port)) or {}
    return {"unit": seen.get("unit") or "%s@%s.service" % (name, port), "port": int(port),
            "state": seen.get("active_state") or "unknown", "release": seen.get("running_release"),
            "pid": seen.get("main_pid")}


def spec_instances(spec):
    """The app's instances on the host, each {port, clone_port, server, clone_server}. A caller
    from before several instances per host names one by the spec's own keys."""
    listed = spec.get("instances") or [{"port": spec["port"], "clone_port": spec["clone_port"],
                                        "server": spec["server"], "clone": spec["clone_server"]}]
    return [{"port": int(i["port"]), "clone_port": int(i["clone_port"]), "server": i["server"],
             "clone_server": i["clone"]} for i in listed]


def journal_instances(journal, declared):
    """The instances an open journal recorded, or None; a name it did not record (a journal
    from before several instances per host) is the first declared instance's."""
    return [{"port": i["port"], "clone_port": i["clone_port"],
             "server": i["server"] or declared[0]["server"],
             "clone_server": i["clone"] or declared[0]["clone_server"]}
            for i in recorded_instances(journal)] or None


def _worker(seen):
    overlap = seen.get("overlap") or {}
    pinned = overlap.get("pinned_to")
    return {"id": seen.get("worker"), "unit": seen.get("unit"), "listed": bool(seen.get("listed")),
            "state": "not-found" if seen.get("load_state") == "not-found" else seen.get("active_state") or "unknown",
            "release": seen.get("running_release"), "pid": seen.get("main_pid"),
            "overlap": {"unit": overlap.get("unit"), "state": overlap.get("active_state") or "unknown",
                        "release": overlap.get("running_release"),
                        "pinned": pinned.rstrip("/").rsplit("/", 1)[-1] if pinned else None}}


def app_row(spec, read):
    """One app host and app: its instances and their clones, links, releases, journals. The
    first instance is also ``instance`` and ``clone``, as before several instances per host."""
    declared = spec_instances(spec)
    row = {"host": spec["host"], "app": spec["app"], "root": spec.get("root"), "backend": spec["backend"],
           "server": declared[0]["server"], "clone_server": declared[0]["clone_server"],
           "instances": declared, "error": _failure(read)}
    if row["error"]:
        # Still named: their servers are looked for in the backends all the same.
        return row
    host = read.get("host") or {}
    seen = host.get("instances") or {}
    journal, last = read.get("journal"), read.get("last")
    # An interrupted deploy acted on the instances its journal recorded, and its repair will:
    # those are the ones to show while it is open, whatever this run's variables declare.
    declared = journal_instances(journal, declared) or declared
    row.update(
        server=declared[0]["server"], clone_server=declared[0]["clone_server"],
        instances=[dict(_instance(seen, i["port"], spec["app"]), clone_port=i["clone_port"], server=i["server"],
                        clone_server=i["clone_server"], clone=_instance(seen, i["clone_port"], spec["app"]))
                   for i in declared],
        instance=_instance(seen, declared[0]["port"], spec["app"]),
        clone=_instance(seen, declared[0]["clone_port"], spec["app"]),
        workers=[_worker(w) for w in host.get("workers") or []],
        current=host.get("current"), current_is_link=bool(host.get("current_is_link")),
        previous=host.get("previous"), releases=list(host.get("releases") or []),
        bad=dict(host.get("bad") or {}),
        journal=journal and {"deploy_id": journal.get("deploy_id"), "step": journal.get("step"),
                             "since": when(journal.get("started")), "updated": when(journal.get("updated"))},
        last=last and {"deploy_id": last.get("deploy_id"), "outcome": last.get("outcome"),
                       "ended": when(last.get("ended"))})
    return row


def lb_row(host, backend, info, lock_info):
    """One HAProxy host and backend: its servers and who holds the deploy lock."""
    row = {"host": host, "backend": backend, "error": _failure(info) or _failure(lock_info)}
    if row["error"]:
        return row
    servers = ((info.get("backends") or {}).get(backend) or {}).get("servers") or {}
    row["servers"] = dict((name, {"status": s.get("status"), "admin_state": s.get("admin_state"),
                                  "scur": s.get("scur")}) for name, s in servers.items())
    if (info.get("backends") or {}).get(backend) is None:
        row["error"] = "no backend %s" % backend
    lock = lock_info.get("lock")
    row["lock"] = lock and {"deploy_id": lock.get("deploy_id"), "holder": lock.get("holder") or {},
                            "hosts": lock.get("hosts") or [], "since": when(lock.get("since"))}
    return row


def _flag(where, what, fix):
    return {"host": where, "what": what, "fix": fix}


_IDLE = ("inactive", "failed", "unknown")


def _worker_flags(row, worker):
    """A worker not active or on another release than current, an overlap left running or
    pinned: each with app_worker's move to current (which the deploy itself would not do: a
    deploy of the release already current changes nothing, and a repair acts on an open journal
    only) or a start."""
    host, unit, current = row["host"], worker["unit"], row["current"]
    overlap = worker["overlap"]
    move = ("ansible %s -m hitless.deploy.app_worker -a 'unit=%s workers=%s release_path=%s/releases/%s'"
            % (host, unit.split("@", 1)[0], worker["id"], row.get("root") or "ROOT", current))
    unlisted = ("" if worker["listed"] else
                "; and list %s in rolling_workers, or the next deploy leaves it behind again" % worker["id"])
    flags = []
    if worker["state"] == "not-found":
        flags.append(_flag(host, "worker %s is listed but not installed" % unit,
                           "install the workers' template unit (role hitless.deploy.app, app_workers and "
                           "app_worker_exec_start) or drop %s from rolling_workers" % worker["id"]))
    elif worker["state"] != "active":
        flags.append(_flag(host, "worker %s is %s" % (unit, worker["state"]),
                           "see journalctl -u %s, then systemctl start %s (it starts on current, %s)%s"
                           % (unit, unit, current, unlisted)))
    elif worker["release"] and worker["release"] != current:
        flags.append(_flag(host, "worker %s runs release %s but current is %s" % (unit, worker["release"], current),
                           "move it to current behind an overlap: %s%s" % (move, unlisted)))
    if overlap["state"] not in _IDLE:
        flags.append(_flag(host, "overlap %s is %s (release %s) with no deploy under way"
                           % (overlap["unit"], overlap["state"], overlap["release"]),
                           "%s (the worker runs current first, then the overlap stops and its pin goes)" % move))
    elif overlap["pinned"]:
        flags.append(_flag(host, "overlap %s is %s but its pin to release %s is left"
                           % (overlap["unit"], overlap["state"], overlap["pinned"]),
                           "%s (removes the pin)" % move))
    return flags


def _of(row, instance):
    """Which instance a finding is about, when the host runs several of the app: the words of
    a single instance's findings stay as they were."""
    return " of %s@%s" % (row["app"], instance["port"]) if len(row["instances"]) > 1 else ""


def _instance_flags(row, instance):
    """One instance not active or on another release than current, its clone left running."""
    host, clone, unit = row["host"], instance["clone"], instance["unit"]
    flags = []
    if instance["state"] != "active":
        flags.append(_flag(host, "%s is %s" % (unit, instance["state"]),
                           "see journalctl -u %s, then systemctl start %s (its server gets traffic again "
                           "after passing checks)" % (unit, unit)))
    elif instance["release"] and row["current"] and instance["release"] != row["current"]:
        flags.append(_flag(host, "%s runs release %s but current is %s" % (unit, instance["release"], row["current"]),
                           # A deploy of current itself changes nothing (prepare finds it serving):
                           # current must name what runs before a deploy can swap it behind a clone.
                           # With several instances the deploy swaps every one, those on current too.
                           "point current back at what it runs (on %s: ln -sfn releases/%s %s/current), "
                           "then deploy the release you want: ansible-playbook hitless.deploy.rolling "
                           "-e hitless_release_src=... --limit %s"
                           % (host, instance["release"], row.get("root") or "ROOT", host)))
    if clone["state"] not in _IDLE:
        flags.append(_flag(host, "clone %s%s is %s (release %s) with no deploy under way"
                           % (clone["unit"], _of(row, instance), clone["state"], clone["release"]),
                           "when HAProxy sends it nothing (server %s in MAINT), systemctl stop %s"
                           % (instance["clone_server"], clone["unit"])))
    return flags


def _app_flags(row, deploying):
    host, app = row["host"], row["app"]
    limit = " --limit %s" % host
    if row["error"]:
        return [_flag(host, "%s was not read: %s" % (app, row["error"]),
                      "check the host answers: ansible %s -m ansible.builtin.ping" % host)]
    flags = []
    journal = row["journal"]
    if journal and journal["deploy_id"] not in deploying:
        flags.append(_flag(host, "deploy %s of %s stopped at step %s (since %s) and nobody holds its lock"
                           % (journal["deploy_id"], app, journal["step"], journal["since"]),
                           "finish or undo it: ansible-playbook hitless.deploy.rolling --tags repair" + limit))
    under_way = bool(journal) or bool(deploying)
    if not row["current_is_link"]:
        flags.append(_flag(host, "%s: current is not a symlink to a release" % app,
                           "deploy a release: ansible-playbook hitless.deploy.rolling" + limit))
    if row["current"] in row["bad"]:
        mark = row["bad"][row["current"]]
        flags.append(_flag(host, "%s: current release %s is marked bad (%s at %s)"
                           % (app, row["current"], mark.get("cause"), mark.get("step")),
                           "deploy a good release (the mark only refuses deploying it again)"))
    if under_way:
        return flags
    for instance in row["instances"]:
        flags += _instance_flags(row, instance)
    if row["current_is_link"] and row["current"]:
        for worker in row["workers"]:
            flags += _worker_flags(row, worker)
    return flags


def _server_flags(row, app, instance, set_state):
    """An instance's server missing, not ready or not UP, its clone server in service."""
    where, backend, of = row["host"], row["backend"], _of(app, instance)
    name, clone_name = instance["server"], instance["clone_server"]
    flags = []
    server = row["servers"].get(name)
    if server is None:
        flags.append(_flag(where, "backend %s has no server %s%s (app host %s)" % (backend, name, of, app["host"]),
                           "declare it (role hitless.deploy.haproxy)"))
    elif server["admin_state"] != "ready":
        flags.append(_flag(where, "server %s/%s%s is in %s with nobody deploying"
                           % (backend, name, of, server["admin_state"].upper()),
                           "%s (back in service after fresh passing checks)" % set_state % (name, "ready")))
    elif not str(server["status"] or "").startswith("UP"):
        flags.append(_flag(where, "server %s/%s%s is %s" % (backend, name, of, server["status"]),
                           "see why the health check fails on %s" % app["host"]))
    clone = row["servers"].get(clone_name)
    if clone is not None and clone["admin_state"] != "maint":
        flags.append(_flag(where, "clone server %s/%s%s is in service (%s) with nobody deploying"
                           % (backend, clone_name, of, clone["status"]), set_state % (clone_name, "maint")))
    return flags


def _lb_flags(row, rows_of_backend):
    where = row["host"]
    if row["error"]:
        return [_flag(where, "backend %s was not read: %s" % (row["backend"], row["error"]),
                      "check HAProxy runs there and its admin socket answers")]
    if row["lock"]:
        return []
    flags = []
    set_state = ("ansible %s -m hitless.deploy.haproxy_server -a 'backend=%s server=%%s state=%%s'"
                 % (where, row["backend"]))
    for app in rows_of_backend:
        for instance in app["instances"]:
            flags += _server_flags(row, app, instance, set_state)
    return flags


def fleet_status(apps, lbs):
    """``apps``: [{"spec": names, "read": deploy_journal_info result}]; ``lbs``: [{"host",
    "backend", "info": haproxy_info result, "lock": deploy_lock_info result}]. Returns the
    rows and the flags, each flag with what to run."""
    app_rows = [app_row(a["spec"], a["read"]) for a in apps]
    lb_rows = [lb_row(r["host"], r["backend"], r["info"], r["lock"]) for r in lbs]
    deploying = {}
    for row in lb_rows:
        if not row["error"] and row["lock"]:
            deploying.setdefault(row["backend"], set()).add(row["lock"]["deploy_id"])
    flags = []
    for row in app_rows:
        flags += _app_flags(row, deploying.get(row["backend"], set()))
    for row in lb_rows:
        flags += _lb_flags(row, [a for a in app_rows if a["backend"] == row["backend"]])
    return {"apps": app_rows, "haproxy": lb_rows, "flags": flags, "consistent": not flags}


def _cell(value):
    return "-" if value in (None, "", [], {}) else str(value)


def _table(header, rows):
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    return ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in [header] + rows]


def _overlap_cell(overlap):
    if overlap["state"] in _IDLE:
        return "%s, pin %s left" % (overlap["state"], overlap["pinned"]) if overlap["pinned"] else "-"
    return "%s %s %s" % (overlap["unit"].replace(".service", ""), overlap["state"], _cell(overlap["release"]))


def _clone_cell(clone):
    return "-" if clone["state"] in ("inactive", "unknown") else "%s %s %s" % (
        clone["port"], clone["state"], _cell(clone["release"]))


def _app_lines(r):
    """A line per instance; what is the host's (links, releases, journals) on the first only."""
    host_wide = [_cell(r["previous"]), ",".join(r["releases"]) or "-",
                 ",".join("%s (%s)" % (name, mark.get("step") or "?") for name, mark in sorted(r["bad"].items())) or "-",
                 ("open: %s at %s" % (r["journal"]["deploy_id"], r["journal"]["step"])) if r["journal"]
                 else ("%s %s" % (r["last"]["outcome"], r["last"]["ended"])) if r["last"] else "-"]
    out = []
    for n, i in enumerate(r["instances"]):
        previous, kept, bad, journal = host_wide if n == 0 else [""] * len(host_wide)
        out.append([r["host"], r["app"], "%s %s" % (i["port"], i["state"]), _cell(i["release"]), _cell(r["current"]),
                    previous, _clone_cell(i["clone"]), kept, bad, journal])
    return out


def lines(status):
    """The status as text lines: app hosts, their workers (when any), HAProxy hosts, findings."""
    apps = []
    for r in status["apps"]:
        if r["error"]:
            apps.append([r["host"], r["app"], "not read: " + r["error"]] + [""] * 7)
            continue
        apps += _app_lines(r)
    out = _table(["HOST", "APP", "INSTANCE", "RUNS", "CURRENT", "PREVIOUS", "CLONE", "KEPT", "BAD",
                  "JOURNAL"], apps)
    workers = [[r["host"], r["app"], w["unit"].replace(".service", "") + ("" if w["listed"] else " (unlisted)"),
                w["state"], _cell(w["release"]), _overlap_cell(w["overlap"])]
               for r in status["apps"] if not r["error"] for w in r.get("workers") or []]
    if workers:
        out += [""] + _table(["HOST", "APP", "WORKER", "STATE", "RUNS", "OVERLAP"], workers)
    lbs = []
    for r in status["haproxy"]:
        servers = "not read: " + r["error"] if r["error"] else ", ".join(
            "%s %s" % (name, s["status"]) for name, s in sorted(r["servers"].items()))
        lock = "-" if r["error"] or not r.get("lock") else "%s by %s since %s" % (
            r["lock"]["deploy_id"], r["lock"]["holder"].get("user", "?"), r["lock"]["since"])
        lbs.append([r["host"], r["backend"], lock, servers])
    out += [""] + _table(["HAPROXY", "BACKEND", "LOCK", "SERVERS"], lbs)
    out.append("")
    if not status["flags"]:
        out.append("Consistent: every instance and worker runs current, no clone, no overlap, "
                   "no open journal, every server ready.")
    for flag in status["flags"]:
        out.append("%s: %s. Fix: %s." % (flag["host"], flag["what"], flag["fix"]))
    return out
