"""The launcher script each lab host runs, and the /proc parsing the lab relies on."""
import os

import _proc
import lab


def command_line(script):
    return next(line.split() for line in script.splitlines() if "systemd-nspawn" in line)


def test_launcher_in_own_cgroup_without_systemd_as_pid1():
    script = lab.launcher_script("itest", "app1", "/l/merged", "ab" * 16,
                                 "/sys/fs/cgroup/unified/hd-itest/app1")
    lines = script.splitlines()
    # The cgroup move comes first: nspawn's own cgroups go beside the one it starts in.
    assert lines.index("echo $$ > /sys/fs/cgroup/unified/hd-itest/app1/cgroup.procs || exit 1") \
        < lines.index(next(line for line in lines if "systemd-nspawn" in line))
    assert "export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1" in lines
    argv = command_line(script)
    assert argv[1:8] == ["--boot", "-D", "/l/merged", "-M", "itest-app1", "--register=no",
                         "--keep-unit"]
    assert {"--network-bridge=hd-itest", "--console=passive", "--link-journal=no",
            "--uuid=" + "ab" * 16} <= set(argv)
    assert '[ "$rc" -eq 133 ] || exit "$rc"' in script


def test_launcher_where_systemd_is_pid1_registers_normally():
    script = lab.launcher_script("lab", "lb1", "/l/merged", "cd" * 16, None)
    argv = command_line(script)
    assert "--register=no" not in argv and "--keep-unit" not in argv
    assert "cgroup.procs" not in script
    assert argv[argv.index("-M") + 1] == "lab-lb1"


def test_start_time_of_a_process_whose_name_has_spaces_and_parentheses(tmp_path, monkeypatch):
    stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 0 0\n"
    real_open = open

    def fake_open(path, *args, **kwargs):
        if path == "/proc/42/stat":
            path = tmp_path / "stat"
            path.write_text(stat)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    assert _proc.start_time(42) == 987654
    stat = stat.replace(") S ", ") Z ")
    assert _proc.start_time(42) is None


def test_start_time_of_this_process_is_stable():
    first, second = _proc.start_time(os.getpid()), _proc.start_time(os.getpid())
    assert first == second and second is not None
    assert _proc.alive(os.getpid(), _proc.start_time(os.getpid()))
    assert not _proc.alive(os.getpid(), _proc.start_time(os.getpid()) + 1)


def test_mount_points_are_unescaped():
    assert _proc._unescape(r"/work/my\040lab/merged") == "/work/my lab/merged"


def test_one_instance_unless_asked():
    assert lab.parse_args(["up", "--name", "x"]).instances == 1
    assert lab.parse_args(["up", "--name", "x", "--instances", "2"]).instances == 2
