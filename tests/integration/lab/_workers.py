"""What the lab tests read of an app's processes on a host: the release a unit's main process
really runs (the release directory that is its working directory, by inode: the process sees
it at ``current``), and the app's background workers and their overlaps.
"""
from _deploy import APP, ROOT, sh


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
