"""Unit tests of haproxy_server's logic: validation, plans, and runs against a simulated HAProxy.

The simulation models only what the module relies on (verified on the real HAProxy 2.6 by the
integration tests): leaving MAINT sets the health counter to `rise` with the old check result,
`health down` zeroes it (ignored in MAINT), each check moves it by one, `rise` passes bring a
server UP and then the counter jumps to its top. `set server B/S ssl` (no argument) answers
as 2.6.12 does for a dynamic server and for one from the configuration.
"""
import pytest

from ansible_collections.hitless.deploy.plugins.module_utils import _haproxy_runtime as rt
from ansible_collections.hitless.deploy.plugins.module_utils import _haproxy_server as hs

DEFAULTS = dict(backend="be", server="s1", state="ready", address=None, port=None, weight=None,
                check_inter=500, check_rise=2, check_fall=2, wait=True, wait_timeout=10.0,
                shutdown_sessions=False, slots=[])


def req(**kwargs):
    params = dict(DEFAULTS)
    params.update(kwargs)
    return hs.build_request(params)


class Srv(object):
    def __init__(self, name, admin="ready", alive=True, check="enabled", health=3, scur=0,
                 address="127.0.0.1", port=8080, weight=1, rise=2, fall=2, dynamic=False):
        self.name, self.admin, self.alive, self.check = name, admin, alive, check
        self.dynamic = dynamic
        self.health, self.scur, self.qcur = health, scur, 0
        self.address, self.port, self.weight = address, port, weight
        self.rise, self.fall = rise, fall
        self.last = "L7OK" if check != "none" else ""
        self.fresh = 0  # passing checks since the last reset of the counter

    @property
    def top(self):
        return self.rise + self.fall - 1

    def status(self):
        if self.admin == "maint":
            return "MAINT"
        if self.check == "none" or self.check == "configured":
            return "DRAIN" if self.admin == "drain" else "no check"
        if self.health >= self.rise:
            word = "DRAIN" if self.admin == "drain" else "UP"
            if self.health == self.top:
                return word
            return "%s %d/%d" % (word, self.health - self.rise + 1, self.fall)
        return "DOWN %d/%d" % (self.health, self.rise) if self.health else "DOWN"

    def run_check(self):
        if self.admin == "maint" or self.check != "enabled":
            return
        if self.alive:
            self.last = "L7OK"
            self.fresh += 1
            self.health = self.top if self.health + 1 >= self.rise else self.health + 1
        else:
            self.last = "L4CON"
            self.fresh = 0
            self.health = self.health - 1 if self.health > self.rise else 0

    def rows(self, backend):
        flags = {"none": 0, "configured": 2, "enabled": 6}[self.check]
        stat = {"pxname": backend, "svname": self.name, "status": self.status(), "scur": self.scur,
                "qcur": self.qcur, "stot": 0, "check_status": self.last or None,
                "check_code": 200 if self.last == "L7OK" else None,
                "check_health": self.health if self.check != "none" else None,
                "check_rise": self.rise if self.check != "none" else None,
                "check_fall": self.fall if self.check != "none" else None,
                "check_desc": "Layer4 connection problem" if self.last == "L4CON" else None}
        admin = {"ready": 0, "drain": 0x08, "maint": 0x01}[self.admin]
        state = {"be_name": backend, "srv_name": self.name, "srv_addr": self.address,
                 "srv_port": self.port, "srv_op_state": 2 if self.health >= self.rise else 0,
                 "srv_admin_state": admin, "srv_uweight": self.weight, "srv_check_state": flags}
        return stat, state


