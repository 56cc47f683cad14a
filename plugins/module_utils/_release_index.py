# -*- coding: utf-8 -*-
# Copyright: hitless.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a release tree keeps its releases, bad marks and served marks, and how to read them
without changing anything: shared by the release module (which writes them) and by
deploy_journal_info (which reports them), so that reading a host does not load the release
module's unpacking code on every call."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import re

RECORD = ".hitless-release.json"
BAD_DIR = os.path.join(".hitless", "bad")
# One empty file per release, its mtime the last time the release was made current: pruning
# keeps the releases served most recently, whatever their names (v2+DIGEST variants sort by
# digest, git hashes at random).
SERVED_DIR = os.path.join(".hitless", "served")
_DIGITS = re.compile(r"(\d+)")


def natural_key(name):
    """Sort key so that ``v9 < v10`` and ``1.2 < 1.10``; ties broken by the plain name."""
    parts = _DIGITS.split(name)
    # re.split with a group alternates text/digits, so each index always holds the same type.
    return ([int(p) if i % 2 else p for i, p in enumerate(parts)], name)


def read_record(release_dir):
    try:
        with open(os.path.join(release_dir, RECORD)) as f:
            record = json.load(f)
    except (IOError, OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def parse_mark(text):
    """A bad mark's text as a dict (``{"cause": text}`` when it is not a JSON object)."""
    try:
        mark = json.loads(text)
    except ValueError:
        mark = None
    return mark if isinstance(mark, dict) else {"cause": text.strip()}


def recency(root, name):
    """Sort key of release ``name`` under ``root``: when it was last made current, or else
    created (its record, else its directory's mtime); then its name."""
    times = []
    try:
        times.append(os.stat(os.path.join(root, SERVED_DIR, name)).st_mtime)
    except OSError:
        pass
    release_dir = os.path.join(root, "releases", name)
    created = read_record(release_dir).get("created")
    try:
        times.append(datetime.datetime.fromisoformat(created).timestamp())
    except (AttributeError, TypeError, ValueError):
        try:
            times.append(os.stat(release_dir).st_mtime)
        except OSError:
            pass
    return (max(times or [0.0]), natural_key(name))


def release_names(root):
    """The release directories under ``root/releases``, by name."""
    releases = os.path.join(root, "releases")
    if not os.path.isdir(releases):
        return []
    return sorted((n for n in os.listdir(releases) if not n.startswith(".")
                   and os.path.isdir(os.path.join(releases, n))
                   and not os.path.islink(os.path.join(releases, n))), key=natural_key)


def bad_marks(root):
    """Every bad mark under ``root``, by release (marks of releases gone included): what the
    mark says, or a ``cause`` saying why it could not be read."""
    marks = {}
    directory = os.path.join(root, BAD_DIR)
    if not os.path.isdir(directory):
        return marks
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if os.path.islink(path) or not os.path.isfile(path):
            marks[name] = {"cause": "the mark %s is not a regular file" % path}
            continue
        try:
            with open(path, "rb") as f:
                marks[name] = parse_mark(f.read(1 << 16).decode("utf-8", "replace"))
        except (IOError, OSError) as e:
            marks[name] = {"cause": "the mark %s cannot be read: %s" % (path, e)}
    return marks


def index(root):
    """The releases under ``root``, most recently served first, and their bad marks."""
    return {"releases": sorted(release_names(root), key=lambda n: recency(root, n), reverse=True),
            "bad": bad_marks(root)}
