# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Release directories: safe unpacking, shared links, atomic ``current`` switch, pruning.

Layout under ``root``: ``releases/<name>/``, ``shared/``, and the symlinks ``current`` and
``previous`` whose targets are relative (``releases/<name>``) so the tree can be moved.
Pure stdlib; runs on the target (Python >= 3.9).
"""

import datetime
import glob
import grp
import hashlib
import json
import os
import posixpath
import pwd
import shutil
import stat
import tarfile
import time
import uuid
import zipfile

from ansible_collections.hitless.deploy.plugins.module_utils import _release_index as _index
from ansible_collections.hitless.deploy.plugins.module_utils._atomic import write_file
from ansible_collections.hitless.deploy.plugins.module_utils._release_index import (  # noqa: F401
    BAD_DIR, RECORD, SERVED_DIR, natural_key, parse_mark, read_record)
from ansible_collections.hitless.deploy.plugins.module_utils._release_files import (
    check_files, content_differs, files_digest, write_files)

PIN_DIR = "/run/systemd/system"
PIN_FILE = "hitless-pin.conf"
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class ReleaseError(Exception):
    """A refusal; ``param`` names the module option at fault, ``details`` go into the result."""

    def __init__(self, msg, param=None, **details):
        super(ReleaseError, self).__init__(msg)
        self.msg = msg
        self.param = param
        self.details = details


def check_name(name):
    if not name:
        raise ReleaseError("name must not be empty", "name")
    if "/" in name or name in (".", "..") or name.startswith(".") or any(ord(c) < 32 for c in name):
        raise ReleaseError(
            "name %r is not a valid release name: it must not contain '/' or control characters, "
            "be '.' or '..', or start with a dot" % name, "name")


def normalize_shared(paths):
    result = []
    for path in paths or []:
        if not path or posixpath.isabs(path) or "\0" in path:
            raise ReleaseError("shared path %r must be a non-empty relative path" % path, "shared")
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if not parts or ".." in parts:
            raise ReleaseError("shared path %r must stay inside the release (no '..')" % path, "shared")
        norm = "/".join(parts)
        if norm == RECORD:
            raise ReleaseError("shared path %r is reserved" % path, "shared")
        result.append(norm)
    for a in result:
        for b in result:
            if a != b and b.startswith(a + "/"):
                raise ReleaseError("shared paths %r and %r overlap" % (a, b), "shared")
    return result


def resolve_owner(owner, group):
    """Return ``(uid, gid)``, -1 meaning "leave as created"."""
    uid = gid = -1
    if owner is not None:
        try:
            uid = int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid
        except KeyError:
            raise ReleaseError("owner %r does not exist on the host" % owner, "owner")
    if group is not None:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise ReleaseError("group %r does not exist on the host" % group, "group")
    return uid, gid


def _random():
    return uuid.uuid4().hex[:10]


# --- layout ----------------------------------------------------------------------------------

class Layout(object):
    def __init__(self, root):
        self.root = os.path.abspath(root)
        self.releases = os.path.join(self.root, "releases")
        self.shared = os.path.join(self.root, "shared")
        self.current = os.path.join(self.root, "current")
        self.previous = os.path.join(self.root, "previous")
        self.bad = os.path.join(self.root, BAD_DIR)
        self.served = os.path.join(self.root, SERVED_DIR)

    def release(self, name):
        return os.path.join(self.releases, name)

    def bad_mark(self, name):
        return os.path.join(self.bad, name)

    def served_mark(self, name):
        return os.path.join(self.served, name)

    def has_release(self, name):
        path = self.release(name)
        return os.path.isdir(path) and not os.path.islink(path)

    def list_releases(self):
        if not os.path.isdir(self.releases):
            return []
        return sorted((n for n in os.listdir(self.releases)
                       if not n.startswith(".") and self.has_release(n)), key=natural_key)

    def link_target(self, link):
        """Release name a ``current``/``previous`` link points to; its raw target if foreign."""
        if not os.path.lexists(link):
            return None
        if not os.path.islink(link):
            raise ReleaseError("%s exists and is not a symlink; refusing to manage it" % link, "root")
        target = os.readlink(link)
        absolute = os.path.normpath(os.path.join(self.root, target))
        parent = os.path.dirname(absolute)
        if parent == self.releases or (
                os.path.exists(parent) and os.path.realpath(parent) == os.path.realpath(self.releases)):
            return os.path.basename(absolute)
        return target

    def snapshot(self):
        return {"current": self.link_target(self.current),
                "previous": self.link_target(self.previous),
                "releases": self.list_releases()}


def atomic_link(link, target):
    """Point ``link`` at ``target`` with rename(2), so readers never see it missing."""
    tmp = os.path.join(os.path.dirname(link), ".%s.tmp-%s" % (os.path.basename(link), _random()))
    os.symlink(target, tmp)
    try:
        os.rename(tmp, link)
    except OSError:
        os.unlink(tmp)
        raise


# --- pins ------------------------------------------------------------------------------------

# Imported here rather than at the top so the pins section stays self-contained: _pin is the one
# parser of the drop-in app_instance writes, so release and app_instance never disagree on a pin.
from ansible_collections.hitless.deploy.plugins.module_utils._pin import pinned_to  # noqa: E402


def read_pin(conf):
    try:
        with open(conf) as f:
            return pinned_to(f.read())
    except (IOError, OSError):
        return None


def pinned_releases(layout, pin_dir=PIN_DIR):
    """Map release name -> list of drop-ins whose pin (the release bound onto ``current``, or a
    legacy ``WorkingDirectory=``) lies inside it."""
    pins = {}
    real_releases = os.path.realpath(layout.releases)
    pattern = os.path.join(glob.escape(pin_dir), "*.service.d", PIN_FILE)
    for conf in sorted(glob.glob(pattern)):
        pinned = read_pin(conf)
        if not pinned or not os.path.isabs(pinned):
            continue
        rel = os.path.relpath(os.path.realpath(pinned), real_releases)
        if rel == "." or rel == ".." or rel.startswith("../"):
            continue
        pins.setdefault(rel.split("/", 1)[0], []).append(conf)
    return pins


# --- hashing ---------------------------------------------------------------------------------

def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_tree(path):
    """Digest of a directory's names, types, permission bits, contents and link targets."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for entry in sorted(dirnames + filenames):
            full = os.path.join(dirpath, entry)
            rel = os.path.relpath(full, path)
            st = os.lstat(full)
            digest.update(("%s\0%o\0" % (rel, st.st_mode)).encode("utf-8", "surrogateescape"))
            if stat.S_ISLNK(st.st_mode):
                digest.update(os.readlink(full).encode("utf-8", "surrogateescape"))
            elif stat.S_ISREG(st.st_mode):
                digest.update(sha256_file(full).encode("ascii"))
            digest.update(b"\0")
    return digest.hexdigest()