class FakeHAProxy(rt.RuntimeClient):
    """Answers runtime commands like HAProxy 2.6 and runs checks as fake time passes."""

    def __init__(self, servers, backend="be", algo="roundrobin", inter=0.5, refuse_add=False,
                 probe_answer=None):
        self.spec = "/fake"
        self.servers = dict((s.name, s) for s in servers)
        self.backend_name, self.algo, self.inter = backend, algo, inter
        self.refuse_add = refuse_add
        self.probe_answer = probe_answer  # overrides the answer to the dynamic probe
        self.probes = []
        self.now = 0.0
        self.next_check = inter
        self.sent = []          # every write command received
        self.events = []        # (time, what)
        self.sessions_end_at = None
        self.del_refusals = 0

    # time
    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        while self.now >= self.next_check:
            for srv in self.servers.values():
                srv.run_check()
            self.next_check += self.inter
        if self.sessions_end_at is not None and self.now >= self.sessions_end_at:
            for srv in self.servers.values():
                srv.scur = 0

    # runtime API
    def backends(self, backend=None, probe_dynamic=False):
        if backend not in (None, self.backend_name):
            raise rt.NotFoundError("backend", backend)
        stats, states = [], []
        for srv in self.servers.values():
            stat, state = srv.rows(self.backend_name)
            stats.append(stat)
            states.append(state)
        stats.append({"pxname": self.backend_name, "svname": "BACKEND", "algo": self.algo})
        result = rt.merge_backends(stats, states)
        if probe_dynamic:
            for view in result[self.backend_name]["servers"].values():
                view["dynamic"] = self.is_dynamic(self.backend_name, view["name"])
        return result

    def command(self, command):
        words = command.split()
        if words[0] == "show":
            raise AssertionError("reads go through backends()")
        if words[:2] == ["set", "server"] and words[3:] == ["ssl"]:
            # The dynamic probe: a read, not recorded with the writes.
            self.probes.append(command)
            srv = self.servers.get(words[2].split("/")[1])
            if self.probe_answer is not None:
                return self.probe_answer
            if srv is None:
                return "No such server."
            if srv.dynamic:
                return "'set server <srv> ssl' not supported on dynamic servers"
            return ("'set server <srv> ssl' cannot be set.  default-server should define ssl "
                    "settings")
        self.sent.append(command)
        if words[:2] == ["add", "server"]:
            name = words[2].split("/")[1]
            if self.refuse_add:
                return "Backend must use a dynamic load balancing to support dynamic servers."
            if name in self.servers:
                return "Already exists a server with the same name in backend."
            host, port = words[3].rsplit(":", 1)
            self.servers[name] = Srv(name, admin="maint", check="configured", health=0,
                                     address=host.strip("[]"), port=int(port), dynamic=True)
            self.servers[name].last = ""
            return "New server registered."
        if words[:2] == ["del", "server"]:
            srv = self.servers[words[2].split("/")[1]]
            if srv.admin != "maint":
                return "Only servers in maintenance mode can be deleted."
            if srv.scur or self.del_refusals:
                self.del_refusals = max(0, self.del_refusals - 1)
                return "Server still has connections attached to it, cannot remove it."
            del self.servers[srv.name]
            return "Server deleted."
        if words[:2] == ["enable", "health"]:
            self.servers[words[2].split("/")[1]].check = "enabled"
            return ""
        if words[:3] == ["shutdown", "sessions", "server"]:
            self.servers[words[3].split("/")[1]].scur = 0
            return ""
        srv = self.servers.get(words[2].split("/")[1])
        if srv is None:
            return "No such server."
        if words[3] == "state":
            target = words[4]
            if srv.admin == "maint" and target != "maint" and srv.check == "enabled":
                srv.health, srv.fresh = srv.rise, 0  # UP at once, with the stale result
            self.events.append((self.now, "state %s (fresh passes %d, %s)" % (
                target, srv.fresh, srv.status())))
            srv.admin = target
        elif words[3] == "health" and words[4] == "down":
            if srv.admin != "maint":
                srv.health, srv.fresh = 0, 0
        elif words[3] == "weight":
            srv.weight = int(words[4])
        elif words[3] == "addr":
            old = srv.address
            srv.address, srv.port = words[4], int(words[6])
            return "IP changed from '%s' to '%s', port changed by 'stats socket command'" % (
                old, srv.address)
        return ""


def run(fake, check_mode=False, **kwargs):
    runner = hs.Runner(fake, req(**kwargs), check_mode=check_mode, clock=fake.clock,
                       sleep=fake.sleep, poll=0.1)
    return runner.run()


def backend_of(*servers, **kwargs):
    return FakeHAProxy(list(servers), **kwargs).backends("be", probe_dynamic=True)["be"]


def commands(steps):
    return [s.command if s.kind == "cmd" else "wait " + s.what for s in steps]


