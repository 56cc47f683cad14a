"""The haproxy role on the LB host: valid config, admin socket, both app servers UP and serving."""
import csv
import io
import os

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("haproxy")

CONFIG = "/etc/haproxy/haproxy.cfg"
SOCKET = "/run/haproxy/admin.sock"
BACKEND = "demo"
FRONTEND_URL = "http://127.0.0.1:80/"


def backend_servers(host, runtime_api):
    """{server name: row} of ``show stat`` for the demo backend's servers."""
    text = runtime_api(host, SOCKET, "show stat")
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    return {
        row["svname"]: row
        for row in rows
        if row["pxname"] == BACKEND and row["svname"] not in ("FRONTEND", "BACKEND")
    }


def test_haproxy_running(host):
    service = host.service("haproxy")
    assert service.is_running
    assert service.is_enabled


def test_config_is_valid(host):
    check = host.run("haproxy -c -f %s", CONFIG)
    assert check.rc == 0, check.stdout + check.stderr


def test_admin_socket(host):
    sock = host.file(SOCKET)
    assert sock.is_socket
    assert sock.mode == 0o660
    assert sock.group == "haproxy"


def test_backend_has_every_app_host_up(host, runtime_api, inventory_hosts):
    servers = backend_servers(host, runtime_api)
    assert set(servers) == set(inventory_hosts("app"))
    for name, row in servers.items():
        assert row["status"] == "UP", "%s/%s is %s" % (BACKEND, name, row["status"])


def test_requests_reach_every_app_host(host, app_hostnames, http_get_json_many):
    # roundrobin over two servers: eight requests reach each server four times.
    answers = http_get_json_many(host, FRONTEND_URL, 8)
    assert len(answers) == 8
    assert {a["version"] for a in answers} == {"v1"}
    assert {a["host"] for a in answers} == set(app_hostnames.values())
