from ansible_collections.hitless.deploy.plugins.module_utils._fleet_status import fleet_status, lines

SPEC = {"host": "app1", "app": "demo", "backend": "demo", "server": "app1",
        "clone_server": "app1-clone", "port": 8080, "clone_port": 8081, "root": "/srv/demo"}


def read(current="v2", runs="v2", state="active", clone_state="inactive", clone_runs=None,
         journal=None, bad=None):
    return {"journal": journal, "last": {"deploy_id": "d1", "outcome": "deployed", "ended": 0},
            "host": {"current": current, "current_is_link": True, "previous": "v1",
                     "releases": ["v2", "v1"], "bad": bad or {},
                     "instances": {"8080": {"unit": "demo@8080.service", "active_state": state,
                                            "running_release": runs, "main_pid": 10},
                                   "8081": {"unit": "demo@8081.service", "active_state": clone_state,
                                            "running_release": clone_runs, "main_pid": 0}}}}


def lb(server="ready", clone="maint", status="UP", lock=None, host="lb1"):
    info = {"backends": {"demo": {"servers": {
        "app1": {"status": status, "admin_state": server, "scur": 0},
        "app1-clone": {"status": "MAINT" if clone == "maint" else "UP", "admin_state": clone, "scur": 0}}}}}
    return {"host": host, "backend": "demo", "info": info, "lock": {"lock": lock}}


def whats(status):
    return [f["what"] for f in status["flags"]]


def test_a_fleet_as_a_deploy_leaves_it_is_consistent():
    status = fleet_status([{"spec": SPEC, "read": read()}], [lb()])
    assert status["consistent"] and status["flags"] == []
    row = status["apps"][0]
    assert (row["instance"]["release"], row["current"], row["releases"]) == ("v2", "v2", ["v2", "v1"])
    assert status["haproxy"][0]["lock"] is None
    assert lines(status)[-1].startswith("Consistent")


def test_an_instance_on_another_release_than_current_is_flagged_with_current_pointed_back_first():
    status = fleet_status([{"spec": SPEC, "read": read(runs="v1")}], [lb()])
    assert whats(status) == ["demo@8080.service runs release v1 but current is v2"]
    # A deploy of v2 would find v2 serving and change nothing.
    fix = status["flags"][0]["fix"]
    assert "ln -sfn releases/v1 %s/current" % SPEC["root"] in fix and fix.endswith("--limit app1"), fix
    assert "hitless_release_name=v2" not in fix


def test_what_a_deploy_leaves_behind_is_flagged_when_nobody_deploys():
    journal = {"deploy_id": "d2", "step": "upgrade", "started": 0, "updated": 0}
    status = fleet_status([{"spec": SPEC, "read": read(clone_state="active", clone_runs="v1", journal=journal)}],
                          [lb(server="drain", clone="ready")])
    what = whats(status)
    assert what[0].startswith("deploy d2 of demo stopped at step upgrade")
    assert "--tags repair --limit app1" in status["flags"][0]["fix"]
    assert "server demo/app1 is in DRAIN with nobody deploying" in what
    assert "clone server demo/app1-clone is in service (UP) with nobody deploying" in what


def test_a_deploy_under_way_is_not_a_finding():
    journal = {"deploy_id": "d2", "step": "upgrade", "started": 0, "updated": 0}
    lock = {"deploy_id": "d2", "holder": {"user": "ops"}, "hosts": ["app1"], "since": 0}
    status = fleet_status([{"spec": SPEC, "read": read(runs="v1", clone_state="active", journal=journal)}],
                          [lb(server="drain", clone="ready", lock=lock)])
    assert status["consistent"], status["flags"]
    assert "d2 by ops since 1970-01-01 00:00:00 UTC" in "\n".join(lines(status))


def test_a_clone_running_a_dead_instance_and_a_bad_current_are_flagged():
    status = fleet_status([{"spec": SPEC, "read": read(state="failed", clone_state="active", clone_runs="v2",
                                                       bad={"v2": {"step": "post_start", "cause": "500"}})}],
                          [lb(status="DOWN")])
    what = whats(status)
    assert "demo: current release v2 is marked bad (500 at post_start)" in what
    assert "demo@8080.service is failed" in what
    assert "clone demo@8081.service is active (release v2) with no deploy under way" in what
    assert "server demo/app1 is DOWN" in what


