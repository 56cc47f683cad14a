"""Unit tests of the batch of haproxy_server: several servers, one call, waits overlapping.

Against the simulated HAProxy of test_haproxy_server (checks run as fake time passes).
"""
import pytest

from ansible_collections.hitless.deploy.plugins.module_utils import _haproxy_batch as hb
from ansible_collections.hitless.deploy.plugins.module_utils import _haproxy_server as hs

from ansible_collections.hitless.deploy.tests.unit.plugins.module_utils.test_haproxy_server import (
    FakeHAProxy, Srv, req)


def batch(fake, requests, check_mode=False):
    return hb.run_batch(fake, requests, check_mode=check_mode, clock=fake.clock, sleep=fake.sleep)


def test_clones_are_added_and_ready_together_after_their_own_fresh_checks():
    fake = FakeHAProxy([Srv("app1"), Srv("app2"), Srv("app3")])
    clones = [req(server="app%d-clone" % n, address="10.0.0.%d" % n, port=8081) for n in (1, 2, 3)]
    results = batch(fake, clones)
    assert [r["failed"] for r in results] == [False] * 3
    assert all(fake.servers["app%d-clone" % n].status() == "UP" for n in (1, 2, 3))
    # One wait for the batch: rise (2) checks at 0.5 s, plus a poll or two; not three of them.
    assert fake.now < 2.0, fake.now
    # Nobody went ready before fresh checks: each was armed with its health down.
    for n in (1, 2, 3):
        assert results[n - 1]["commands"][:2] == [
            "add server be/app%d-clone 10.0.0.%d:8081 check inter 500 rise 2 fall 2" % (n, n),
            "enable health be/app%d-clone" % n]
        assert "set server be/app%d-clone health down" % n in results[n - 1]["commands"]
    assert results[0]["before"] is None and results[0]["after"]["status"] == "UP"
    assert results[0]["diff"]["after"]["state"] == "ready"


def test_drains_share_one_grace_before_their_sessions_are_shut_down():
    fake = FakeHAProxy([Srv("app1", scur=3), Srv("app2", scur=5), Srv("app3")])
    drains = [req(server=s, state="drain", wait_timeout=3.0, shutdown_sessions=True)
              for s in ("app1", "app2")]
    results = batch(fake, drains)
    assert [r["failed"] for r in results] == [False, False]
    assert [fake.servers[s].admin for s in ("app1", "app2", "app3")] == ["drain", "drain", "ready"]
    # Both got their 3 s from the same start, not 3 s each.
    assert 3.0 <= fake.now < 4.0, fake.now
    assert fake.sent == ["set server be/app1 state drain", "set server be/app2 state drain",
                         "shutdown sessions server be/app1", "shutdown sessions server be/app2"]


def test_absent_leaves_traffic_first_and_deletes_once_idle():
    fake = FakeHAProxy([Srv("app1"), Srv("c1", dynamic=True, scur=2), Srv("c2", dynamic=True)])
    fake.sessions_end_at = 1.0
    results = batch(fake, [req(server=s, state="absent", wait_timeout=5.0) for s in ("c1", "c2")])
    assert [r["failed"] for r in results] == [False, False]
    assert sorted(fake.servers) == ["app1"]
    # Both left traffic before any wait; c2, idle, waited for nothing.
    assert fake.sent[:2] == ["set server be/c1 state maint", "set server be/c2 state maint"]
    assert results[1]["commands"] == ["set server be/c2 state maint", "del server be/c2"]


def test_a_server_that_fails_does_not_stop_the_others():
    fake = FakeHAProxy([Srv("app1", admin="maint"), Srv("app2", admin="maint", alive=False)])
    results = batch(fake, [req(server=s, wait_timeout=3.0) for s in ("app1", "app2")])
    assert results[0]["failed"] is False and fake.servers["app1"].status() == "UP"
    assert results[1]["failed"] is True
    assert results[1]["msg"].startswith("server be/app2 is not UP with a passing check after")
    # Armed, never up: out of traffic.
    assert not fake.servers["app2"].status().startswith("UP")


def test_each_clone_takes_its_own_slot():
    fake = FakeHAProxy([Srv("app1"), Srv("app2"), Srv("slot1", admin="maint", address="10.0.0.99", port=1),
                        Srv("slot2", admin="maint", address="10.0.0.99", port=1)], algo="source")
    clones = [req(server="app%d-clone" % n, address="10.0.0.%d" % n, port=8081,
                  slots=["slot1", "slot2"]) for n in (1, 2)]
    results = batch(fake, clones)
    assert [(r["requested"], r["server"], r["slot"], r["failed"]) for r in results] == [
        ("app1-clone", "slot1", "slot1", False), ("app2-clone", "slot2", "slot2", False)]
    assert (fake.servers["slot2"].address, fake.servers["slot2"].port) == ("10.0.0.2", 8081)


def test_check_mode_sends_nothing_and_predicts_each():
    fake = FakeHAProxy([Srv("app1"), Srv("app2")])
    results = batch(fake, [req(server=s, state="drain") for s in ("app1", "app2")], check_mode=True)
    assert fake.sent == [] and fake.now == 0.0
    assert [r["commands"] for r in results] == [["set server be/app1 state drain"],
                                                ["set server be/app2 state drain"]]


def test_one_backend_per_call():
    fake = FakeHAProxy([Srv("app1")])
    with pytest.raises(hs.ParamError) as err:
        batch(fake, [req(server="app1"), req(server="app1", backend="other")])
    assert err.value.param == "servers"


def test_a_clone_put_back_by_a_reload_after_the_wait_is_sent_out_again():
    fake = FakeHAProxy([Srv("app1"), Srv("app1-clone")])
    original_sleep = fake.sleep
    restored = []

    def sleep(seconds):
        original_sleep(seconds)
        # The reload's new worker loads the state saved before the clone left: ready again.
        if not restored and fake.servers["app1-clone"].admin == "maint":
            fake.servers["app1-clone"].admin = "ready"
            restored.append(fake.now)
    fake.sleep = sleep
    (result,) = hb.run_batch(fake, [req(server="app1-clone", state="absent", wait_timeout=3.0)],
                             clock=fake.clock, sleep=fake.sleep)
    assert restored and result["failed"] is False
    assert fake.servers["app1-clone"].admin == "maint"
    assert result["commands"].count("set server be/app1-clone state maint") == 2