# --- validation -----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,param", [
    (dict(address="10.0.0.1", port=0), "port"),
    (dict(address="10.0.0.1", port=65536), "port"),
    (dict(address="app1.example", port=80), "address"),
    (dict(address="10.0.0.1"), "port"),
    (dict(port=80), "address"),
    (dict(state="present"), "address"),
    (dict(weight=257), "weight"),
    (dict(backend="be; shutdown frontend fe"), "backend"),
    (dict(server="s1\nset"), "server"),
    (dict(server=""), "server"),
    (dict(slots=["ok", "no way"]), "slots"),
    (dict(check_inter=0), "check_inter"),
    (dict(check_rise=0), "check_rise"),
    (dict(wait_timeout=-1), "wait_timeout"),
])
def test_build_request_names_the_bad_parameter(kwargs, param):
    with pytest.raises(hs.ParamError) as err:
        req(**kwargs)
    assert err.value.param == param
    assert str(err.value).startswith(param + ": ")


def test_build_request_normalises_address():
    assert req(address="::0:1", port=80).address == "::1"


# --- plans ----------------------------------------------------------------------------------

def test_ready_from_maint_goes_through_drain_and_fresh_checks():
    be = backend_of(Srv("s1", admin="maint"))
    assert commands(hs.plan(req(), be).steps) == [
        "set server be/s1 state drain", "set server be/s1 health down", "wait risen",
        "set server be/s1 state ready", "wait up"]


def test_ready_without_wait_still_resets_health():
    be = backend_of(Srv("s1", admin="maint"))
    assert commands(hs.plan(req(wait=False), be).steps) == [
        "set server be/s1 state drain", "set server be/s1 health down",
        "set server be/s1 state ready"]


def test_ready_from_drain_forces_fresh_checks():
    be = backend_of(Srv("s1", admin="drain"))
    assert commands(hs.plan(req(), be).steps) == [
        "set server be/s1 health down", "wait risen", "set server be/s1 state ready", "wait up"]


def test_ready_when_ready_only_waits():
    be = backend_of(Srv("s1"))
    assert commands(hs.plan(req(), be).steps) == ["wait up"]
    assert hs.plan(req(wait=False), be).steps == []


def test_ready_enables_a_configured_but_disabled_check():
    be = backend_of(Srv("s1", admin="maint", check="configured"))
    assert commands(hs.plan(req(), be).steps)[:2] == ["enable health be/s1",
                                                      "set server be/s1 state drain"]


def test_ready_wait_without_check_fails_before_anything():
    be = backend_of(Srv("s1", admin="maint", check="none"))
    with pytest.raises(hs.PlanError, match="be/s1 has no health check"):
        hs.plan(req(), be)
    assert commands(hs.plan(req(wait=False), be).steps) == ["set server be/s1 state ready"]
    with pytest.raises(hs.PlanError):
        hs.plan(req(), backend_of(Srv("s1", check="none")))


def test_a_server_in_traffic_is_never_moved():
    be = backend_of(Srv("s1"))
    with pytest.raises(hs.PlanError, match="takes traffic at 127.0.0.1:8080.*10.0.0.2:81"):
        hs.plan(req(address="10.0.0.2", port=81), be)
    with pytest.raises(hs.PlanError):
        hs.plan(req(state="present", address="10.0.0.2", port=81), be)


def test_move_from_maint_then_ready():
    be = backend_of(Srv("s1", admin="maint"))
    assert commands(hs.plan(req(address="10.0.0.2", port=81, weight=3), be).steps)[:3] == [
        "set server be/s1 addr 10.0.0.2 port 81", "set server be/s1 weight 3",
        "set server be/s1 state drain"]


def test_drain_moves_after_leaving_traffic():
    be = backend_of(Srv("s1"))
    assert commands(hs.plan(req(state="drain", address="10.0.0.2", port=81), be).steps) == [
        "set server be/s1 state drain", "set server be/s1 addr 10.0.0.2 port 81", "wait idle"]


def test_drain_and_maint_plans():
    assert commands(hs.plan(req(state="drain"), backend_of(Srv("s1", admin="maint"))).steps) == [
        "set server be/s1 state drain", "set server be/s1 health down", "wait idle"]
    assert hs.plan(req(state="drain", wait=False), backend_of(Srv("s1", admin="drain"))).steps == []
    assert commands(hs.plan(req(state="maint"), backend_of(Srv("s1"))).steps) == [
        "set server be/s1 state maint", "wait idle"]


