from ansible_collections.hitless.deploy.plugins.module_utils._fleet_status import fleet_status, lines

SPEC = {"host": "app1", "app": "demo", "backend": "demo", "server": "app1",
        "clone_server": "app1-clone", "port": 8080, "clone_port": 8081}


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


def test_an_instance_on_another_release_than_current_is_flagged_with_a_deploy_of_current():
    status = fleet_status([{"spec": SPEC, "read": read(runs="v1")}], [lb()])
    assert whats(status) == ["demo@8080.service runs release v1 but current is v2"]
    assert "hitless_release_name=v2 --limit app1" in status["flags"][0]["fix"]


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
