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
