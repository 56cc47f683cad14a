"""What the lab tests read of an app's processes on a host: the release a unit's main process
really runs (the release directory that is its working directory, by inode: the process sees
it at ``current``), and the app's background workers and their overlaps; and the feeder that
enqueues jobs on a host while a deploy runs (test_workers.py, test_rq_workers.py).
"""
import subprocess
import threading

from _deploy import APP, ROOT, base_name, sh


def runs_in(lab, host, unit):
    """The release directory ``unit``'s main process works in, or '' when it has none."""
    pid = sh(lab, host, "systemctl show -p MainPID --value %s" % unit)
    if pid == "0":
        return ""
    return sh(lab, host, "cd %s/releases && for d in *; do [ \"$(stat -Lc %%d:%%i /proc/%s/cwd)\" = "
                         "\"$(stat -c %%d:%%i $d)\" ] && echo $d; done; true" % (ROOT, pid))


def worker_releases(lab, host, workers):
    """{unit: release directory its main process runs in, or its state} of ``workers`` (IDs)
    and their overlaps ``ID-next``."""
    found = {}
    for worker in list(workers) + [w + "-next" for w in workers]:
        unit = "%s-worker@%s" % (APP, worker)
        found[unit] = runs_in(lab, host, unit) or sh(lab, host, "systemctl is-active %s || true" % unit)
    return found


def worker_pids(lab, host, workers):
    return {w: sh(lab, host, "systemctl show -p MainPID --value %s-worker@%s" % (APP, w)) for w in workers}


def check_workers_on(lab, host, workers, release):
    """Every worker of ``workers`` runs ``release`` (its base name), no overlap is active and no
    runtime drop-in is left."""
    found = worker_releases(lab, host, workers)
    for worker in workers:
        assert base_name(found["%s-worker@%s" % (APP, worker)]) == release, (host, found)
        assert found["%s-worker@%s-next" % (APP, worker)] == "inactive", (
            host, found, sh(lab, host, "systemctl status --no-pager '%s-worker@*' 2>&1 | tail -40; true" % APP))
    assert sh(lab, host, "ls /run/systemd/system | grep -c worker || true") == "0", host


def ssh_argv(lab, host, *command):
    return ["ssh", "-i", lab.vars["ansible_ssh_private_key_file"], "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            "root@" + lab.hosts[host]] + list(command)


class Feeder:
    """A Python ``script`` run by ``python`` on ``host`` over ssh, enqueuing jobs while a deploy
    runs; ``names`` are the lines it printed that start with ``job-`` (a job enqueued),
    ``other_output`` the rest (its errors)."""

    def __init__(self, lab, host, python, script):
        self.lab, self.host, self.names, self.other_output = lab, host, [], []
        self.proc = subprocess.Popen(ssh_argv(lab, host, python, "-"), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.proc.stdin.write(script)
        self.proc.stdin.close()
        self.reader = threading.Thread(target=self._read)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            (self.names if line.startswith("job-") else self.other_output).append(line.strip())

    def wait(self):
        """Once told to stop (each feeder has its own stop signal), wait for it to end."""
        self.proc.wait(timeout=30)
        self.reader.join(timeout=10)
