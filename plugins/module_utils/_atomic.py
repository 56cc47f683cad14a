# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files that a crash at any instant leaves whole: the old content or the new, never half.

The one writer of every file the collection writes on a host: the deploy lock and journal, the
deploy record, a release's rendered files and record, the clone's drop-in, and HAProxy's saved
server state (the haproxy role installs this file beside its state saver). Stdlib only, with
nothing imported from Ansible or the collection; runs on the target (Python >= 3.9).
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import tempfile


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path, data, mode=0o644, uid=-1, gid=-1):
    """Write ``data`` (bytes or text) to ``path`` whole: a temporary file in the same directory
    with its mode and owner set, fsync, rename over ``path``, fsync of the directory."""
    if not isinstance(data, bytes):
        data = data.encode("utf-8")
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".%s.tmp-" % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            if uid != -1 or gid != -1:
                os.fchown(handle.fileno(), uid, gid)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def write_json(path, data, mode=0o644):
    write_file(path, json.dumps(data, indent=1, sort_keys=True) + "\n", mode)


def remove(path):
    os.unlink(path)
    fsync_dir(os.path.dirname(path))