def test_absent_plans():
    dynamic = backend_of(Srv("s1", dynamic=True))
    assert commands(hs.plan(req(state="absent"), dynamic).steps) == [
        "set server be/s1 state maint", "wait idle", "del server be/s1"]
    steps = hs.plan(req(state="absent", wait=False),
                    backend_of(Srv("s1", admin="maint", dynamic=True))).steps
    assert commands(steps) == ["del server be/s1"] and steps[0].retry_on is None
    p = hs.plan(req(state="absent", server="nope"), backend_of(Srv("s1")))
    assert p.steps == [] and p.before is None


def test_absent_never_deletes_a_configured_or_unknown_server():
    """Deleted, a configured server would come back at the next reload as configured."""
    assert commands(hs.plan(req(state="absent"), backend_of(Srv("s1"))).steps) == [
        "set server be/s1 state maint", "wait idle"]
    assert hs.plan(req(state="absent", wait=False),
                   backend_of(Srv("s1", admin="maint"))).steps == []
    unknown = backend_of(Srv("s1", dynamic=True), probe_answer="server ssl setting not supported.")
    assert unknown["servers"]["s1"]["dynamic"] is None
    assert commands(hs.plan(req(state="absent"), unknown).steps) == [
        "set server be/s1 state maint", "wait idle"]


def test_present_adds_with_explicit_checks():
    p = hs.plan(req(state="present", server="c1", address="10.0.0.9", port=8081, weight=5,
                    check_inter=250, check_rise=3, check_fall=4), backend_of(Srv("s1")))
    assert commands(p.steps) == [
        "add server be/c1 10.0.0.9:8081 check inter 250 rise 3 fall 4 weight 5",
        "enable health be/c1"]
    assert hs.predict(p.before, p.steps) == {"admin_state": "maint", "address": "10.0.0.9",
                                             "port": 8081, "weight": 5, "dynamic": True}


def test_present_ipv6_is_bracketed():
    p = hs.plan(req(state="present", server="c1", address="::1", port=8081), backend_of())
    assert p.steps[0].command.startswith("add server be/c1 [::1]:8081 check")


def test_present_existing_is_idempotent():
    be = backend_of(Srv("s1", address="10.0.0.1", port=80))
    assert hs.plan(req(state="present", address="10.0.0.1", port=80), be).steps == []
    assert commands(hs.plan(req(state="present", address="10.0.0.1", port=80, weight=9),
                            be).steps) == ["set server be/s1 weight 9"]


def test_ready_adds_a_missing_server_and_arms_it_in_one_call():
    p = hs.plan(req(state="ready", server="c1", address="10.0.0.9", port=8081),
                backend_of(Srv("s1")))
    assert commands(p.steps) == [
        "add server be/c1 10.0.0.9:8081 check inter 500 rise 2 fall 2",
        "enable health be/c1",
        "set server be/c1 state drain",
        "set server be/c1 health down",
        "wait risen",
        "set server be/c1 state ready",
        "wait up"]
    assert hs.predict(p.before, p.steps)["admin_state"] == "ready"


def test_ready_without_wait_arms_a_missing_server_without_waiting():
    p = hs.plan(req(state="ready", server="c1", address="10.0.0.9", port=8081, wait=False),
                backend_of(Srv("s1")))
    assert commands(p.steps)[2:] == ["set server be/c1 state drain",
                                     "set server be/c1 health down",
                                     "set server be/c1 state ready"]


def test_ready_takes_a_free_slot_in_a_backend_that_cannot_add():
    p = hs.plan(req(state="ready", server="clone", address="10.0.0.2", port=81,
                    slots=["slot1", "slot2", "slot3"]), slot_backend())
    assert p.name == "slot3"
    assert commands(p.steps)[0] == "set server be/slot3 addr 10.0.0.2 port 81"
    assert "set server be/slot3 health down" in commands(p.steps)


