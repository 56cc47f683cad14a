"""haproxy_server and haproxy_info against a real HAProxy 2.6, run through the ansible CLI."""
import json
import threading
import time
import urllib.request

from _ansible import run_module


def server_args(haproxy, **kwargs):
    args = {"socket": haproxy.sock, "backend": "web", "server": "app2", "wait_timeout": 15}
    args.update(kwargs)
    return args


def converge(haproxy, args, backend, name, check_after=None):
    """check (changed, nothing touched) -> apply (changed) -> check -> apply (both unchanged)."""
    before = haproxy.snapshot(backend, name)
    checked = run_module("haproxy_server", args, check=True, diff=True)
    assert not checked.failed, checked
    assert checked.changed, checked
    assert haproxy.snapshot(backend, name) == before, "check mode changed HAProxy"
    assert checked["commands"], checked
    applied = run_module("haproxy_server", args, diff=True)
    assert not applied.failed, applied
    assert applied.changed and applied["commands"], applied
    assert applied["diff"]["before"] == checked["diff"]["before"]
    assert applied["diff"]["after"]["state"] == checked["diff"]["after"]["state"]
    if check_after:
        check_after(applied)
    for check in (True, False):
        again = run_module("haproxy_server", args, check=check, diff=True)
        assert not again.failed, again
        assert not again.changed, again
        assert again["commands"] == [], again
    return applied


def test_drain_maint_ready_cycles(haproxy):
    def drained(result):
        row = haproxy.server("web", "app2")
        assert row["status"] == "DRAIN" and row["srv_admin_state"] == "8"
        assert result["after"]["admin_state"] == "drain"
        assert result["diff"]["before"]["state"] == "ready"
    converge(haproxy, server_args(haproxy, state="drain"), "web", "app2", drained)

    def in_maint(result):
        assert haproxy.server("web", "app2")["status"] == "MAINT"
    converge(haproxy, server_args(haproxy, state="maint"), "web", "app2", in_maint)

    # ready from MAINT: a poller must never see UP with a stale check (UP 1/2).
    args = server_args(haproxy, state="ready")
    checked = run_module("haproxy_server", args, check=True, diff=True)
    assert checked.changed and haproxy.server("web", "app2")["status"] == "MAINT"
    offset = haproxy.log_offset()
    with haproxy.poller("web", "app2") as poll:
        applied = run_module("haproxy_server", args, diff=True)
    assert not applied.failed and applied.changed, applied
    assert applied["commands"] == [
        "set server web/app2 state drain", "set server web/app2 health down",
        "set server web/app2 state ready"]
    # Sampled every 20 ms: never UP with a stale check (UP 1/2) nor a failing one.
    ups = [s for s in poll.samples if s[1].startswith("UP")]
    top = str(haproxy.RISE + haproxy.FALL - 1)
    # ("* L7OK": a check is running; the last result is still L7OK.)
    assert all(s[1] == "UP" and s[2].lstrip("* ") == "L7OK" and s[3] == top
               for s in ups), poll.transitions()
    # HAProxy's log, in order: out of MAINT into DRAIN, health reset, a passing check brought
    # it UP (still in drain), and only then it left drain.
    log = haproxy.log_since(offset, "web/app2")
    expected = ["is UP/DRAIN (leaving forced maintenance)", "is DOWN, changed from CLI",
                "is UP, reason: Layer7 check passed", "is UP (leaving forced drain)"]
    positions = [next((i for i, x in enumerate(log) if e in x), None) for e in expected]
    assert None not in positions and positions == sorted(positions), log
    row = haproxy.server("web", "app2")
    assert row["status"] == "UP" and row["check_status"] == "L7OK"
    assert applied["after"]["ready"] is True
    # rise 2 at inter 500 ms: about 1 s of checks, bounded well below the timeout.
    assert 0.4 <= applied["elapsed"] < 10, applied["elapsed"]
    print("ready flow (inter %d ms, rise %d): %.2f s"
          % (haproxy.INTER_MS, haproxy.RISE, applied["elapsed"]))
    for check in (True, False):
        again = run_module("haproxy_server", args, check=check)
        assert not again.failed and not again.changed and again["commands"] == [], again


