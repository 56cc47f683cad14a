"""After the rolling deploy, the LB holds exactly the original servers, UP, all answering v2."""
import os

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("haproxy")

SOCKET = "/run/haproxy/admin.sock"
BACKEND = "demo"
FRONTEND_URL = "http://127.0.0.1:80/"


def test_no_clone_server_left(host, show_stat):
    names = [row["svname"] for row in show_stat(host, SOCKET, BACKEND)]
    assert [name for name in names if name.endswith("-clone")] == []


def test_every_original_is_up_and_in_service(host, show_stat, inventory_hosts):
    rows = {row["svname"]: row for row in show_stat(host, SOCKET, BACKEND)}
    assert set(rows) == set(inventory_hosts("app"))
    for name, row in rows.items():
        # A server left in drain shows "DRAIN" with weight 0; in maintenance "MAINT".
        assert row["status"] == "UP", "%s/%s is %s" % (BACKEND, name, row["status"])
        assert int(row["weight"]) > 0, "%s/%s has weight %s" % (BACKEND, name, row["weight"])


def test_requests_reach_every_app_host_on_v2(host, app_hostnames, http_get_json_many):
    # roundrobin over two servers: eight requests reach each server four times.
    answers = http_get_json_many(host, FRONTEND_URL, 8)
    assert len(answers) == 8
    assert {a["version"] for a in answers} == {"v2"}
    assert {a["host"] for a in answers} == set(app_hostnames.values())
    assert {a["port"] for a in answers} == {8080}