def test_hosts_not_read_are_findings_not_errors():
    status = fleet_status([{"spec": SPEC, "read": {"unreachable": True, "msg": "ssh: timed out"}}],
                          [{"host": "lb1", "backend": "demo", "info": {"failed": True, "msg": "no socket"},
                            "lock": {"lock": None}}])
    assert whats(status) == ["demo was not read: unreachable: ssh: timed out",
                             "backend demo was not read: no socket"]
    text = "\n".join(lines(status))
    assert "not read: unreachable: ssh: timed out" in text and "not read: no socket" in text


def test_a_server_missing_from_its_backend_is_flagged():
    missing = lb()
    del missing["info"]["backends"]["demo"]["servers"]["app1"]
    assert whats(fleet_status([{"spec": SPEC, "read": read()}], [missing])) == [
        "backend demo has no server app1 (app host app1)"]


def worker(worker_id, runs="v2", state="active", listed=True, overlap="inactive", overlap_runs=None, pinned=None,
           load_state="loaded"):
    return {"worker": worker_id, "listed": listed, "unit": "demo-worker@%s.service" % worker_id,
            "load_state": load_state, "active_state": state, "sub_state": "running", "main_pid": 20,
            "running_release": runs,
            "overlap": {"unit": "demo-worker@%s-next.service" % worker_id, "active_state": overlap, "main_pid": 0,
                        "running_release": overlap_runs, "pinned_to": pinned and "/srv/demo/releases/" + pinned}}


def with_workers(*workers, **kw):
    seen = read(**kw)
    seen["host"]["workers"] = list(workers)
    return seen


ROOTED = dict(SPEC, root="/srv/demo")
MOVE = "ansible app1 -m hitless.deploy.app_worker -a 'unit=demo-worker workers=%s release_path=/srv/demo/releases/v2'"


def test_workers_on_current_with_no_overlap_are_consistent_and_shown_in_their_own_table():
    status = fleet_status([{"spec": ROOTED, "read": with_workers(worker("1"), worker("9", listed=False))}], [lb()])
    assert status["consistent"], status["flags"]
    assert [(w["id"], w["state"], w["release"], w["listed"]) for w in status["apps"][0]["workers"]] == [
        ("1", "active", "v2", True), ("9", "active", "v2", False)]
    text = lines(status)
    assert text[3:6] == ["HOST  APP   WORKER                    STATE   RUNS  OVERLAP",
                         "app1  demo  demo-worker@1             active  v2    -",
                         "app1  demo  demo-worker@9 (unlisted)  active  v2    -"], text


def test_no_workers_no_worker_table():
    assert not any("WORKER" in line for line in lines(fleet_status([{"spec": ROOTED, "read": read()}], [lb()])))


def test_a_worker_on_another_release_is_moved_by_app_worker_and_an_unlisted_one_also_listed():
    status = fleet_status([{"spec": ROOTED, "read": with_workers(worker("1", runs="v1"),
                                                                 worker("9", runs="v1", listed=False))}], [lb()])
    assert [(f["what"], f["fix"]) for f in status["flags"]] == [
        ("worker demo-worker@1.service runs release v1 but current is v2",
         "move it to current behind an overlap: " + MOVE % "1"),
        ("worker demo-worker@9.service runs release v1 but current is v2",
         "move it to current behind an overlap: " + MOVE % "9"
         + "; and list 9 in rolling_workers, or the next deploy leaves it behind again")]
    assert "app1  demo  demo-worker@1             active  v1    -" in lines(status)


def test_a_worker_down_or_not_installed_and_overlaps_left_running_or_pinned_are_flagged():
    status = fleet_status([{"spec": ROOTED, "read": with_workers(
        worker("1", state="failed", runs=None), worker("2", overlap="active", overlap_runs="v2", pinned="v2"),
        worker("3", overlap="inactive", pinned="v1"), worker("4", state="inactive", runs=None, load_state="not-found"))}],
        [lb()])
    assert [(f["what"], f["fix"]) for f in status["flags"]] == [
        ("worker demo-worker@1.service is failed",
         "see journalctl -u demo-worker@1.service, then systemctl start demo-worker@1.service (it starts on current, v2)"),
        ("overlap demo-worker@2-next.service is active (release v2) with no deploy under way",
         MOVE % "2" + " (the worker runs current first, then the overlap stops and its pin goes)"),
        ("overlap demo-worker@3-next.service is inactive but its pin to release v1 is left",
         MOVE % "3" + " (removes the pin)"),
        ("worker demo-worker@4.service is listed but not installed",
         "install the workers' template unit (role hitless.deploy.app, app_workers and app_worker_exec_start) "
         "or drop 4 from rolling_workers")]
    text = lines(status)
    assert "app1  demo  demo-worker@2  active     v2    demo-worker@2-next active v2" in text, text
    assert "app1  demo  demo-worker@3  active     v2    inactive, pin v1 left" in text, text
    assert "app1  demo  demo-worker@4  not-found  -     -" in text, text