def test_unknown_server_is_not_found_except_present():
    for state in ("ready", "drain", "maint"):
        with pytest.raises(rt.NotFoundError) as err:
            hs.plan(req(state=state, server="nope"), backend_of(Srv("s1")))
        assert err.value.kind == "server" and err.value.name == "be/nope"


def slot_backend(*extra):
    return backend_of(Srv("s1", address="10.0.0.1", port=80),
                      Srv("slot1", admin="ready", address="10.0.0.5", port=80),
                      Srv("slot2", admin="maint", address="127.0.0.1", port=1, scur=2),
                      Srv("slot3", admin="maint", address="127.0.0.1", port=1), *extra,
                      algo="source")


def test_present_takes_the_first_free_slot():
    p = hs.plan(req(state="present", server="clone", address="10.0.0.2", port=81,
                    slots=["slot1", "slot2", "slot3"]), slot_backend())
    assert p.name == "slot3" and p.slot == "slot3"
    assert commands(p.steps) == ["set server be/slot3 addr 10.0.0.2 port 81"]


def test_slot_holding_the_address_is_the_server_for_every_state():
    be = slot_backend(Srv("slot4", admin="maint", address="10.0.0.2", port=81))
    kw = dict(server="clone", address="10.0.0.2", port=81, slots=["slot3", "slot4"])
    assert hs.plan(req(state="present", **kw), be).steps == []
    p = hs.plan(req(state="ready", **kw), be)
    assert p.slot == "slot4" and commands(p.steps)[0] == "set server be/slot4 state drain"
    # absent leaves a slot in maint, never deletes it
    assert commands(hs.plan(req(state="absent", **kw), be).steps) == ["wait idle"]
    kw["slots"] = ["slot4"]
    p = hs.plan(req(state="absent", **kw), backend_of(
        Srv("slot4", admin="drain", address="10.0.0.2", port=81), algo="source"))
    assert commands(p.steps) == ["set server be/slot4 state maint", "wait idle"]


def test_slot_errors():
    kw = dict(state="present", server="clone", address="10.0.0.2", port=81)
    with pytest.raises(hs.ParamError) as err:
        hs.plan(req(slots=["slot1", "slot9"], **kw), slot_backend())
    assert err.value.param == "slots" and "slot9" in str(err.value)
    with pytest.raises(hs.PlanError, match="no free slot"):
        hs.plan(req(slots=["slot1", "slot2"], **kw), slot_backend())
    with pytest.raises(hs.ParamError) as err:
        hs.plan(req(state="drain", server="clone", slots=["slot3"]), slot_backend())
    assert err.value.param == "address"


def test_dynamic_backend_adds_even_with_slots():
    be = backend_of(Srv("slot3", admin="maint"), algo="roundrobin")
    p = hs.plan(req(state="present", server="clone", address="10.0.0.2", port=81,
                    slots=["slot3"]), be)
    assert p.slot is None and p.steps[0].command.startswith("add server be/clone")


# --- runs against the simulation -----------------------------------------------------------

def test_ready_wait_from_maint_never_sets_ready_before_fresh_checks():
    fake = FakeHAProxy([Srv("s1", admin="maint")])
    result = run(fake)
    assert result["changed"] and result["after"]["ready"]
    assert result["before"]["admin_state"] == "maint"
    assert result["diff"] == {"before": {"state": "maint", "address": "127.0.0.1", "port": 8080,
                                         "weight": 1},
                              "after": {"state": "ready", "address": "127.0.0.1", "port": 8080,
                                        "weight": 1}}
    ready = [e for e in fake.events if e[1].startswith("state ready")]
    assert ready == [(ready[0][0], "state ready (fresh passes 2, DRAIN)")]
    assert fake.sent == ["set server be/s1 state drain", "set server be/s1 health down",
                         "set server be/s1 state ready"]
    assert result["commands"] == fake.sent
    assert 0.5 <= result["elapsed"] <= 1.5


def test_ready_wait_with_dead_app_times_out_out_of_traffic():
    fake = FakeHAProxy([Srv("s1", admin="maint", alive=False)])
    with pytest.raises(hs.StateError) as err:
        run(fake, wait_timeout=3)
    msg = err.value.msg
    assert "be/s1 did not pass 2 fresh health checks within 3s" in msg
    assert "L4CON" in msg and "Layer4 connection problem" in msg
    after = err.value.result["after"]
    assert after["admin_state"] == "drain" and not after["status"].startswith("UP")
    assert err.value.result["changed"] is True
    assert "set server be/s1 state ready" not in fake.sent