def test_trap_exists_on_this_haproxy(haproxy):
    """The raw recipe puts a dead server UP with its old L7OK: what the module must avoid."""
    assert haproxy.cmd("set server web/app2 state maint") == ""
    haproxy.apps["app2"].stop()
    offset = haproxy.log_offset()
    assert haproxy.cmd("set server web/app2 state ready") == ""
    haproxy.wait_until(lambda: haproxy.server("web", "app2")["status"] == "DOWN", 5, "app2 DOWN")
    log = haproxy.log_since(offset, "web/app2")
    assert "is UP/READY (leaving forced maintenance)" in log[0], log
    assert "is DOWN, reason: Layer4 connection problem" in log[1], log


def test_ready_wait_with_dead_app_fails_and_stays_out_of_traffic(haproxy):
    assert haproxy.cmd("set server web/app2 state maint") == ""
    haproxy.apps["app2"].stop()
    args = server_args(haproxy, state="ready", wait_timeout=4)
    offset = haproxy.log_offset()
    with haproxy.poller("web", "app2") as poll:
        result = run_module("haproxy_server", args)
    assert result.failed, result
    assert "web/app2" in result["msg"] and "L4CON" in result["msg"], result["msg"]
    assert "did not pass 2 fresh health checks" in result["msg"]
    assert result["changed"] is True
    assert not any(s[1].startswith("UP") for s in poll.samples), poll.transitions()
    # HAProxy itself never put it UP outside drain.
    log = haproxy.log_since(offset, "web/app2")
    assert not [x for x in log if " is UP" in x and "UP/DRAIN" not in x], log
    assert any("is DOWN, changed from CLI" in x for x in log), log
    row = haproxy.server("web", "app2")
    assert not row["status"].startswith("UP") and row["srv_admin_state"] == "8", row
    assert "set server web/app2 state ready" not in result["commands"]
    # Traffic only ever reaches app1.
    for _request in range(6):
        assert json.loads(haproxy.http_get(haproxy.web_url + "/")[1])["version"] == "app1"


def test_present_ready_absent_dynamic_server(haproxy):
    app3 = haproxy.apps["app3"]
    args = server_args(haproxy, server="clone", address="127.0.0.1", port=app3.port,
                       check_inter=haproxy.INTER_MS, check_rise=haproxy.RISE,
                       check_fall=haproxy.FALL)

    def added(result):
        row = haproxy.server("web", "clone")
        assert row["status"] == "MAINT" and row["srv_port"] == str(app3.port)
        assert result["before"] is None and result["diff"]["before"] == {"state": "absent"}
        assert result["commands"][0] == ("add server web/clone 127.0.0.1:%d check inter %d "
                                         "rise %d fall %d" % (app3.port, haproxy.INTER_MS,
                                                              haproxy.RISE, haproxy.FALL))
        assert result["commands"][1] == "enable health web/clone"
    converge(haproxy, dict(args, state="present"), "web", "clone", added)

    def ready(result):
        row = haproxy.server("web", "clone")
        assert row["status"] == "UP" and row["check_status"] == "L7OK"
        seen = set(json.loads(haproxy.http_get(haproxy.web_url + "/")[1])["version"]
                   for _request in range(9))
        assert "app3" in seen, seen
    converge(haproxy, dict(args, state="ready"), "web", "clone", ready)

    def removed(result):
        assert haproxy.server("web", "clone") is None
        assert result["commands"][-1] == "del server web/clone"
        assert result["after"] is None and result["dynamic"] is True
    converge(haproxy, dict(args, state="absent"), "web", "clone", removed)


def test_del_server_deletes_configured_servers_on_this_haproxy(haproxy):
    """Why absent must tell configured servers from dynamic ones itself: HAProxy 2.6.12 deletes
    a configured server too (it comes back at the next reload, in its configured state), and
    refuses only one that other configuration elements point to."""
    assert haproxy.cmd("set server web/app2 state maint") == ""
    assert haproxy.cmd("del server web/app2") == "Server deleted."
    assert haproxy.server("web", "app2") is None


