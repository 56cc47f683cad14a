"""Find the Debian mirror this machine already uses, so the lab never names one itself.

The lab's rootfs is built with debootstrap from the same archive apt on this machine talks to:
that archive is known to be reachable from here (CI machines often reach only one mirror or a
proxy), and no mirror host name has to live in the repository.
"""
import glob
import os
import re

SOURCES_LIST = "/etc/apt/sources.list"
SOURCES_DIR = "/etc/apt/sources.list.d"

# URI schemes debootstrap can fetch from; cdrom: and tor+ variants it cannot.
_USABLE = re.compile(r"^(https?|file|ftp)://", re.IGNORECASE)


class MirrorNotFound(Exception):
    pass


def _deb822_paragraphs(text):
    """Yield each deb822 paragraph as a dict of lower-cased field name to value."""
    fields, name = {}, None
    for line in text.splitlines() + [""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if fields:
                yield fields
            fields, name = {}, None
            continue
        if line[0] in " \t":
            # Continuation of a multi-line field (Signed-By often carries a whole key).
            if name is not None:
                fields[name] += "\n" + line.strip()
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        name = key.strip().lower()
        fields[name] = value.strip()


def uris_from_deb822(text, suite):
    """URIs of the enabled ``deb`` paragraphs of a ``.sources`` file whose Suites hold ``suite``."""
    found = []
    for para in _deb822_paragraphs(text):
        if para.get("enabled", "yes").strip().lower() == "no":
            continue
        if "deb" not in para.get("types", "").split():
            continue
        if suite not in para.get("suites", "").split():
            continue
        found.extend(para.get("uris", "").split())
    return found


def uris_from_one_line(text, suite):
    """URIs of ``deb [options] URI SUITE COMPONENTS...`` lines for ``suite``."""
    found = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        words = line.split(None, 1)
        if len(words) < 2 or words[0] != "deb":
            continue
        rest = words[1]
        if rest.startswith("["):
            # Options such as [arch=amd64 signed-by=...] may hold spaces inside the brackets.
            end = rest.find("]")
            if end < 0:
                continue
            rest = rest[end + 1:].strip()
        words = rest.split()
        if len(words) >= 2 and words[1] == suite:
            found.append(words[0])
    return found


def find_mirror(suite, sources_list=SOURCES_LIST, sources_dir=SOURCES_DIR):
    """The first usable mirror URI for ``suite``, in the order apt reads its sources.

    Raises :class:`MirrorNotFound` naming the files read when none matches.
    """
    files = [sources_list]
    files += sorted(glob.glob(os.path.join(sources_dir, "*.list")) +
                    glob.glob(os.path.join(sources_dir, "*.sources")),
                    key=os.path.basename)
    read = []
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except FileNotFoundError:
            continue
        read.append(path)
        if path.endswith(".sources"):
            uris = uris_from_deb822(text, suite)
        else:
            uris = uris_from_one_line(text, suite)
        for uri in uris:
            if _USABLE.match(uri):
                return uri.rstrip("/")
    raise MirrorNotFound(
        "no apt source for suite %r in %s; set LAB_MIRROR to a Debian mirror URL"
        % (suite, ", ".join(read) or "%s or %s/" % (sources_list, sources_dir)))
