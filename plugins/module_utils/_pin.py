# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The instance's view of the app root, and the clone pin drop-in that sets it to one release.

Every instance of the app's template unit runs in its own mount namespace in which the app
root ``ROOT`` holds only ``ROOT/current`` (a read-only bind mount of one release directory)
and ``ROOT/shared``. systemd builds that view once, when the instance starts, so whatever path
the instance uses through ``current`` (its ``ExecStart``, an interpreter whose prefix lies
under ``current``, a worker that re-imports, a relative path) leads into the release it started
on, however often ``current`` moves on the host afterwards. The template binds the release
``current`` names at start (the original); the pin drop-in binds one named release (a clone).

``app_instance`` writes the drop-in; ``release`` reads it to keep pinned releases from being
pruned. Both must agree on every detail (``%%`` escaping, the ``-`` prefix), hence one module.
Pure stdlib; runs on the target (Python >= 3.9).
"""

import os

DROP_IN = "hitless-pin.conf"
RUNTIME_DIR = "/run/systemd/system"
# Characters a path in BindPaths= would need quoting or escaping for; release and root paths
# with them are refused rather than escaped, so the parser below stays exact.
UNSAFE = frozenset(" \t\"'\\:")


def escape(value):
    # Unit files expand %-specifiers; a literal % must be doubled.
    return value.replace("%", "%%")


def unsafe_path(path):
    """True when ``path`` cannot be written into a unit file's mount settings as it is."""
    return any(c in UNSAFE or ord(c) < 32 for c in path)


def view_lines(root, release_source):
    """The mount settings of an instance's view of ``root`` with ``release_source`` as current.

    Each list is reset first, so a drop-in's view replaces the template's instead of adding to
    it. BindPaths= and BindReadOnlyPaths= are one list in systemd: the empty BindReadOnlyPaths=
    clears both, so BindPaths= comes after it (seen with systemd 252). ``-``: a missing shared
    directory is tolerated, as the template tolerates it.
    """
    root = root.rstrip("/") or "/"
    return [
        "TemporaryFileSystem=",
        "TemporaryFileSystem=%s:ro" % escape(root),
        "BindReadOnlyPaths=",
        "BindReadOnlyPaths=%s:%s" % (escape(release_source), escape(os.path.join(root, "current"))),
        "BindPaths=-%s" % escape(os.path.join(root, "shared")),
    ]


def drop_in_content(real, environment_file, root=None):
    """The drop-in pinning an instance to the release at real path ``real`` under ``root``."""
    root = root or os.path.dirname(os.path.dirname(real))
    release = os.path.basename(real).replace("\\", "\\\\").replace('"', '\\"')
    return "\n".join(
        ["# Managed by hitless.deploy.app_instance: pins this instance to one release.",
         "[Service]"]
        + view_lines(root, real)
        + [
            # An empty assignment drops the template's EnvironmentFile= (which follows current).
            "EnvironmentFile=",
            "EnvironmentFile=-%s" % escape(os.path.join(real, environment_file)),
            'Environment="HITLESS_RELEASE=%s"' % escape(release),
            "",
        ])


def _unescape(value):
    # "-" only tells systemd to tolerate a missing path; it is not part of it.
    if value.startswith("-"):
        value = value[1:]
    return value.replace("%%", "%") or None


def _current_source(raw, sources):
    """Fold one ``BindReadOnlyPaths=`` assignment into ``sources`` (target -> source)."""
    if not raw:
        sources.clear()  # an empty assignment resets the list
        return
    for item in raw.split():
        parts = item.split(":")
        source = _unescape(parts[0])
        target = _unescape(parts[1]) if len(parts) > 1 and parts[1] else source
        if source and target:
            sources[target] = source


def pinned_to(content):
    """The release directory a drop-in pins, as systemd reads it, or None.

    Like systemd: only the ``[Service]`` section counts, blanks around ``=`` and comments are
    ignored, the last assignment wins and an empty one resets it. The pin is the source of the
    read-only bind onto ``.../current``; a drop-in written before the view existed pinned by
    ``WorkingDirectory=``, which still counts, so its release is not pruned under it.
    """
    if content is None:
        return None
    workdir, sources, section = None, {}, None
    for line in content.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and "=" in line:
            key, raw = line.split("=", 1)
            key, raw = key.strip(), raw.strip()
            if key == "WorkingDirectory":
                workdir = _unescape(raw) if raw else None
            elif key in ("BindReadOnlyPaths", "BindPaths"):
                # One list in systemd: an empty assignment of either resets both.
                _current_source(raw, sources)
    for target, source in sources.items():
        if os.path.basename(target.rstrip("/")) == "current":
            return source
    return workdir