def test_dynamic_probe_answers_on_this_haproxy(haproxy):
    """`set server B/S ssl` (no argument) names dynamic servers and changes nothing."""
    assert haproxy.cmd("add server web/dyn 127.0.0.1:%d" % haproxy.dead_port) == (
        "New server registered.")
    before = haproxy.servers()
    assert haproxy.cmd("set server web/dyn ssl") == (
        "'set server <srv> ssl' not supported on dynamic servers")
    for name in ("app1", "app2"):
        assert haproxy.cmd("set server web/%s ssl" % name).startswith("'set server <srv> ssl' ")
    assert haproxy.cmd("set server slotted/app1-clone ssl").startswith(
        "'set server <srv> ssl' cannot be set")
    after = haproxy.servers()
    for key in before:
        for field in ("srv_admin_state", "srv_addr", "srv_port", "srv_use_ssl", "status"):
            assert after[key][field] == before[key][field], (key, field)


def test_absent_leaves_a_configured_server_in_maint(haproxy):
    """Deleted, a drained original would come back UP at the next reload: it stays, in MAINT."""
    def kept(result):
        row = haproxy.server("web", "app2")
        assert row is not None and row["status"] == "MAINT" and row["scur"] == "0"
        assert result["dynamic"] is False and result["after"]["admin_state"] == "maint"
        assert result["commands"] == ["set server web/app2 state maint"]
        assert result["diff"]["after"]["state"] == "maint"
    converge(haproxy, server_args(haproxy, state="absent"), "web", "app2", kept)


def test_clone_slot_declared_in_the_configuration(haproxy):
    """The role's clone slot (app1-clone ... disabled) through the deploy's calls."""
    app3 = haproxy.apps["app3"]
    args = {"socket": haproxy.sock, "backend": "slotted", "server": "app1-clone",
            "address": "127.0.0.1", "port": app3.port, "wait_timeout": 15}
    assert haproxy.server("slotted", "app1-clone")["status"] == "MAINT"
    # present at the slot's own address and port: nothing to do.
    for check in (True, False):
        present = run_module("haproxy_server", dict(args, state="present"), check=check)
        assert not present.failed and not present.changed, present
        assert present["commands"] == [] and present["dynamic"] is False, present
        assert present["slot"] is None and present["server"] == "app1-clone"

    def ready(result):
        row = haproxy.server("slotted", "app1-clone")
        assert row["status"] == "UP" and row["check_status"] == "L7OK"
        seen = set(json.loads(haproxy.http_get(haproxy.slotted_url + "/")[1])["version"]
                   for _request in range(8))
        assert seen == {"app1", "app3"}, seen
    converge(haproxy, dict(args, state="ready"), "slotted", "app1-clone", ready)

    def drained(result):
        assert haproxy.server("slotted", "app1-clone")["status"] == "DRAIN"
        seen = set(json.loads(haproxy.http_get(haproxy.slotted_url + "/")[1])["version"]
                   for _request in range(6))
        assert seen == {"app1"}, seen
    converge(haproxy, dict(args, state="drain"), "slotted", "app1-clone", drained)

    def freed(result):
        row = haproxy.server("slotted", "app1-clone")
        assert row is not None and row["status"] == "MAINT" and row["scur"] == "0"
        assert not any(c.startswith("del server") for c in result["commands"]), result
        assert result["dynamic"] is False and result["after"]["admin_state"] == "maint"
    converge(haproxy, dict(args, state="absent"), "slotted", "app1-clone", freed)
    # Free again for the next deploy, and never deleted.
    again = run_module("haproxy_server", dict(args, state="ready"))
    assert not again.failed and again["after"]["ready"] is True, again
    assert haproxy.server("slotted", "app1-clone")["status"] == "UP"


def slow_request(get, url, box):
    try:
        box["status"] = get(url, timeout=20)[0]
    except Exception as e:  # recorded for the assertion
        box["error"] = repr(e)


def test_drain_waits_for_an_in_flight_request(haproxy):
    assert haproxy.cmd("set server web/app1 state drain") == ""
    box = {}
    # 8 s: longer than an ansible start-up on a loaded machine, so it is still in flight.
    url = haproxy.web_url + "/slow?ms=8000"
    thread = threading.Thread(target=slow_request, args=(haproxy.http_get, url, box))
    thread.start()
    try:
        haproxy.wait_until(lambda: haproxy.server("web", "app2")["scur"] == "1", 5,
                           "a session on app2")
        result = run_module("haproxy_server", server_args(haproxy, state="drain"))
    finally:
        thread.join(20)
    assert not result.failed and result.changed, result
    assert result["before"]["scur"] == 1 and result["after"]["scur"] == 0, result
    assert 0.5 <= result["elapsed"] < 15, result["elapsed"]
    assert box == {"status": 200}