def source_digest(src):
    if os.path.isdir(src):
        return "tree:" + sha256_tree(src)
    return sha256_file(src)


def write_record(release_dir, record, uid=-1, gid=-1):
    """Replace the record whole; an existing record's owner and mode are kept."""
    path = os.path.join(release_dir, RECORD)
    mode = 0o644
    try:
        st = os.lstat(path)
        mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
    except FileNotFoundError:
        pass
    write_file(path, json.dumps(record, sort_keys=True) + "\n", mode, uid, gid)


# --- archive members -------------------------------------------------------------------------

class Member(object):
    """One archive entry, reduced to what extraction needs: path, kind, mode, link target."""

    __slots__ = ("path", "kind", "mode", "linkname", "opener", "mtime")

    def __init__(self, path, kind, mode=0, linkname=None, opener=None, mtime=None):
        self.path = path
        self.kind = kind
        self.mode = mode
        self.linkname = linkname
        self.opener = opener
        self.mtime = mtime


def member_path(name):
    if "\0" in name:
        raise ReleaseError("archive member %r has a NUL byte in its name" % name, "src")
    if name.startswith("/"):
        raise ReleaseError("archive member %r has an absolute path" % name, "src")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ReleaseError("archive member %r escapes the release ('..' in its path)" % name, "src")
    return "/".join(parts)


def archive_format(src):
    lower = src.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith(TAR_SUFFIXES):
        return "tar"
    # A file pushed from the controller may have lost its suffix; look at the content.
    if zipfile.is_zipfile(src):
        return "zip"
    if tarfile.is_tarfile(src):
        return "tar"
    raise ReleaseError("src %s is neither a tar nor a zip archive" % src, "src")


