"""Fixtures shared by the scenario's testinfra tests.

The hosts have python3 but neither curl nor socat, so HTTP and the HAProxy runtime socket are
reached with small stdlib programs run on the host itself. Everything shared is a fixture: the
repository's pytest.ini imports test modules in importlib mode, where they cannot import each
other or this file.
"""
import csv
import io
import json
import os

import pytest
import testinfra
import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]

# Prints "<status> <body>" for one GET; any error (refused, timeout, non-2xx) exits non-zero.
HTTP_GET = (
    "import sys, urllib.request; "
    "r = urllib.request.urlopen(sys.argv[1], timeout=5); "
    "sys.stdout.write('%d %s' % (r.status, r.read().decode()))"
)

# GETs the same URL N times, one body a line; bounded by N and a per-request timeout.
HTTP_GET_MANY = (
    "import sys, urllib.request; "
    "[print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip()) "
    "for _ in range(int(sys.argv[2]))]"
)

# One command to the HAProxy runtime API over its unix socket; prints the whole answer.
RUNTIME_API = (
    "import socket, sys; "
    "s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1]); "
    "s.sendall(sys.argv[2].encode() + b'\\n'); "
    "sys.stdout.write(b''.join(iter(lambda: s.recv(65536), b'')).decode())"
)


@pytest.fixture(scope="session")
def inventory_hosts():
    """Host names of an inventory group of Molecule's inventory."""
    runner = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
    return runner.get_hosts


@pytest.fixture(scope="session")
def http_get():
    """GET a URL from a host: returns (status, body); a failed GET fails the test."""
    def get(host, url):
        out = host.run("python3 -c %s %s", HTTP_GET, url)
        assert out.rc == 0, "GET %s on %s: %s" % (url, host.backend.hostname, out.stderr)
        status, _sep, body = out.stdout.partition(" ")
        return int(status), body
    return get


@pytest.fixture(scope="session")
def http_get_json_many():
    """GET a URL COUNT times from a host: returns the decoded JSON bodies."""
    def get_many(host, url, count):
        out = host.check_output("python3 -c %s %s %s", HTTP_GET_MANY, url, str(count))
        return [json.loads(line) for line in out.splitlines() if line.strip()]
    return get_many


@pytest.fixture(scope="session")
def show_stat():
    """``show stat`` of a HAProxy host's runtime socket: the rows of one backend's servers."""
    def rows(host, socket_path, backend):
        text = host.check_output("python3 -c %s %s %s", RUNTIME_API, socket_path, "show stat")
        # The header line starts with "# "; strip it so DictReader sees plain column names.
        reader = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return [row for row in reader
                if row["pxname"] == backend and row["svname"] not in ("FRONTEND", "BACKEND")]
    return rows


@pytest.fixture(scope="session")
def app_hostnames(inventory_hosts):
    """{inventory name: system host name} of the app hosts; the app reports the latter."""
    names = {}
    for name in inventory_hosts("app"):
        other = testinfra.get_host("ansible://%s?ansible_inventory=%s" % (name, INVENTORY))
        names[name] = other.check_output("hostname")
    return names