def test_drain_timeout_then_shutdown_sessions(haproxy):
    assert haproxy.cmd("set server web/app1 state drain") == ""
    resp = urllib.request.urlopen(haproxy.web_url + "/events?interval_ms=100", timeout=20)
    try:
        assert resp.readline().startswith(b"retry:")
        haproxy.wait_until(lambda: haproxy.server("web", "app2")["scur"] == "1", 5,
                           "the SSE session")
        failed = run_module("haproxy_server", server_args(haproxy, state="drain", wait_timeout=1))
        assert failed.failed and "still has sessions" in failed["msg"], failed
        assert "web/app2" in failed["msg"] and "shutdown_sessions" in failed["msg"]
        assert haproxy.server("web", "app2")["scur"] == "1"
        result = run_module("haproxy_server", server_args(
            haproxy, state="drain", wait_timeout=1, shutdown_sessions=True))
        assert not result.failed and result.changed, result
        assert result["commands"] == ["shutdown sessions server web/app2"]
        assert result["after"]["scur"] == 0
        deadline = time.monotonic() + 5
        ended = False
        while time.monotonic() < deadline:
            if resp.readline() == b"":  # HAProxy closed the stream
                ended = True
                break
        assert ended
    finally:
        resp.close()


def test_slots_on_a_backend_without_dynamic_servers(haproxy):
    app3 = haproxy.apps["app3"]
    args = {"socket": haproxy.sock, "backend": "sticky", "server": "clone",
            "address": "127.0.0.1", "port": app3.port, "slots": ["slot1", "slot2"],
            "wait_timeout": 15}
    # HAProxy refuses a dynamic server here; that is why slots exist.
    assert haproxy.cmd("add server sticky/x 127.0.0.1:1").startswith(
        "Backend must use a dynamic load balancing")

    def taken(result):
        assert result["server"] == "slot1" and result["slot"] == "slot1"
        assert result["commands"] == ["set server sticky/slot1 addr 127.0.0.1 port %d" % app3.port]
        row = haproxy.server("sticky", "slot1")
        assert row["srv_port"] == str(app3.port) and row["status"] == "MAINT"
    converge(haproxy, dict(args, state="present"), "sticky", "slot1", taken)

    def ready(result):
        row = haproxy.server("sticky", "slot1")
        assert row["status"] == "UP" and row["check_status"] == "L7OK"
        assert result["server"] == "slot1"
    converge(haproxy, dict(args, state="ready"), "sticky", "slot1", ready)

    def freed(result):
        row = haproxy.server("sticky", "slot1")
        assert row is not None and row["status"] == "MAINT"
        assert not any(c.startswith("del server") for c in result["commands"])
    converge(haproxy, dict(args, state="absent"), "sticky", "slot1", freed)
    # A clone at another endpoint takes the first free slot: the one just freed.
    other = run_module("haproxy_server", dict(args, state="present",
                                              port=haproxy.apps["app1"].port))
    assert not other.failed and other["server"] == "slot1", other


def test_errors_name_the_parameter_and_change_nothing(haproxy, tmp_path):
    before = haproxy.servers()
    regular = tmp_path / "not-a-socket"
    regular.write_text("x")
    cases = [
        (server_args(haproxy, backend="nope"), "backend: "),
        (server_args(haproxy, server="nope", state="drain"), "server: "),
        (server_args(haproxy, socket=str(tmp_path / "missing.sock")), "socket: "),
        (server_args(haproxy, socket=str(regular)), "socket: "),
        (server_args(haproxy, socket="127.0.0.1:%d" % haproxy.dead_port), "socket: "),
        (server_args(haproxy, state="present", server="c", address="127.0.0.1", port=70000),
         "port: "),
        (server_args(haproxy, state="present", server="c", address="localhost", port=80),
         "address: "),
        (server_args(haproxy, state="ready", address="127.0.0.1", port=1),
         "server web/app2 takes traffic"),
    ]
    for args, prefix in cases:
        result = run_module("haproxy_server", args)
        assert result.failed, (args, result)
        assert result["msg"].startswith(prefix) or prefix in result["msg"], (args, result["msg"])
        assert not result.get("changed"), result
    after = haproxy.servers()
    assert set(after) == set(before)
    for key in before:
        assert after[key]["srv_admin_state"] == before[key]["srv_admin_state"]
        assert after[key]["srv_port"] == before[key]["srv_port"]