def tar_members(tf):
    for info in tf.getmembers():
        path = member_path(info.name)
        if info.isdir():
            yield Member(path, "dir", info.mode, mtime=info.mtime)
        elif info.isreg():
            yield Member(path, "file", info.mode, opener=lambda info=info: tf.extractfile(info),
                         mtime=info.mtime)
        elif info.issym():
            yield Member(path, "symlink", linkname=info.linkname, mtime=info.mtime)
        elif info.islnk():
            yield Member(path, "hardlink", linkname=info.linkname)
        elif info.ischr() or info.isblk() or info.isfifo():
            raise ReleaseError("archive member %r is a device or fifo" % info.name, "src")
        else:
            raise ReleaseError("archive member %r has an unsupported type" % info.name, "src")


def zip_members(zf):
    for info in zf.infolist():
        path = member_path(info.filename)
        # Only archives made on Unix carry a trustworthy st_mode in the upper attribute bits.
        mode = (info.external_attr >> 16) if info.create_system == 3 else 0
        kind = stat.S_IFMT(mode)
        # Zip stores local time without a zone, as its writer's clock showed it.
        mtime = time.mktime(info.date_time + (0, 0, -1))
        if info.filename.endswith("/") or kind == stat.S_IFDIR:
            yield Member(path, "dir", (mode & 0o7777) or 0o755, mtime=mtime)
        elif kind == stat.S_IFLNK:
            yield Member(path, "symlink", linkname=zf.read(info).decode("utf-8", "surrogateescape"),
                         mtime=mtime)
        elif kind in (0, stat.S_IFREG):
            yield Member(path, "file", (mode & 0o7777) or 0o644,
                         opener=lambda info=info: zf.open(info), mtime=mtime)
        else:
            raise ReleaseError("archive member %r is a device, fifo or socket" % info.filename, "src")


def check_symlink(path, target):
    """A link member's target: absolute (a virtualenv's ``bin/python3 -> /usr/bin/python3``) or
    relative and inside the release (``node_modules/.bin/x -> ../x/cli.js``). Either is written
    as a link and never written through (:func:`validate_members`, ``O_NOFOLLOW``)."""
    if not target or "\0" in target:
        raise ReleaseError("symlink %r has an empty or invalid target" % path, "src")
    if target.startswith("/"):
        return
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if resolved == ".." or resolved.startswith("../"):
        raise ReleaseError("symlink %r -> %r points outside the release: a relative link must stay "
                           "inside it (it would name another place once the release is unpacked "
                           "under releases/); give an absolute target to point outside" % (path, target), "src")


def validate_members(members):
    """Refuse anything that could write or point outside the release; return the members.

    No member may be written through another symlink member, whatever the order, which keeps
    every write below real directories we created ourselves.
    """
    seen = {}
    result = []
    for m in members:
        if m.path == "":
            if m.kind != "dir":
                raise ReleaseError("an archive member replaces the release directory itself", "src")
            continue
        parts = m.path.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            kind = seen.setdefault(prefix, "dir")
            if kind != "dir":
                raise ReleaseError("archive member %r would be written through %r, which is a %s"
                                   % (m.path, prefix, kind), "src")
        old = seen.get(m.path)
        if old is not None and not (old == "dir" and m.kind == "dir"):
            raise ReleaseError("archive member %r appears twice or replaces another entry" % m.path, "src")
        if m.kind == "symlink":
            check_symlink(m.path, m.linkname)
        elif m.kind == "hardlink":
            try:
                m.linkname = member_path(m.linkname)
            except ReleaseError:
                raise ReleaseError("hard link %r -> %r points outside the release" % (m.path, m.linkname), "src")
            if seen.get(m.linkname) != "file":
                raise ReleaseError("hard link %r -> %r does not point to a regular file stored before it"
                                   % (m.path, m.linkname), "src")
        seen[m.path] = "file" if m.kind == "hardlink" else m.kind
        result.append(m)
    return result


def _safe_mode(mode, is_dir):
    # Like tarfile's "data" filter: no setuid/setgid/sticky, no group/other write, owner rw(x).
    mode = mode & 0o777 & ~0o022
    return mode | (0o700 if is_dir else 0o600)


def _keep_mtime(target, mtime):
    # The archive's times, as tar and unzip keep them: Python compares a source file's mtime
    # with the one recorded in its .pyc, and with a time of unpacking every cached .pyc of a
    # virtualenv would be stale (recompiled in memory by each process, the release being
    # read-only to the app).
    if mtime is not None:
        os.utime(target, (mtime, mtime), follow_symlinks=False)


