# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The clone pin drop-in: the one place that writes it and the one place that reads it.

``app_instance`` writes the drop-in; ``release`` reads it to keep pinned releases from being
pruned. Both must agree on every detail (``%%`` escaping, the ``-`` prefix), hence one module.
Pure stdlib; runs on the target (Python >= 3.9).
"""

import os

DROP_IN = "hitless-pin.conf"
RUNTIME_DIR = "/run/systemd/system"


def escape(value):
    # Unit files expand %-specifiers; a literal % must be doubled.
    return value.replace("%", "%%")


def drop_in_content(real, environment_file):
    """The drop-in pinning an instance to the release at real path ``real``."""
    release = os.path.basename(real).replace("\\", "\\\\").replace('"', '\\"')
    return "\n".join([
        "# Managed by hitless.deploy.app_instance: pins this instance to one release.",
        "[Service]",
        "WorkingDirectory=%s" % escape(real),
        # An empty assignment drops the template's EnvironmentFile= (which follows current).
        "EnvironmentFile=",
        "EnvironmentFile=-%s" % escape(os.path.join(real, environment_file)),
        'Environment="HITLESS_RELEASE=%s"' % escape(release),
        "",
    ])


def _working_directory(value):
    if not value:
        return None  # an empty assignment resets the setting
    # "-" only tells systemd to tolerate a missing directory; it is not part of the path.
    if value.startswith("-"):
        value = value[1:]
    return value.replace("%%", "%") or None


def pinned_to(content):
    """The ``WorkingDirectory=`` a drop-in sets, as systemd reads it, or None.

    Like systemd: only the ``[Service]`` section counts, blanks around ``=`` and comments are
    ignored, the last assignment wins and an empty one resets it.
    """
    if content is None:
        return None
    value, section = None, None
    for line in content.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and "=" in line:
            key, raw = line.split("=", 1)
            if key.strip() == "WorkingDirectory":
                value = _working_directory(raw.strip())
    return value