def test_ready_stale_up_is_not_trusted():
    """Already ready but just out of MAINT (UP 1/2, old L7OK): wait until a check confirms."""
    srv = Srv("s1", health=2, alive=False)
    fake = FakeHAProxy([srv])
    with pytest.raises(hs.StateError, match="not UP with a passing check"):
        run(fake, wait_timeout=2)
    assert fake.sent == []


def test_check_mode_sends_nothing_and_predicts():
    fake = FakeHAProxy([Srv("s1")])
    result = run(fake, check_mode=True, state="drain", weight=4)
    assert fake.sent == [] and result["changed"] is True
    assert result["commands"] == ["set server be/s1 state drain", "set server be/s1 weight 4"]
    assert result["after"]["admin_state"] == "drain" and result["after"]["weight"] == 4
    assert fake.servers["s1"].admin == "ready"


def test_second_run_is_not_changed():
    fake = FakeHAProxy([Srv("s1")])
    assert run(fake, state="maint")["changed"] is True
    again = run(fake, state="maint")
    assert again["changed"] is False and again["commands"] == []


def test_drain_waits_for_sessions():
    fake = FakeHAProxy([Srv("s1", scur=3)])
    fake.sessions_end_at = 1.2
    result = run(fake, state="drain")
    assert result["after"]["scur"] == 0 and 1.2 <= result["elapsed"] < 2


def test_drain_timeout_fails_or_shuts_sessions():
    fake = FakeHAProxy([Srv("s1", scur=3)])
    with pytest.raises(hs.StateError, match="still has sessions after 1s; shutdown_sessions"):
        run(fake, state="drain", wait_timeout=1)
    result = run(fake, state="drain", wait_timeout=1, shutdown_sessions=True)
    assert result["commands"] == ["shutdown sessions server be/s1"] and result["changed"]
    assert result["after"]["scur"] == 0


def test_absent_retries_del_while_connections_linger():
    fake = FakeHAProxy([Srv("s1", dynamic=True)])
    fake.del_refusals = 2
    result = run(fake, state="absent")
    assert result["after"] is None and "s1" not in fake.servers
    assert result["diff"]["after"] == {"state": "absent"}
    assert result["commands"].count("del server be/s1") == 1
    assert fake.sent.count("del server be/s1") == 3
    assert result["dynamic"] is True
    assert run(fake, state="absent")["changed"] is False


def test_absent_leaves_a_configured_server_in_maint_without_sessions():
    fake = FakeHAProxy([Srv("s1", scur=2), Srv("s2")])
    fake.sessions_end_at = 0.8
    result = run(fake, state="absent")
    assert result["changed"] and result["dynamic"] is False
    assert result["commands"] == ["set server be/s1 state maint"]
    assert not [c for c in fake.sent if c.startswith("del server")]
    assert fake.servers["s1"].admin == "maint" and fake.servers["s1"].scur == 0
    assert result["after"]["admin_state"] == "maint" and result["after"]["dynamic"] is False
    assert result["diff"]["after"]["state"] == "maint"
    assert fake.probes == ["set server be/s1 ssl"]
    again = run(fake, state="absent")
    assert again["changed"] is False and again["commands"] == []
    checked = run(fake, check_mode=True, state="absent", server="s2")
    assert checked["commands"] == ["set server be/s2 state maint"]
    assert checked["after"]["admin_state"] == "maint" and fake.servers["s2"].admin == "ready"


def test_added_server_is_dynamic_and_absent_deletes_it():
    fake = FakeHAProxy([Srv("s1")])
    kw = dict(server="c1", address="127.0.0.2", port=9000)
    checked = run(fake, check_mode=True, state="present", **kw)
    assert checked["dynamic"] is True and checked["after"]["dynamic"] is True
    created = run(fake, state="present", **kw)
    assert created["dynamic"] is True and created["after"]["dynamic"] is True
    assert run(fake, state="present", **kw)["dynamic"] is True
    removed = run(fake, state="absent", **kw)
    assert removed["commands"][-1] == "del server be/c1" and removed["after"] is None
    assert "c1" not in fake.servers