def write_members(members, dest):
    dirs = []
    for m in members:
        target = os.path.join(dest, m.path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if m.kind == "dir":
            os.makedirs(target, exist_ok=True)
            dirs.append((target, m.mode, m.mtime))
        elif m.kind == "file":
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                stream = m.opener()
                try:
                    shutil.copyfileobj(stream, out)
                finally:
                    stream.close()
            os.chmod(target, _safe_mode(m.mode, False))
            _keep_mtime(target, m.mtime)
        elif m.kind == "symlink":
            os.symlink(m.linkname, target)
            _keep_mtime(target, m.mtime)
        else:
            os.link(os.path.join(dest, m.linkname), target, follow_symlinks=False)
    # Modes and times last, deepest first, so a read-only directory does not block its own
    # members and writing a member does not change its directory's time afterwards.
    for target, mode, mtime in reversed(dirs):
        os.chmod(target, _safe_mode(mode, True))
        _keep_mtime(target, mtime)


_MAX_LINK_DEPTH = 40


def _reaches_absolute_link(top, path, target, depth=0):
    """True when relative link ``path -> target`` leads, component by component, into a link of
    the release with an absolute target (``bin/python -> python3 -> /usr/bin/python3``)."""
    if depth > _MAX_LINK_DEPTH:
        return False
    parts = []
    for part in posixpath.join(posixpath.dirname(path), target).split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return False
            parts.pop()
            continue
        parts.append(part)
        full = os.path.join(top, *parts)
        if os.path.islink(full):
            inner = os.readlink(full)
            return inner.startswith("/") or _reaches_absolute_link(
                top, "/".join(parts), inner, depth + 1)
    return False


def links_leaving(top):
    """``(relative path, link target)`` of every relative symlink under ``top`` that, resolved
    for real, leaves it other than through a link with an absolute target: chains like
    ``x -> .`` plus ``y -> x/..`` look fine lexically but do."""
    real_top = os.path.realpath(top)
    for dirpath, dirnames, filenames in os.walk(top):
        for entry in dirnames + filenames:
            full = os.path.join(dirpath, entry)
            if not os.path.islink(full):
                continue
            target = os.readlink(full)
            if target.startswith("/"):
                continue
            real = os.path.realpath(full)
            if real == real_top or real.startswith(real_top + os.sep):
                continue
            rel = os.path.relpath(full, top)
            if not _reaches_absolute_link(top, rel, target):
                yield rel, target


def check_links_inside(top):
    for rel, target in links_leaving(top):
        raise ReleaseError("symlink %r -> %r resolves outside the release" % (rel, target), "src")


def _validate_tree(src):
    for dirpath, dirnames, filenames in os.walk(src):
        for entry in dirnames + filenames:
            full = os.path.join(dirpath, entry)
            rel = os.path.relpath(full, src)
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                check_symlink(rel, os.readlink(full))
            elif not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise ReleaseError("%s in src is a device, fifo or socket" % rel, "src")


def _read_archive(src, action):
    fmt = archive_format(src)
    try:
        if fmt == "zip":
            with zipfile.ZipFile(src) as zf:
                return action(validate_members(zip_members(zf)))
        with tarfile.open(src, "r:*") as tf:
            return action(validate_members(tar_members(tf)))
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        raise ReleaseError("cannot read archive %s: %s" % (src, e), "src")


def inspect(src):
    """The refusals of :func:`unpack` that need no writing (for check mode)."""
    if os.path.isdir(src):
        _validate_tree(src)
    else:
        _read_archive(src, lambda members: None)


def unpack(src, dest):
    """Fill the existing empty directory ``dest`` from an archive or a directory."""
    if os.path.isdir(src):
        _validate_tree(src)
        shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
    else:
        _read_archive(src, lambda members: write_members(members, dest))
    check_links_inside(dest)


# --- shared paths and ownership --------------------------------------------------------------

def shared_link_target(root, path):
    """Absolute target of ``releases/<name>/<path>``: ``ROOT/shared/<path>``. Absolute, because
    an instance sees its release at ``ROOT/current`` (plugins/module_utils/_pin.py), one level
    above ``releases/<name>``: a relative ``../../shared`` would lead out of ``ROOT`` there."""
    return os.path.join(root, "shared", path)


def legacy_shared_link_target(path):
    """The relative target releases made before 1.x had (still valid to derive from)."""
    return "/".join([".."] * (path.count("/") + 2) + ["shared", path])


def shared_links_ok(release_dir, root, shared):
    for path in shared:
        link = os.path.join(release_dir, path)
        if not os.path.islink(link) or os.readlink(link) != shared_link_target(root, path):
            return False
    return True


def link_shared(release_dir, layout, shared, uid=-1, gid=-1):
    """Replace ``release/<p>`` by a link to ``shared/<p>``; a missing ``shared/<p>`` is seeded
    from the release's own copy, or created as an empty directory."""
    real_release = os.path.realpath(release_dir)
    for path in shared:
        link = os.path.join(release_dir, path)
        want = shared_link_target(layout.root, path)
        if os.path.islink(link) and os.readlink(link) == want:
            continue
        if os.path.islink(link) and os.readlink(link) == legacy_shared_link_target(path):
            # Same directory, new spelling: replaced in one rename, so a running instance
            # never finds the link missing.
            atomic_link(link, want)
            if uid != -1 or gid != -1:
                os.lchown(link, uid, gid)
            continue
        parent = os.path.dirname(link)
        os.makedirs(parent, exist_ok=True)
        real_parent = os.path.realpath(parent)
        if real_parent != real_release and not real_parent.startswith(real_release + os.sep):
            raise ReleaseError("shared path %r leads outside the release through a symlink" % path, "shared")
        target = os.path.join(layout.shared, path)
        is_real = os.path.lexists(link) and not os.path.islink(link)
        if not os.path.lexists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if is_real and os.path.isdir(link):
                shutil.copytree(link, target, symlinks=True)
            elif is_real:
                shutil.copy2(link, target)
            else:
                os.mkdir(target, 0o755)
            chown_tree(target, uid, gid)
        if is_real and os.path.isdir(link):
            shutil.rmtree(link)
        elif os.path.lexists(link):
            os.unlink(link)
        os.symlink(want, link)
        if uid != -1 or gid != -1:
            os.lchown(link, uid, gid)


def chown_tree(top, uid, gid, check_only=False):
    """Give ``top`` and everything below it (links themselves, not followed) uid/gid."""
    if uid == -1 and gid == -1:
        return False
    changed = False
    paths = [top]
    for dirpath, dirnames, filenames in os.walk(top):
        paths.extend(os.path.join(dirpath, e) for e in dirnames + filenames)
    for path in paths:
        st = os.lstat(path)
        if (uid != -1 and st.st_uid != uid) or (gid != -1 and st.st_gid != gid):
            if check_only:
                return True
            os.lchown(path, uid, gid)
            changed = True
    return changed


# --- configuration digests, bases, bad marks -------------------------------------------------

def release_dir_name(name, files, config_digest):
    """Directory of release ``name``: ``NAME+DIGEST`` (``files_digest``) with ``config_digest``
    and at least one file, else ``NAME``."""
    if config_digest and files:
        return "%s+%s" % (name, files_digest(files))
    return name


def check_own_links(top):
    """Refuse a release whose own symlinks (its shared links aside) resolve outside it."""
    for rel, target in links_leaving(top):
        if target != legacy_shared_link_target(rel):
            raise ReleaseError("symlink %r -> %r of release %s resolves outside it; not "
                               "building from it" % (rel, target, os.path.basename(top)), "name")


def copy_release(base, dest, skip):
    """Fill the existing empty directory ``dest`` with ``base``'s tree, less its record and the
    relative paths in ``skip`` (its configuration files); symlinks are copied as links."""
    skip = set(skip) | {RECORD}

    def ignore(dirpath, names):
        rel = os.path.relpath(dirpath, base)
        return [n for n in names if posixpath.normpath(posixpath.join(rel, n)) in skip]

    shutil.copytree(base, dest, symlinks=True, ignore=ignore, dirs_exist_ok=True)


def find_base(layout, name):
    """Release directory to build a new ``NAME+DIGEST`` from when no src is given: ``NAME``, or
    else the newest (by its record's ``created``) ``NAME+DIGEST`` whose record says config_digest
    made it from release NAME. None when there is none."""
    if layout.has_release(name):
        return name
    candidates = []
    for entry in layout.list_releases():
        record = read_record(layout.release(entry))
        if (record.get("release") == name and record.get("sha256") and record.get("config_digest")
                and entry == "%s+%s" % (name, record["config_digest"])):
            candidates.append((str(record.get("created") or ""), entry))
    return max(candidates)[1] if candidates else None


def read_bad_mark(path):
    """The bad mark at ``path`` as a dict (``{"cause": text}`` when it is not a JSON object),
    or None when there is none."""
    if not os.path.lexists(path):
        return None
    if os.path.islink(path) or not os.path.isfile(path):
        raise ReleaseError("bad mark %s is not a regular file; refusing to read or remove it"
                           % path, "name")
    with open(path, "rb") as f:
        return parse_mark(f.read(1 << 16).decode("utf-8", "replace"))


def _as_text(value):
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def bad_mark_message(release, mark, path):
    failure = "failed at %s" % _as_text(mark["step"]) if mark.get("step") else "failed"
    if mark.get("cause"):
        failure += ": %s" % _as_text(mark["cause"])
    return ("release %s is marked bad: %s (%s); fix the release or its configuration (a new "
            "configuration is a new release), or clear the mark with clear_bad=true"
            % (release, failure, path))


# --- the module's actions --------------------------------------------------------------------

def _in_use(name, snap, pins, previous_too=True):
    if name == snap["current"]:
        return "current"
    if previous_too and name == snap["previous"]:
        return "previous"
    if name in pins:
        return "pinned by %s" % ", ".join(pins[name])
    return None


def _delete(path):
    # Rename first: an interrupted rmtree must not leave a half release under its real name.
    doomed = os.path.join(os.path.dirname(path), ".old-%s-%s" % (os.path.basename(path), _random()))
    os.rename(path, doomed)
    shutil.rmtree(doomed)


def _build(layout, name, fill, record, shared, files, uid, gid, replace):
    """Make ``releases/NAME`` in a temporary directory: ``fill(tmp)``, shared links, ``files``
    and the record (``record`` plus name, config_files, created); then rename it into place."""
    os.makedirs(layout.releases, exist_ok=True)
    path = layout.release(name)
    tmp = os.path.join(layout.releases, ".tmp-%s-%s" % (name, _random()))
    os.mkdir(tmp, 0o755)
    try:
        fill(tmp)
        link_shared(tmp, layout, shared, uid, gid)
        write_files(tmp, files, uid, gid, check_mode=False)
        with open(os.path.join(tmp, RECORD), "w") as f:
            json.dump(dict(record, name=name, config_files=sorted(f[0] for f in files),
                           created=datetime.datetime.now(datetime.timezone.utc).isoformat()), f)
            f.write("\n")
        os.chmod(tmp, 0o755)
        chown_tree(tmp, uid, gid)
        if replace:
            old = os.path.join(layout.releases, ".old-%s-%s" % (name, _random()))
            os.rename(path, old)
            try:
                os.rename(tmp, path)
            except OSError:
                os.rename(old, path)
                raise
            shutil.rmtree(old)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _tidy(path, layout, shared, uid, gid, check_mode):
    changed = False
    if not shared_links_ok(path, layout.root, shared):
        changed = True
        if not check_mode:
            link_shared(path, layout, shared, uid, gid)
    if chown_tree(path, uid, gid, check_only=True):
        changed = True
        if not check_mode:
            chown_tree(path, uid, gid)
    return changed


def _rewrite_refusal(release, in_use, paths, config_digest):
    if config_digest:
        return ("release %s is %s and its %s no longer match the configuration its name was "
                "derived from (changed on the host?); a release in use is never rewritten: "
                "restore them or deploy under a new name" % (release, in_use, ", ".join(paths)))
    return ("release %s is %s and writing %s would change the configuration it serves; a "
            "release in use is never rewritten: deploy the new configuration as a new release "
            "(config_digest=true names it after its configuration)"
            % (release, in_use, ", ".join(paths)))


def plan_release(layout, name, release, src, files, config_digest, snap, pins):
    """How ``releases/RELEASE`` comes about: ``{"action": "keep"}``, ``{"action": "build",
    "digest", "replace"}`` (from src) or ``{"action": "derive", "base"}`` (from another
    directory of release NAME). Raises every refusal that needs no writing, so a refused task
    changes nothing."""
    path = layout.release(release)
    exists = layout.has_release(release)
    if os.path.lexists(path) and not exists:
        raise ReleaseError("%s exists and is not a directory" % path, "name")
    digest = None
    if src is not None:
        if not os.path.exists(src):
            raise ReleaseError("src %s does not exist on the host" % src, "src")
        digest = source_digest(src)
    if exists and (src is None or read_record(path).get("sha256") == digest):
        differing = content_differs(path, files) if files else []
        in_use = _in_use(release, snap, pins)
        if differing and in_use:
            # What made the rolling deploy's clone no fallback: its release rewritten under it.
            raise ReleaseError(_rewrite_refusal(release, in_use, differing, config_digest), "files")
        return {"action": "keep"}
    if exists:
        # Swapping files under a running process is exactly what this collection avoids.
        in_use = _in_use(release, snap, pins, previous_too=False)
        if in_use:
            raise ReleaseError(
                "release %s is %s and src differs from what it was made from (sha256 %s); "
                "deploy the new content under a new name" % (release, in_use, digest), "name")
        return {"action": "build", "digest": digest, "replace": True}
    if src is not None:
        return {"action": "build", "digest": digest, "replace": False}
    base = find_base(layout, name) if config_digest else None
    if base is None:
        raise ReleaseError("release %s does not exist under %s and no src was given%s"
                           % (release, layout.releases,
                              " (nor is there a release %s or %s+* to build it from)" % (name, name)
                              if config_digest else ""), "src")
    check_own_links(layout.release(base))
    return {"action": "derive", "base": base}


def _note_config_files(path, files, uid, gid):
    """Add the paths of ``files`` to the record's config_files, left out when copying it."""
    record = read_record(path)
    known = sorted(set(record.get("config_files") or []) | set(f[0] for f in files))
    if record.get("config_files") != known:
        record["config_files"] = known
        write_record(path, record, uid, gid)


def apply_release(layout, name, release, how, src, files, config_digest, shared, uid, gid,
                  check_mode):
    """Carry out ``plan_release``'s plan; return ``(changed, paths of files written)``."""
    path = layout.release(release)
    if how["action"] == "keep":
        changed = _tidy(path, layout, shared, uid, gid, check_mode)
        written = write_files(path, files, uid, gid, check_mode)
        if written and not check_mode:
            _note_config_files(path, files, uid, gid)
        return changed or bool(written), written
    record = {"release": name}
    if config_digest and files:
        record["config_digest"] = files_digest(files)
    if how["action"] == "build":
        if check_mode:
            inspect(src)
        else:
            record.update(sha256=how["digest"], source=os.path.basename(src.rstrip("/")))
            _build(layout, release, lambda tmp: unpack(src, tmp), record, shared, files, uid, gid,
                   how["replace"])
    elif not check_mode:
        base = layout.release(how["base"])
        made = read_record(base)
        record.update(sha256=made.get("sha256"), source=made.get("source"), derived_from=how["base"])
        _build(layout, release, lambda tmp: copy_release(base, tmp, made.get("config_files") or []),
               record, shared, files, uid, gid, replace=False)
    return True, [f[0] for f in files]


def mark_served(layout, name):
    os.makedirs(layout.served, mode=0o755, exist_ok=True)
    with open(layout.served_mark(name), "a"):
        pass
    os.utime(layout.served_mark(name), None)


def recency(layout, name):
    """Sort key of a release for pruning (see _release_index.recency)."""
    return _index.recency(layout.root, name)


def switch(layout, target, plan, check_mode, move_previous):
    old = plan["current"]
    if old == target:
        return False
    old_is_release = bool(old) and "/" not in old and layout.has_release(old)
    if not check_mode:
        # Marked before the link moves: a release that served has its mark, even if interrupted.
        mark_served(layout, target)
        atomic_link(layout.current, "releases/" + target)
        if move_previous and old_is_release:
            atomic_link(layout.previous, "releases/" + old)
    plan["current"] = target
    if move_previous and old_is_release:
        plan["previous"] = old
    return True


def remove(layout, name, plan, pins, check_mode):
    path = layout.release(name)
    if not os.path.lexists(path):
        return False
    if not layout.has_release(name):
        raise ReleaseError("%s exists and is not a release directory" % path, "name")
    in_use = _in_use(name, plan, pins)
    if in_use:
        raise ReleaseError("release %s is %s; not removing it" % (name, in_use), "name")
    if not check_mode:
        _delete(path)
        _unmark_served(layout, name)
    plan["releases"].remove(name)
    return True


def prune(layout, keep, plan, pins, name, check_mode):
    def key(release):
        # The release current after this run served last, also in check mode (no mark yet).
        if release == plan["current"]:
            return (float("inf"), natural_key(release))
        return recency(layout, release)
    ordered = sorted(plan["releases"], key=key)
    protected = set(ordered[-keep:]) | set([plan["current"], plan["previous"], name]) | set(pins)
    victims = [r for r in ordered if r not in protected]
    for victim in victims:
        if not check_mode:
            _delete(layout.release(victim))
            _unmark_served(layout, victim)
        plan["releases"].remove(victim)
    return victims


def _unmark_served(layout, name):
    try:
        os.unlink(layout.served_mark(name))
    except FileNotFoundError:
        pass


def run(params, check_mode):
    """Carry out one task of the ``release`` module; return its result (without ``failed``)."""
    layout = Layout(params["root"])
    state = params.get("state") or "present"
    name = params.get("name")
    if name is not None:
        check_name(name)
    if state in ("present", "current", "absent") and not name:
        raise ReleaseError("name is required when state is %s" % state, "name")
    keep = params.get("keep") or 0
    if keep < 0:
        raise ReleaseError("keep must be 0 (no pruning) or a positive number, got %d" % keep, "keep")
    shared = normalize_shared(params.get("shared"))
    files = check_files(params.get("files"))
    if files and state not in ("present", "current"):
        raise ReleaseError("files can only be written with state present or current", "files")
    config_digest = bool(params.get("config_digest"))
    uid, gid = resolve_owner(params.get("owner"), params.get("group"))
    if os.path.lexists(layout.root) and not os.path.isdir(layout.root):
        raise ReleaseError("root %s exists and is not a directory" % layout.root, "root")

    before = layout.snapshot()
    pins = pinned_releases(layout, params.get("pin_dir") or PIN_DIR)
    plan = dict(before, releases=list(before["releases"]))
    # The directory this task is about: NAME(+DIGEST), or the rollback's target.
    release = name
    if state in ("present", "current"):
        release = release_dir_name(name, files, config_digest)
    elif state == "rollback":
        release = name or before["previous"]
        if not release:
            raise ReleaseError("there is no previous release under %s to roll back to; pass name"
                               % layout.root, "name")
    mark_path = layout.bad_mark(release) if "/" not in release else None
    mark = read_bad_mark(mark_path) if mark_path else None
    clear_mark = mark is not None and bool(params.get("clear_bad"))
    if mark is not None and params.get("refuse_bad") and not clear_mark and state != "absent":
        raise ReleaseError(bad_mark_message(release, mark, mark_path), "name", bad_mark=mark)
    if state in ("present", "current"):
        how = plan_release(layout, name, release, params.get("src"), files, config_digest,
                           before, pins)
    elif state == "rollback" and ("/" in release or not layout.has_release(release)):
        raise ReleaseError("cannot roll back to %s: no such release under %s"
                           % (release, layout.releases), "name")

    changed = False
    written = []
    if state in ("present", "current"):
        made, written = apply_release(layout, name, release, how, params.get("src"), files,
                                      config_digest, shared, uid, gid, check_mode)
        changed |= made
        if release not in plan["releases"]:
            plan["releases"].append(release)
    elif state == "absent":
        changed |= remove(layout, name, plan, pins, check_mode)
    # After the refusals and the release's own changes, before it can serve.
    if clear_mark:
        if not check_mode:
            os.unlink(mark_path)
        changed = True
    if state == "current":
        changed |= switch(layout, release, plan, check_mode, move_previous=True)
    elif state == "rollback":
        changed |= switch(layout, release, plan, check_mode, move_previous=False)
    pruned = []
    if keep:
        pruned = prune(layout, keep, plan, pins, release, check_mode)
        changed |= bool(pruned)
    plan["releases"] = sorted(plan["releases"], key=natural_key)

    after = plan if check_mode else layout.snapshot()
    diff = {"before": dict(before), "after": dict(after)}
    if mark is not None:
        diff["before"]["bad_mark"] = mark
        diff["after"]["bad_mark"] = None if clear_mark else mark
    shown = release or after["current"]
    shown = shown if shown and "/" not in shown else None
    return {
        "changed": changed,
        "release": shown,
        "release_path": layout.release(shown) if shown else None,
        "current": after["current"],
        "previous": after["previous"],
        "pruned": pruned,
        "pinned": sorted(pins),
        "files_changed": written,
        "bad_mark": mark,
        "diff": diff,
    }