def test_workers_and_overlaps_of_a_deploy_under_way_are_not_findings():
    journal = {"deploy_id": "d2", "step": "post_start", "started": 0, "updated": 0}
    lock = {"deploy_id": "d2", "holder": {"user": "ops"}, "hosts": ["app1"], "since": 0}
    moving = with_workers(worker("1", runs="v1", overlap="active", overlap_runs="v2", pinned="v2"), journal=journal)
    assert fleet_status([{"spec": ROOTED, "read": moving}], [lb(lock=lock)])["consistent"]
    # Nobody holds the lock: the interrupted deploy is the finding, its repair moves the workers.
    assert whats(fleet_status([{"spec": ROOTED, "read": moving}], [lb()])) == [
        "deploy d2 of demo stopped at step post_start (since 1970-01-01 00:00:00 UTC) and nobody holds its lock"]


# Two instances of demo on app1 (rolling_ports [8080, 8082], clones on 8081 and 8083), named
# as the rolling role's _rolling_instances names them.
TWO = dict(SPEC, server="app1-8080", clone_server="app1-8080-clone", instances=[
    {"port": 8080, "clone_port": 8081, "server": "app1-8080", "clone": "app1-8080-clone"},
    {"port": 8082, "clone_port": 8083, "server": "app1-8082", "clone": "app1-8082-clone"}])


def read_two(second_runs="v2", second_clone="inactive"):
    seen = read()
    seen["host"]["instances"].update({
        "8082": {"unit": "demo@8082.service", "active_state": "active", "running_release": second_runs, "main_pid": 11},
        "8083": {"unit": "demo@8083.service", "active_state": second_clone,
                 "running_release": "v2" if second_clone == "active" else None, "main_pid": 0}})
    return seen


def lb_two(second="ready", second_clone="maint"):
    servers = {}
    for port, admin, clone in ((8080, "ready", "maint"), (8082, second, second_clone)):
        servers["app1-%d" % port] = {"status": "UP" if admin == "ready" else admin.upper(), "admin_state": admin,
                                     "scur": 0}
        servers["app1-%d-clone" % port] = {"status": "MAINT" if clone == "maint" else "UP", "admin_state": clone,
                                           "scur": 0}
    return {"host": "lb1", "backend": "demo", "info": {"backends": {"demo": {"servers": servers}}},
            "lock": {"lock": None}}


def test_two_instances_on_current_are_consistent_and_each_is_a_line():
    status = fleet_status([{"spec": TWO, "read": read_two()}], [lb_two()])
    assert status["consistent"], status["flags"]
    row = status["apps"][0]
    assert [(i["port"], i["state"], i["release"], i["server"], i["clone"]["port"]) for i in row["instances"]] == [
        (8080, "active", "v2", "app1-8080", 8081), (8082, "active", "v2", "app1-8082", 8083)]
    # The first instance is still the row's instance, for readers from before.
    assert (row["instance"]["port"], row["clone"]["port"], row["server"]) == (8080, 8081, "app1-8080")
    text = lines(status)
    assert text[:3] == [
        "HOST  APP   INSTANCE     RUNS  CURRENT  PREVIOUS  CLONE  KEPT   BAD  JOURNAL",
        "app1  demo  8080 active  v2    v2       v1        -      v2,v1  -    deployed 1970-01-01 00:00:00 UTC",
        "app1  demo  8082 active  v2    v2                 -"], text
    assert "lb1      demo     -     app1-8080 UP, app1-8080-clone MAINT, app1-8082 UP, app1-8082-clone MAINT" in text


def test_the_second_instance_on_another_release_is_flagged_by_its_port():
    status = fleet_status([{"spec": TWO, "read": read_two(second_runs="v1")}], [lb_two()])
    assert whats(status) == ["demo@8082.service runs release v1 but current is v2"]
    assert "ln -sfn releases/v1 /srv/demo/current" in status["flags"][0]["fix"]
    assert "app1  demo  8082 active  v1    v2                 -" in lines(status)