def test_ready_adds_a_missing_server_in_one_call(haproxy):
    app3 = haproxy.apps["app3"]
    args = server_args(haproxy, server="clone", address="127.0.0.1", port=app3.port,
                       check_inter=haproxy.INTER_MS, check_rise=haproxy.RISE,
                       check_fall=haproxy.FALL, state="ready")

    def ready(result):
        row = haproxy.server("web", "clone")
        assert row["status"] == "UP" and row["check_status"] == "L7OK", row
        assert result["commands"][0].startswith("add server web/clone 127.0.0.1:%d check"
                                                % app3.port), result["commands"]
        assert "set server web/clone health down" in result["commands"], result["commands"]
        assert result["elapsed"] >= (haproxy.RISE - 1) * haproxy.INTER_MS / 1000.0, result
    converge(haproxy, args, "web", "clone", ready)


def test_ready_without_wait_arms_and_a_second_call_waits(haproxy):
    app3 = haproxy.apps["app3"]
    args = server_args(haproxy, server="clone", address="127.0.0.1", port=app3.port,
                       check_inter=haproxy.INTER_MS, check_rise=haproxy.RISE,
                       check_fall=haproxy.FALL, state="ready")
    armed = run_module("haproxy_server", dict(args, wait=False))
    assert not armed.failed and armed.changed, armed
    row = haproxy.server("web", "clone")
    # Set ready, but out of traffic until `rise` fresh checks pass.
    assert row["status"].startswith("DOWN"), row
    seen = set(json.loads(haproxy.http_get(haproxy.web_url + "/")[1])["version"]
               for _request in range(6))
    assert "app3" not in seen, seen
    waited = run_module("haproxy_server", args)
    assert not waited.failed and not waited.changed, waited
    assert waited["commands"] == [], waited
    assert haproxy.server("web", "clone")["status"] == "UP"


def test_deploy_lock_reads_the_backend_in_the_same_call(haproxy, tmp_path):
    args = {"backend": "web", "host": "app1", "hosts": ["app1"], "deploy_id": "d1",
            "lock_dir": str(tmp_path / "locks"), "haproxy_socket": haproxy.sock}
    held = run_module("deploy_lock", args)
    assert not held.failed, held
    assert held["lock"]["deploy_id"] == "d1", held
    servers = held["backends"]["web"]["servers"]
    assert servers["app1"]["ready"] is True and servers["app1"]["port"] == haproxy.apps["app1"].port
    missing = run_module("deploy_lock", dict(args, haproxy_socket=str(tmp_path / "nope.sock")))
    assert missing.failed and missing["msg"].startswith("haproxy_socket: "), missing
    released = run_module("deploy_lock", dict(args, state="released"))
    assert not released.failed and "backends" not in released, released


def test_tcp_runtime_socket(haproxy):
    result = run_module("haproxy_server", server_args(haproxy, socket=haproxy.tcp_socket,
                                                      state="drain", wait=False))
    assert not result.failed and result.changed, result
    assert haproxy.server("web", "app2")["status"] == "DRAIN"


