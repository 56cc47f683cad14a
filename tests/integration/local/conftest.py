"""Fixtures for controller-only integration tests: a real HAProxy in front of real app processes.

Each test gets its own ``/usr/sbin/haproxy -db`` on a temp admin socket (plus a TCP runtime
listener) and loopback frontends, with backends whose servers are sample-app processes
(tests/sample_app/app.py) on free loopback ports. Assertions read HAProxy's state with the
small raw reader below, not with the code under test. ``haproxy_mw`` is the same in
master-worker mode (as Debian's unit runs it) on a configuration the test writes, and reloads
the way systemd does (SIGUSR2 to the master).
"""
import csv
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.dirname(HERE))  # for tests/integration/_ansible.py
HAPROXY = "/usr/sbin/haproxy"
APP = os.path.join(REPO, "tests", "sample_app", "app.py")
INTER_MS, RISE, FALL = 500, 2, 2

CONFIG = """\
global
    stats socket {sock} mode 600 level admin
    stats socket ipv4@127.0.0.1:{cli_port} level admin
    stats timeout 10s

defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout queue 5s
    retries 2
    option redispatch

frontend fe_web
    bind 127.0.0.1:{web_port}
    default_backend web

frontend fe_sticky
    bind 127.0.0.1:{sticky_port}
    default_backend sticky

backend web
    balance roundrobin
    option httpchk GET /health
    default-server check inter {inter} rise {rise} fall {fall}
    server app1 127.0.0.1:{app1}
    server app2 127.0.0.1:{app2}

# A clone slot as the haproxy role declares one (clone_port): app1-clone, disabled.
frontend fe_slotted
    bind 127.0.0.1:{slotted_port}
    default_backend slotted

backend slotted
    balance roundrobin
    option httpchk GET /health
    default-server check inter {inter} rise {rise} fall {fall}
    server app1 127.0.0.1:{app1}
    server app1-clone 127.0.0.1:{app3} disabled

# `balance source` (map-based) cannot take dynamic servers: clones use the disabled slots.
backend sticky
    balance source
    option httpchk GET /health
    default-server check inter {inter} rise {rise} fall {fall}
    server app1 127.0.0.1:{app1}
    server slot1 127.0.0.1:{dead} disabled
    server slot2 127.0.0.1:{dead} disabled
"""


