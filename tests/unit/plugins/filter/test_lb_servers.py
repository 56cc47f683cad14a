import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.hitless.deploy.plugins.filter.lb_servers import lb_servers

BATCH = [{"host": "app1", "server": "app1", "clone": "app1-clone", "address": "10.0.0.11",
          "clone_port": "8081"},
         {"host": "app2", "server": "app2", "clone": "app2-clone", "address": "10.0.0.12",
          "clone_port": 8081}]


def test_originals_and_clones_by_name():
    assert lb_servers(BATCH, "original") == [{"server": "app1"}, {"server": "app2"}]
    assert lb_servers(BATCH, "clone") == [{"server": "app1-clone"}, {"server": "app2-clone"}]


def test_clones_as_the_haproxy_host_reaches_them():
    assert lb_servers(BATCH, "clone", "lb1") == [
        {"server": "app1-clone", "address": "10.0.0.11", "port": 8081},
        {"server": "app2-clone", "address": "10.0.0.12", "port": 8081}]
    # HAProxy on the app host itself reaches its clone over loopback.
    assert lb_servers(BATCH, "clone", "app2")[1]["address"] == "127.0.0.1"


def test_bad_input_is_named():
    with pytest.raises(AnsibleFilterError, match="kind must be"):
        lb_servers(BATCH, "clones")
    with pytest.raises(AnsibleFilterError, match="needs host, server"):
        lb_servers([{"host": "app1"}], "original")


def test_errors_concern_this_host_only():
    from ansible_collections.hitless.deploy.plugins.filter.lb_servers import lb_errors
    results = [
        {"item": "lb1", "failed_when_result": False, "failed": False, "results": [
            {"requested": "app1-clone", "server": "slot1", "failed": False},
            {"requested": "app3-clone", "server": "app3-clone", "failed": True,
             "msg": "server demo/app3-clone is not UP"}]},
        {"item": "lb2", "unreachable": True, "msg": "Failed to connect to the host via ssh\n"},
        {"item": "lb3", "failed_when_result": False, "failed": False,
         "msg": "socket: cannot connect to HAProxy runtime API"},
        {"item": "lb4", "skipped": True}]
    assert lb_errors(results, ["app1", "app1-clone"]) == [
        "on lb2: Failed to connect to the host via ssh",
        "on lb3: socket: cannot connect to HAProxy runtime API"]
    assert lb_errors(results, ["app3", "app3-clone"])[0] == "on lb1: server demo/app3-clone is not UP"
    assert lb_errors(results[:1], ["app1", "app1-clone"]) == []
