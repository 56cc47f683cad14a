"""Unit tests of _listeners: a fake procfs tree in tmp_path, then the real /proc of this process."""
import os
import shutil
import socket

import pytest

from ansible_collections.hitless.deploy.plugins.module_utils import _listeners as L

TCP_HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout "
              "inode\n")
TCP6_HEADER = ("  sl  local_address                         remote_address                        st "
               "tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n")
ANY4, LOOP4 = "00000000", "0100007F"
ANY6 = "0" * 32
LOOP6 = "00000000000000000000000001000000"


class FakeProc(object):
    """A procfs tree: net/tcp{,6} in the kernel's format, <pid>/{fd/*,cmdline,cgroup,cwd}."""

    def __init__(self, root, ipv6=True):
        self.root = root
        self.rows = {"tcp": [], "tcp6": []}
        os.makedirs(os.path.join(root, "net"))
        self.ipv6 = ipv6
        self._write()

    def _write(self):
        for name, header in (("tcp", TCP_HEADER), ("tcp6", TCP6_HEADER)):
            if name == "tcp6" and not self.ipv6:
                continue
            rows = ["%4d: %s\n" % (i, row) for i, row in enumerate(self.rows[name])]
            with open(os.path.join(self.root, "net", name), "w") as f:
                f.write(header + "".join(rows))

    def socket(self, inode, port, state="0A", v6=False, addr=None, remote_port=0):
        addr = addr or (ANY6 if v6 else ANY4)
        remote = (ANY6 if v6 else ANY4) + ":%04X" % remote_port
        self.rows["tcp6" if v6 else "tcp"].append(
            "%s:%04X %s %s 00000000:00000000 00:00000000 00000000  1000        0 %d 1 "
            "0000000000000000 100 0 0 10 0" % (addr, port, remote, state, inode))
        self._write()

    def process(self, pid, argv, cgroup="0::/system.slice/stray.service\n", inodes=(), cwd=None):
        top = os.path.join(self.root, str(pid))
        os.makedirs(os.path.join(top, "fd"))
        with open(os.path.join(top, "cmdline"), "wb") as f:
            f.write(b"".join(a.encode() + b"\0" for a in argv))
        with open(os.path.join(top, "comm"), "w") as f:
            f.write((argv[0] if argv else "kworker") + "\n")
        with open(os.path.join(top, "cgroup"), "w") as f:
            f.write(cgroup)
        os.symlink("/dev/null", os.path.join(top, "fd", "0"))
        for fd, inode in enumerate(inodes, start=3):
            os.symlink("socket:[%d]" % inode, os.path.join(top, "fd", str(fd)))
        if cwd:
            os.symlink(cwd, os.path.join(top, "cwd"))
        return top

    def kill(self, pid):
        shutil.rmtree(os.path.join(self.root, str(pid)))


@pytest.fixture
def proc(tmp_path):
    return FakeProc(str(tmp_path / "proc"))


def test_listening_inodes_v4_and_v6_listen_state_only(proc):
    proc.socket(11, 8081, addr=LOOP4)
    proc.socket(12, 8081, v6=True)
    proc.socket(13, 8081, v6=True, addr=LOOP6)
    proc.socket(14, 8081, state="01", remote_port=40000)  # an accepted connection, local port 8081
    proc.socket(15, 40000, state="01", remote_port=8081)  # a client connected to 8081
    proc.socket(16, 8080)
    proc.socket(17, 0x9F91)  # 8081 is 0x1F91: same low digits, other port
    assert L.listening_inodes(8081, proc.root) == {11, 12, 13}
    assert L.listening_inodes(8080, proc.root) == {16}
    assert L.listening_inodes(9999, proc.root) == set()


def test_listening_inodes_without_ipv6_or_procfs(tmp_path):
    proc = FakeProc(str(tmp_path / "proc"), ipv6=False)
    proc.socket(11, 8081)
    assert not os.path.exists(os.path.join(proc.root, "net", "tcp6"))
    assert L.listening_inodes(8081, proc.root) == {11}
    assert L.listening_inodes(8081, str(tmp_path / "nothing")) == set()


def test_listeners_one_entry_per_pid_sorted_with_unit(proc):
    proc.socket(11, 8081)
    proc.socket(12, 8081, v6=True)
    proc.socket(20, 8081, state="01", remote_port=40000)
    proc.process(300, ["python3", "-m", "http.server", "8081"], inodes=[11, 12])  # v4 and v6: one entry
    proc.process(42, ["/usr/bin/python3", "app.py"], cgroup="0::/system.slice/system-demo.slice/demo@8081.service\n",
                 inodes=[12])
    proc.process(50, ["nc", "host", "8081"], inodes=[20])  # a connection, not a listener
    proc.process(60, ["sshd"], inodes=[])
    os.makedirs(os.path.join(proc.root, "self", "fd"))  # non-pid entries are ignored
    os.symlink("socket:[11]", os.path.join(proc.root, "self", "fd", "3"))
    assert L.listeners(8081, proc.root) == [
        {"pid": 42, "cmdline": "/usr/bin/python3 app.py", "unit": "demo@8081.service"},
        {"pid": 300, "cmdline": "python3 -m http.server 8081", "unit": "stray.service"},
    ]
    assert L.listeners(8080, proc.root) == []