def test_present_then_ready_on_a_new_server():
    fake = FakeHAProxy([Srv("s1")])
    kw = dict(server="c1", address="127.0.0.2", port=9000)
    created = run(fake, state="present", **kw)
    assert created["before"] is None and created["after"]["admin_state"] == "maint"
    assert created["after"]["check_enabled"] is True
    assert run(fake, state="present", **kw)["changed"] is False
    ready = run(fake, state="ready", **kw)
    assert ready["after"]["ready"] is True


def test_refused_add_falls_back_to_a_slot():
    fake = FakeHAProxy([Srv("slot1", admin="maint", port=1)], refuse_add=True)
    result = run(fake, state="present", server="c1", address="127.0.0.1", port=9000,
                 slots=["slot1"])
    assert result["server"] == "slot1" and result["slot"] == "slot1"
    assert result["commands"] == ["set server be/slot1 addr 127.0.0.1 port 9000"]


def test_refused_add_without_slots_explains():
    fake = FakeHAProxy([], refuse_add=True)
    with pytest.raises(hs.StateError, match="cannot take dynamic servers.*slots") as err:
        run(fake, state="present", server="c1", address="127.0.0.1", port=9000)
    assert err.value.result["changed"] is False


def test_unexpected_answer_fails_with_it():
    fake = FakeHAProxy([Srv("s1")])
    original = fake.command
    fake.command = lambda c: "Permission denied" if c.startswith("set") else original(c)
    with pytest.raises(hs.StateError, match="Permission denied") as err:
        run(fake, state="drain")
    assert err.value.result["changed"] is False
    assert err.value.result["commands"] == ["set server be/s1 state drain"]


def test_unknown_backend():
    with pytest.raises(rt.NotFoundError) as err:
        run(FakeHAProxy([]), backend="nope")
    assert err.value.kind == "backend"


def test_a_drain_undone_while_waiting_is_sent_again():
    # As after a reload that loaded an older server state: the server is READY again.
    fake = FakeHAProxy([Srv("s1", scur=3)])
    fake.sessions_end_at = 1.0
    plain_sleep = fake.sleep

    def sleep(seconds):
        plain_sleep(seconds)
        if 0.3 <= fake.now < 0.3 + seconds:
            fake.servers["s1"].admin = "ready"
    fake.sleep = sleep
    result = run(fake, state="drain")
    assert result["commands"].count("set server be/s1 state drain") == 2, result["commands"]
    assert fake.servers["s1"].admin == "drain"


def test_waits_look_twice_per_check_interval_and_end_at_the_deadline():
    fake = FakeHAProxy([Srv("s1", admin="maint", alive=False)], inter=0.1)
    sleeps = []
    plain_sleep = fake.sleep

    def sleep(seconds):
        sleeps.append(seconds)
        plain_sleep(seconds)

    runner = hs.Runner(fake, req(check_inter=100, wait_timeout=0.2), clock=fake.clock, sleep=sleep)
    assert runner.poll == 0.05
    with pytest.raises(hs.StateError, match="did not pass 2 fresh health checks within 0.2s") as err:
        runner.run()
    assert sleeps == pytest.approx([0.05] * 4)
    assert err.value.result["elapsed"] == 0.2
    assert hs.Runner(fake, req(check_inter=None)).poll == hs.POLL_INTERVAL == 0.1
    assert hs.Runner(fake, req(check_inter=2000), poll=0.3).poll == 0.3


def test_shutdown_sessions_gets_a_grace_past_the_drain_timeout():
    fake = FakeHAProxy([Srv("s1", scur=3)])
    original = fake.command
    # Sessions that outlive `shutdown sessions` (a client ignoring the close).
    fake.command = lambda c: "" if c.startswith("shutdown sessions") else original(c)
    with pytest.raises(hs.StateError, match="still has sessions after 1s: ") as err:
        run(fake, state="drain", wait_timeout=1, shutdown_sessions=True)
    assert err.value.result["commands"] == ["set server be/s1 state drain",
                                            "shutdown sessions server be/s1"]
    assert err.value.result["elapsed"] == pytest.approx(1 + hs.SHUTDOWN_GRACE)