def test_haproxy_info(haproxy):
    assert haproxy.cmd("set server web/app2 state drain") == ""
    assert haproxy.cmd("add server web/dyn 127.0.0.1:%d" % haproxy.dead_port) == (
        "New server registered.")
    for check in (True, False):
        result = run_module("haproxy_info", {"socket": haproxy.sock}, check=check)
        assert not result.failed and not result.changed, result
        backends = result["backends"]
        assert {"web", "sticky"} <= set(backends) and "fe_web" not in backends
        web = backends["web"]
        assert web["algo"] == "roundrobin" and set(web["servers"]) == {"app1", "app2", "dyn"}
        app1, app2 = web["servers"]["app1"], web["servers"]["app2"]
        assert app1["ready"] is True and app1["status"] == "UP"
        assert app1["port"] == haproxy.apps["app1"].port and app1["address"] == "127.0.0.1"
        # A check may run at the moment of reading, when HAProxy has no code to show.
        expected_code = None if app1["check_in_progress"] else 200
        assert app1["check_status"] == "L7OK" and app1["check_code"] == expected_code
        assert (app1["check_rise"], app1["check_fall"], app1["check_health"]) == (
            haproxy.RISE, haproxy.FALL, haproxy.RISE + haproxy.FALL - 1)
        assert app2["admin_state"] == "drain" and app2["ready"] is False
        slot = backends["sticky"]["servers"]["slot1"]
        assert slot["admin_state"] == "maint" and slot["ready"] is False
        assert slot["dynamic"] is False and app1["dynamic"] is False
        assert backends["slotted"]["servers"]["app1-clone"]["dynamic"] is False
        assert backends["web"]["servers"]["dyn"]["dynamic"] is True
        assert result["version"].startswith("2.")
    one = run_module("haproxy_info", {"socket": haproxy.tcp_socket, "backend": "sticky"})
    assert not one.failed and list(one["backends"]) == ["sticky"], one
    missing = run_module("haproxy_info", {"socket": haproxy.sock, "backend": "fe_web"})
    assert missing.failed and missing["msg"].startswith("backend: "), missing


def test_a_batch_of_servers_in_one_call(haproxy):
    """Two clones added and ready, then both out again, each in one call: check mode first,
    then apply, then again (unchanged); the waits of the batch overlap."""
    app3 = haproxy.apps["app3"]
    clones = [{"server": "c1", "address": "127.0.0.1", "port": app3.port},
              {"server": "c2", "address": "127.0.0.1", "port": app3.port}]
    args = {"socket": haproxy.sock, "backend": "web", "servers": clones, "wait_timeout": 15,
            "check_inter": haproxy.INTER_MS, "check_rise": haproxy.RISE,
            "check_fall": haproxy.FALL}
    checked = run_module("haproxy_server", dict(args, state="ready"), check=True, diff=True)
    assert not checked.failed and checked.changed, checked
    assert haproxy.server("web", "c1") is None and haproxy.server("web", "c2") is None
    applied = run_module("haproxy_server", dict(args, state="ready"), diff=True)
    assert not applied.failed and applied.changed, applied
    assert [r["server"] for r in applied["results"]] == ["c1", "c2"]
    assert all(haproxy.server("web", c)["status"] == "UP" for c in ("c1", "c2"))
    assert applied["diff"]["before"] == {"c1": {"state": "absent"}, "c2": {"state": "absent"}}
    assert applied["diff"]["after"]["c1"]["state"] == applied["diff"]["after"]["c2"]["state"] == "ready"
    # Both armed before any wait: one rise of checks for the batch, not one each.
    assert applied["elapsed"] < 2 * haproxy.RISE * haproxy.INTER_MS / 1000.0 + 1.5, applied["elapsed"]
    for check in (True, False):
        again = run_module("haproxy_server", dict(args, state="ready"), check=check)
        assert not again.failed and not again.changed and again["commands"] == [], again
    gone = run_module("haproxy_server", dict(args, state="absent", shutdown_sessions=True))
    assert not gone.failed and gone.changed, gone
    assert haproxy.server("web", "c1") is None and haproxy.server("web", "c2") is None
    assert [r["commands"] for r in gone["results"]] == [
        ["set server web/%s state maint" % c, "del server web/%s" % c] for c in ("c1", "c2")]


def test_a_batch_names_each_server_that_failed(haproxy):
    args = {"socket": haproxy.sock, "backend": "web", "state": "drain", "wait_timeout": 5,
            "servers": [{"server": "app2"}, {"server": "nope"}]}
    result = run_module("haproxy_server", args)
    assert result.failed and result["msg"] == "nope: server web/nope does not exist", result
    # The other server of the call was still drained.
    assert haproxy.server("web", "app2")["status"].startswith("DRAIN")
    assert run_module("haproxy_server", dict(args, state="ready", servers=[{"server": "app2"}]),
                      ).changed
    bad = run_module("haproxy_server", dict(args, server="app2"))
    assert bad.failed and "servers" in bad["msg"] and "server" in bad["msg"], bad