def test_a_clone_of_the_second_instance_left_running_names_the_instance():
    status = fleet_status([{"spec": TWO, "read": read_two(second_clone="active")}], [lb_two(second_clone="ready")])
    assert [(f["host"], f["what"], f["fix"]) for f in status["flags"]] == [
        ("app1", "clone demo@8083.service of demo@8082 is active (release v2) with no deploy under way",
         "when HAProxy sends it nothing (server app1-8082-clone in MAINT), systemctl stop demo@8083.service"),
        ("lb1", "clone server demo/app1-8082-clone of demo@8082 is in service (UP) with nobody deploying",
         "ansible lb1 -m hitless.deploy.haproxy_server -a 'backend=demo server=app1-8082-clone state=maint'")]
    assert "app1  demo  8082 active  v2    v2                 8083 active v2" in lines(status)


def test_a_drained_server_of_the_second_instance_with_no_lock_names_the_instance():
    status = fleet_status([{"spec": TWO, "read": read_two()}], [lb_two(second="drain")])
    assert [(f["host"], f["what"], f["fix"]) for f in status["flags"]] == [
        ("lb1", "server demo/app1-8082 of demo@8082 is in DRAIN with nobody deploying",
         "ansible lb1 -m hitless.deploy.haproxy_server -a 'backend=demo server=app1-8082 state=ready'"
         " (back in service after fresh passing checks)")]


def test_an_instance_not_running_and_one_missing_from_its_backend_are_each_flagged():
    seen = read_two()
    del seen["host"]["instances"]["8082"]
    missing = lb_two()
    del missing["info"]["backends"]["demo"]["servers"]["app1-8082"]
    assert whats(fleet_status([{"spec": TWO, "read": seen}], [missing])) == [
        "demo@8082.service is unknown", "backend demo has no server app1-8082 of demo@8082 (app host app1)"]


def test_an_unread_host_s_instances_are_still_looked_for_in_the_backend():
    status = fleet_status([{"spec": TWO, "read": {"unreachable": True, "msg": "timed out"}}], [lb()])
    assert whats(status) == ["demo was not read: unreachable: timed out",
                             "backend demo has no server app1-8080 of demo@8080 (app host app1)",
                             "backend demo has no server app1-8082 of demo@8082 (app host app1)"]


def test_a_spec_without_instances_is_one_instance_from_its_own_keys():
    row = fleet_status([{"spec": SPEC, "read": read()}], [lb()])["apps"][0]
    assert [(i["port"], i["clone_port"], i["server"], i["clone_server"]) for i in row["instances"]] == [
        (8080, 8081, "app1", "app1-clone")]
    assert row["instances"][0]["clone"]["unit"] == "demo@8081.service"


def test_an_open_journal_s_instances_are_shown_not_this_run_s():
    """An interrupted deploy of two instances read by a status run that declares one (its
    variables changed since): the row shows both, as the repair will act on both."""
    journal = {"deploy_id": "d2", "step": "upgrade", "started": 0, "updated": 0, "port": 8080, "clone_port": 8081,
               "instances": TWO["instances"]}
    lock = {"deploy_id": "d2", "holder": {"user": "ops"}, "hosts": ["app1"], "since": 0}
    status = fleet_status([{"spec": SPEC, "read": dict(read_two(second_runs="v1", second_clone="active"),
                                                       journal=journal)}],
                          [dict(lb_two(second="drain", second_clone="ready"), lock={"lock": lock})])
    row = status["apps"][0]
    assert [(i["port"], i["release"], i["server"], i["clone"]["state"]) for i in row["instances"]] == [
        (8080, "v2", "app1-8080", "inactive"), (8082, "v1", "app1-8082", "active")]
    assert row["server"] == "app1-8080" and status["consistent"], status["flags"]


def test_a_journal_from_before_instances_names_its_port_with_this_run_s_servers():
    journal = {"deploy_id": "d2", "step": "upgrade", "started": 0, "updated": 0, "port": 8082, "clone_port": 8083}
    row = fleet_status([{"spec": SPEC, "read": dict(read_two(), journal=journal)}], [lb()])["apps"][0]
    assert [(i["port"], i["clone_port"], i["server"], i["clone_server"]) for i in row["instances"]] == [
        (8082, 8083, "app1", "app1-clone")]


def test_a_closed_or_unreadable_journal_leaves_the_declared_instances():
    for journal in (None, {"deploy_id": "d2", "step": "upgrade"}, {"instances": [{"port": "x"}]}):
        row = fleet_status([{"spec": TWO, "read": dict(read_two(), journal=journal)}], [lb_two()])["apps"][0]
        assert [i["port"] for i in row["instances"]] == [8080, 8082], journal
