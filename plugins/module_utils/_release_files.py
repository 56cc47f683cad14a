# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files written into a release after it is unpacked: rendered configuration, the environment.

Their content comes from the controller (the action plugin renders templates there), so the
host only compares and writes. A file is replaced by a rename, so the app never reads half of
one, and only inside the release: a path through a symlink (a shared path, say) is refused,
because writing there would change what the serving release reads too.
Pure stdlib; runs on the target (Python >= 3.9).
"""

import hashlib
import os
import posixpath
import stat

from ansible_collections.hitless.deploy.plugins.module_utils._atomic import write_file

DEFAULT_MODE = "0640"
DIGEST_LENGTH = 8


class FilesError(Exception):
    """Bad ``files`` input or a destination that must not be written; names the parameter."""

    param = "files"

    def __init__(self, msg):
        super(FilesError, self).__init__(msg)
        self.msg = msg


def _mode(value, path):
    text = str(value if value is not None else DEFAULT_MODE)
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise FilesError("files: mode %r of %s is not an octal permission such as '0640'"
                         % (value, path))
    return mode


def check_files(files):
    """Validate the ``files`` option; return ``[(relative path, bytes, mode)]``."""
    checked, seen = [], set()
    for entry in files or []:
        path = entry.get("path") or ""
        norm = posixpath.normpath(path) if path else ""
        if (not norm or norm.startswith("/") or norm == "." or norm == ".."
                or norm.startswith("../")):
            raise FilesError("files: path %r must be relative and stay inside the release"
                             % path)
        if norm in seen:
            raise FilesError("files: path %s is given twice" % norm)
        seen.add(norm)
        content = entry.get("content")
        if content is None:
            raise FilesError("files: %s has no content" % norm)
        data = content.encode("utf-8") if not isinstance(content, bytes) else content
        checked.append((norm, data, _mode(entry.get("mode"), norm)))
    return checked


def files_digest(files):
    """First ``DIGEST_LENGTH`` hex digits of a sha256 identifying ``check_files``' entries.

    The entries are taken in the order of their normalized paths (UTF-8 bytes); for each, the
    hash is fed ``path NUL mode NUL length NUL content``: the normalized relative path in UTF-8,
    the permission bits as four octal digits (``0640``), the content's length in bytes in
    decimal, and the content's bytes. The order the files are given in does not matter; a
    different path, mode or content gives a different digest. Owners are not part of it.
    """
    digest = hashlib.sha256()
    for path, data, mode in sorted(files, key=lambda f: f[0].encode("utf-8", "surrogateescape")):
        digest.update(path.encode("utf-8", "surrogateescape"))
        digest.update(("\0%04o\0%d\0" % (mode, len(data))).encode("ascii"))
        digest.update(data)
    return digest.hexdigest()[:DIGEST_LENGTH]


def content_differs(release_dir, files):
    """Paths of ``check_files``' entries missing from ``release_dir`` or with another content
    (modes and owners aside): what writing them would change for a process reading them."""
    differing = []
    for path, data, _mode in files:
        dest = os.path.join(release_dir, path)
        _inside(release_dir, path)
        try:
            st = os.lstat(dest)
        except FileNotFoundError:
            differing.append(path)
            continue
        if not stat.S_ISREG(st.st_mode):
            raise FilesError("files: %s exists and is not a regular file" % dest)
        if st.st_size != len(data):
            differing.append(path)
            continue
        with open(dest, "rb") as handle:
            if handle.read() != data:
                differing.append(path)
    return differing


def _inside(release_dir, path):
    """Refuse ``path`` when it, or a directory on the way to it, is a symlink."""
    current = release_dir
    for part in path.split("/"):
        current = os.path.join(current, part)
        if os.path.islink(current):
            raise FilesError("files: %s is a symlink (a shared path?); files are written into "
                             "the release itself only" % path)
        if not os.path.exists(current):
            return


def _differs(dest, data, mode, uid, gid):
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        return True
    if not stat.S_ISREG(st.st_mode):
        raise FilesError("files: %s exists and is not a regular file" % dest)
    if stat.S_IMODE(st.st_mode) != mode or uid not in (-1, st.st_uid) or gid not in (-1, st.st_gid):
        return True
    if st.st_size != len(data):
        return True
    with open(dest, "rb") as handle:
        return handle.read() != data


def _make_parents(release_dir, path, uid, gid):
    # Owned like the rest of the release, or the next run's ownership check sees a change.
    current = release_dir
    for part in path.split("/")[:-1]:
        current = os.path.join(current, part)
        if not os.path.isdir(current):
            os.mkdir(current, 0o755)
            os.chown(current, uid, gid)


def _write(dest, data, mode, uid, gid):
    write_file(dest, data, mode, uid, gid)


def write_files(release_dir, files, uid, gid, check_mode):
    """Write each of ``check_files``' entries that differs; return the paths that did."""
    exists = os.path.isdir(release_dir)
    changed = []
    for path, data, mode in files:
        dest = os.path.join(release_dir, path)
        if exists:
            _inside(release_dir, path)
        if exists and not _differs(dest, data, mode, uid, gid):
            continue
        changed.append(path)
        if not check_mode:
            _make_parents(release_dir, path, uid, gid)
            _write(dest, data, mode, uid, gid)
    return changed
