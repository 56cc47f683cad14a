# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One change at a time to an app's units on a host.

A controller killed in the middle of a module call does not stop the module on the host: its
SSH session only loses its client, and the module finishes what it was doing. The next run's
converge then acts on the same units while it still does (seen in the lab: a worker move
started 4-8 s after the kill, the killed run's move ended 9 s after it). Each module that
changes an app's units therefore holds an exclusive ``flock`` on ``/run/hitless-deploy/NAME.lock``
for the whole call; a second call waits for the first to finish. The lock goes with the
process that holds it (killed or not), and ``/run`` with a reboot.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import fcntl
import os
import time

LOCK_DIR = "/run/hitless-deploy"
# Longer than any one call takes: a worker move stops each worker with its stop timeout.
WAIT = 900.0
POLL = 0.2


class UnitLockTimeout(Exception):
    pass


def _holder(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except (IOError, OSError):
        return ""


@contextlib.contextmanager
def held(name, wait=WAIT, lock_dir=LOCK_DIR, sleep=time.sleep, clock=time.monotonic):
    """Hold the lock ``name`` (an app's unit name) while the body runs; wait for it at most
    ``wait`` seconds, then raise :class:`UnitLockTimeout` naming its holder."""
    if not os.path.isdir(lock_dir):
        os.makedirs(lock_dir, 0o755)
    path = os.path.join(lock_dir, name + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = clock() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (IOError, OSError) as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if clock() >= deadline:
                    raise UnitLockTimeout(
                        "another hitless.deploy call has been changing the units of %s on this host for "
                        "more than %d s (%s); it still holds %s" % (name, wait, _holder(path) or "holder unknown", path))
                sleep(POLL)
        os.ftruncate(fd, 0)
        os.write(fd, ("pid %d since %d" % (os.getpid(), int(time.time()))).encode("ascii"))
        yield
    finally:
        os.close(fd)