def free_port():
    """A loopback port nobody listens on right now."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def http_get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read().decode()


def wait_until(predicate, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


class App(object):
    """One sample-app process on a loopback port."""

    def __init__(self, name, port, workdir):
        self.name, self.port, self.workdir = name, port, workdir
        self.proc = None

    def start(self):
        env = dict(os.environ, PORT=str(self.port), STARTUP_DELAY="0", BIND="127.0.0.1",
                   APP_VERSION=self.name)
        log = open(os.path.join(self.workdir, "%s-%d.log" % (self.name, self.port)), "ab")
        try:
            self.proc = subprocess.Popen([sys.executable, APP], env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
        finally:
            log.close()
        wait_until(self.healthy, 10, "app %s on port %d" % (self.name, self.port))
        return self

    def healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError("app %s exited with %s" % (self.name, self.proc.returncode))
        try:
            return http_get("http://127.0.0.1:%d/health" % self.port, timeout=1)[0] == 200
        except OSError:
            return False

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def runtime(sock, command, timeout=5.0):
    """One raw runtime API command (the fixtures' own reader, independent of the modules)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock)
        s.sendall((command + "\n").encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data.decode()
            data += chunk
    finally:
        s.close()


class HAProxy(object):
    """A running HAProxy with frontends web and sticky, and apps app1, app2 (+ spare app3).

    Helpers hang off it so test modules need not import this conftest by name.
    """

    INTER_MS, RISE, FALL = INTER_MS, RISE, FALL
    http_get = staticmethod(http_get)
    wait_until = staticmethod(wait_until)

    def __init__(self, tmp_path):
        self.dir = str(tmp_path)
        self.sock = os.path.join(self.dir, "admin.sock")
        self.cli_port = free_port()
        self.tcp_socket = "127.0.0.1:%d" % self.cli_port
        self.web_port, self.sticky_port = free_port(), free_port()
        self.slotted_port = free_port()
        self.web_url = "http://127.0.0.1:%d" % self.web_port
        self.sticky_url = "http://127.0.0.1:%d" % self.sticky_port
        self.slotted_url = "http://127.0.0.1:%d" % self.slotted_port
        self.apps = {}
        for name in ("app1", "app2", "app3"):
            self.apps[name] = App(name, free_port(), self.dir)
        self.dead_port = free_port()
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        self.proc = None

    UP_AT_START = (("web", "app1"), ("web", "app2"), ("sticky", "app1"), ("slotted", "app1"))

    def config(self):
        return CONFIG.format(
            sock=self.sock, cli_port=self.cli_port, web_port=self.web_port,
            sticky_port=self.sticky_port, slotted_port=self.slotted_port,
            app1=self.apps["app1"].port, app2=self.apps["app2"].port,
            app3=self.apps["app3"].port, dead=self.dead_port, inter=INTER_MS, rise=RISE,
            fall=FALL)

    def command_line(self):
        return [HAPROXY, "-f", self.cfg, "-db"]

    def start(self, config=None, up=None):
        for app in self.apps.values():
            app.start()
        with open(self.cfg, "w") as f:
            f.write(self.config() if config is None else config)
        subprocess.run([HAPROXY, "-c", "-q", "-f", self.cfg], check=True, timeout=30)
        log = open(os.path.join(self.dir, "haproxy.log"), "ab")
        try:
            self.proc = subprocess.Popen(self.command_line(), stdout=log,
                                         stderr=subprocess.STDOUT)
        finally:
            log.close()
        # HAProxy creates the socket's file before it listens on it: a connect in between is
        # refused (seen once in CI), so wait for an answer, not for the file.
        wait_until(self.answers, 10, "the admin socket to answer")
        wait_until(lambda: all(self.server(b, s)["status"] == "UP" for b, s in (
            self.UP_AT_START if up is None else up)), 15, "servers UP")
        return self

    def answers(self):
        try:
            return "Name: HAProxy" in runtime(self.sock, "show info")
        except OSError:
            return False

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for app in self.apps.values():
            app.stop()

    def log_offset(self):
        return os.path.getsize(os.path.join(self.dir, "haproxy.log"))

    def log_since(self, offset, server=None):
        """HAProxy's own state-change log lines (-db prints them) written after ``offset``."""
        with open(os.path.join(self.dir, "haproxy.log"), "rb") as f:
            f.seek(offset)
            lines = f.read().decode("utf-8", "replace").splitlines()
        if server:
            lines = [x for x in lines if "Server %s " % server in x]
        return [x.split(" : ", 1)[-1] for x in lines]

    def cmd(self, command):
        return runtime(self.sock, command).strip()

    def servers(self):
        """{(backend, server): row} joining show stat and show servers state, by header names."""
        lines = [x for x in runtime(self.sock, "show stat").splitlines() if x]
        header = next(csv.reader([lines[0][2:]]))
        result = {}
        for values in csv.reader(lines[1:]):
            row = dict(zip(header, values))
            if row["svname"] not in ("FRONTEND", "BACKEND"):
                result[(row["pxname"], row["svname"])] = row
        lines = [x for x in runtime(self.sock, "show servers state").splitlines() if x]
        header = lines[1].lstrip("# ").split()
        for line in lines[2:]:
            row = dict(zip(header, line.split()))
            key = (row["be_name"], row["srv_name"])
            if key in result:
                result[key].update(row)
        return result

    def server(self, backend, name):
        return self.servers().get((backend, name))

    def snapshot(self, backend, name):
        """What must not change in check mode: admin/op state, address, port, weight."""
        row = self.server(backend, name)
        if row is None:
            return None
        return dict((k, row.get(k)) for k in ("status", "srv_admin_state", "srv_addr",
                                              "srv_port", "srv_uweight"))

    def poller(self, backend, name, interval=0.02, limit=60.0):
        return Poller(self, backend, name, interval, limit)


class MasterWorkerHAProxy(HAProxy):
    """`haproxy -W -db -S MASTER_SOCK -f CFG`: Debian's unit runs `-Ws` the same way.

    The test writes the configuration (``start(config, up)``), with ``self.sock`` as its admin
    socket; ``reload()`` is what `systemctl reload` ends with (`kill -USR2 $MAINPID`).
    """

    def __init__(self, tmp_path):
        HAProxy.__init__(self, tmp_path)
        self.master_sock = os.path.join(self.dir, "master.sock")
        self.state_file = os.path.join(self.dir, "server-state")

    def command_line(self):
        return [HAPROXY, "-W", "-db", "-f", self.cfg, "-S", self.master_sock]

    @property
    def master_pid(self):
        return self.proc.pid

    def worker_pid(self):
        for line in runtime(self.sock, "show info").splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":", 1)[1])
        raise AssertionError("no Pid in show info")

    def reload(self):
        os.kill(self.proc.pid, signal.SIGUSR2)

    def wait_new_worker(self, old_pid, timeout=15):
        def new():
            try:
                return self.worker_pid() != old_pid
            except OSError:
                return False
        wait_until(new, timeout, "a new worker after the reload")


class Poller(object):
    """Samples one server's status in a thread (bounded in time) while a module runs."""

    def __init__(self, haproxy, backend, name, interval, limit):
        self.haproxy, self.backend, self.name = haproxy, backend, name
        self.interval, self.limit = interval, limit
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.daemon = True

    def _run(self):
        start = time.monotonic()
        while not self._stop.is_set() and time.monotonic() - start < self.limit:
            try:
                row = self.haproxy.server(self.backend, self.name)
            except OSError:
                row = None
            if row is not None:
                self.samples.append((round(time.monotonic() - start, 3), row["status"],
                                     row["check_status"], row["check_health"]))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)

    def statuses(self):
        return [s[1] for s in self.samples]

    def transitions(self):
        """The samples where something changed, for readable assertion messages."""
        out = []
        for sample in self.samples:
            if not out or out[-1][1:] != sample[1:]:
                out.append(sample)
        return out


@pytest.fixture
def haproxy_mw(tmp_path):
    """A :class:`MasterWorkerHAProxy`, not started yet: the test renders its configuration."""
    if not os.access(HAPROXY, os.X_OK):
        pytest.fail("%s is required for these tests (apt-get install haproxy)" % HAPROXY)
    lab = MasterWorkerHAProxy(tmp_path)
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def haproxy(tmp_path):
    if not os.access(HAPROXY, os.X_OK):
        pytest.fail("%s is required for these tests (apt-get install haproxy)" % HAPROXY)
    lab = HAProxy(tmp_path)
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()