def test_listeners_skip_vanished_and_unreadable_pids(proc):
    proc.socket(11, 8081)
    proc.process(100, ["stray"], inodes=[11])
    os.makedirs(os.path.join(proc.root, "101"))  # fd/ unreadable or gone: no fd directory
    top = proc.process(102, ["gone"], inodes=[11])
    os.unlink(os.path.join(top, "cmdline"))  # exited between the fd scan and the cmdline read
    top = proc.process(103, ["closing"], inodes=[])
    os.symlink("socket:[11]", os.path.join(top, "fd", "9"))
    proc.kill(103)  # vanished entirely
    assert [e["pid"] for e in L.listeners(8081, proc.root)] == [100]


def test_listeners_cmdline_truncated_or_from_comm(proc):
    proc.socket(11, 8081)
    proc.process(7, ["python3", "x" * 300], inodes=[11])
    proc.process(8, [], inodes=[11])  # a process that cleared its argv
    by_pid = {e["pid"]: e["cmdline"] for e in L.listeners(8081, proc.root)}
    assert by_pid[7] == ("python3 " + "x" * 300)[:200] and len(by_pid[7]) == 200
    assert by_pid[8] == "[kworker]"


@pytest.mark.parametrize("cgroup,unit", [
    ("0::/system.slice/system-demo.slice/demo@8081.service\n", "demo@8081.service"),
    ("0::/user.slice/user-1000.slice/session-3.scope\n", "session-3.scope"),
    ("0::/system.slice/demo@8081.service/worker\n", "demo@8081.service"),  # Delegate=yes sub-cgroup
    ("0::/init.scope\n", "init.scope"),
    ("0::/\n", None),
    ("0::/system.slice\n", None),
    ("12:memory:/system.slice/stray.service\n1:name=systemd:/system.slice/stray.service\n", "stray.service"),
    # hybrid: the v1 systemd hierarchy wins over the unified line
    ("1:name=systemd:/system.slice/a.service\n0::/system.slice/a.service\n", "a.service"),
])
def test_unit_of(proc, cgroup, unit):
    proc.process(5, ["x"], cgroup=cgroup)
    assert L.unit_of(5, proc.root) == unit


def test_unit_of_and_cgroup_path_of_missing_pid(proc):
    assert L.unit_of(404, proc.root) is None and L.cgroup_path(404, proc.root) is None
    proc.process(5, ["x"], cgroup="12:memory:/a\n")  # v1 without the systemd hierarchy
    assert L.cgroup_path(5, proc.root) is None


def test_process_cwd_resolves_links(proc, tmp_path):
    (tmp_path / "srv" / "releases" / "v1").mkdir(parents=True)
    os.symlink("releases/v1", str(tmp_path / "srv" / "current"))
    proc.process(5, ["x"], cwd=str(tmp_path / "srv" / "current"))
    proc.process(6, ["x"])
    assert L.process_cwd(5, proc.root) == str(tmp_path / "srv" / "releases" / "v1")
    assert L.process_cwd(6, proc.root) is None
    assert L.process_cwd(404, proc.root) is None


def test_describe():
    assert L.describe({"pid": 1234, "cmdline": "python3 -m http.server 8081", "unit": "stray.service"}) == \
        "pid 1234 (python3 -m http.server 8081, unit stray.service)"
    assert L.describe({"pid": 1234, "cmdline": "python3 ...", "unit": None}) == "pid 1234 (python3 ..., no unit)"


def test_real_proc_finds_this_process():
    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("no procfs")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        assert len(L.listening_inodes(port)) == 1
        found = L.listeners(port)
        assert [e["pid"] for e in found] == [os.getpid()]
        with open("/proc/self/cmdline", "rb") as f:
            argv0 = f.read().split(b"\0")[0].decode()
        assert found[0]["cmdline"].startswith(argv0)
        assert found[0]["unit"] == L.unit_of(os.getpid())
        assert L.process_cwd(os.getpid()) == os.path.realpath(os.getcwd())
    finally:
        server.close()
    assert L.listening_inodes(port) == set() and L.listeners(port) == []


def test_unified_line_wins_over_a_root_name_systemd_line(tmp_path):
    # As seen in a systemd-nspawn guest on a hybrid host: every v1 hierarchy is "/".
    pid_dir = tmp_path / "77"
    pid_dir.mkdir()
    (pid_dir / "cgroup").write_text("9:name=systemd:/\n4:memory:/\n"
                                    "0::/system.slice/system-demo.slice/demo@8081.service\n")
    assert L.cgroup_path(77, str(tmp_path)) == "/system.slice/system-demo.slice/demo@8081.service"
    assert L.unit_of(77, str(tmp_path)) == "demo@8081.service"


def test_process_cwd_finds_the_release_by_identity_when_the_path_misleads(tmp_path):
    # In an instance's mount namespace its cwd link reads ROOT/current (the bind mount point),
    # which on the host now leads to another release: the directory's identity decides.
    releases = tmp_path / "releases"
    (releases / "v1").mkdir(parents=True)
    (releases / "v2").mkdir()
    seen = os.stat(str(releases / "v1"))
    assert L.same_directory(seen, str(releases)) == os.path.realpath(str(releases / "v1"))
    assert L.same_directory(os.stat(str(tmp_path)), str(releases)) is None
    assert L.same_directory(seen, str(tmp_path / "nowhere")) is None


def test_process_cwd_plain_and_unreadable(tmp_path):
    proc = tmp_path / "proc"
    (proc / "7").mkdir(parents=True)
    (tmp_path / "releases" / "v1").mkdir(parents=True)
    os.symlink(str(tmp_path / "releases" / "v1"), str(proc / "7" / "cwd"))
    assert L.process_cwd(7, str(proc)) == os.path.realpath(str(tmp_path / "releases" / "v1"))
    assert L.process_cwd(8, str(proc), str(tmp_path / "releases")) is None
