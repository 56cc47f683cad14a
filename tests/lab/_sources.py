"""Find the Debian mirror this machine already uses, so the lab never names one itself.

The lab's rootfs is built with debootstrap from the same archive apt on this machine talks to:
that archive is known to be reachable from here (CI machines often reach only one mirror or a
proxy), and no mirror host name has to live in the repository.

A machine's sources usually name its own release only (a Debian 12 machine: bookworm,
bookworm-updates, bookworm-security), while the lab may want another (bullseye, trixie). A
Debian mirror serves every release under the same URI, so when no source names the wanted suite
the URI of a source for another Debian release is used: one whose suite is a plain release name
(``bookworm``, ``stable``, ...), never ``-security`` (another archive) nor a third-party
repository whose suite merely contains a release name (``cloud-sdk-bookworm``).
"""
import glob
import os
import re

SOURCES_LIST = "/etc/apt/sources.list"
SOURCES_DIR = "/etc/apt/sources.list.d"

# URI schemes debootstrap can fetch from; cdrom: and tor+ variants it cannot.
_USABLE = re.compile(r"^(https?|file|ftp)://", re.IGNORECASE)


# Debian release code names and aliases: a source for one of these is the main Debian archive,
# which serves every other release too.
DEBIAN_SUITES = ("buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
                 "oldoldstable", "oldstable", "stable", "testing", "unstable")


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


def _matcher(suite):
    if callable(suite):
        return suite
    return lambda name: name == suite


def uris_from_deb822(text, suite):
    """URIs of the enabled ``deb`` paragraphs of a ``.sources`` file whose Suites hold ``suite``
    (a name, or a predicate on each suite name)."""
    match = _matcher(suite)
    found = []
    for para in _deb822_paragraphs(text):
        if para.get("enabled", "yes").strip().lower() == "no":
            continue
        if "deb" not in para.get("types", "").split():
            continue
        if not any(match(name) for name in para.get("suites", "").split()):
            continue
        found.extend(para.get("uris", "").split())
    return found


def uris_from_one_line(text, suite):
    """URIs of ``deb [options] URI SUITE COMPONENTS...`` lines for ``suite`` (a name, or a
    predicate on the suite name)."""
    match = _matcher(suite)
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
        if len(words) >= 2 and match(words[1]):
            found.append(words[0])
    return found


def _source_files(sources_list, sources_dir):
    files = [sources_list]
    files += sorted(glob.glob(os.path.join(sources_dir, "*.list")) +
                    glob.glob(os.path.join(sources_dir, "*.sources")),
                    key=os.path.basename)
    return files


def _first_uri(files, suite, read):
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except FileNotFoundError:
            continue
        if path not in read:
            read.append(path)
        if path.endswith(".sources"):
            uris = uris_from_deb822(text, suite)
        else:
            uris = uris_from_one_line(text, suite)
        for uri in uris:
            if _USABLE.match(uri):
                return uri.rstrip("/")
    return None


def is_debian_release(name):
    """Whether an apt suite name is a Debian release (so its source is the main archive)."""
    return name in DEBIAN_SUITES


def find_mirror(suite, sources_list=SOURCES_LIST, sources_dir=SOURCES_DIR):
    """The first usable mirror URI for ``suite``, in the order apt reads its sources.

    A source naming ``suite`` itself comes first; without one, the first source of another
    Debian release (see :data:`DEBIAN_SUITES`) gives the URI, since a Debian mirror serves every
    release. Raises :class:`MirrorNotFound` naming the files read when neither exists.
    """
    files = _source_files(sources_list, sources_dir)
    read = []
    uri = _first_uri(files, suite, read)
    if uri is None and is_debian_release(suite):
        uri = _first_uri(files, is_debian_release, read)
    if uri is not None:
        return uri
    where = ", ".join(read) or "%s or %s/" % (sources_list, sources_dir)
    raise MirrorNotFound(
        "no apt source for suite %r nor for another Debian release (%s) in %s; set LAB_MIRROR "
        "to a Debian mirror URL" % (suite, ", ".join(DEBIAN_SUITES), where))
