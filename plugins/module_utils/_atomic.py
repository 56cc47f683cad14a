# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files that a crash at any instant leaves whole: the old content or the new, never half.

Used for the deploy lock and the deploy journal. Pure stdlib; runs on the target.
"""

import json
import os


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path, data):
    """Temporary file in the same directory, fsync, rename over ``path``, fsync the directory."""
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)
    fsync_dir(os.path.dirname(path))


def remove(path):
    os.unlink(path)
    fsync_dir(os.path.dirname(path))
