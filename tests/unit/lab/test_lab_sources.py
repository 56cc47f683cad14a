"""Reading the Debian mirror from apt's sources (deb822 and one-line formats)."""
import pytest

import _sources

DEB822 = """\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def write(tmp_path, files):
    sources_dir = tmp_path / "sources.list.d"
    sources_dir.mkdir()
    for name, text in files.items():
        target = tmp_path / name if name == "sources.list" else sources_dir / name
        target.write_text(text)
    return {"sources_list": str(tmp_path / "sources.list"), "sources_dir": str(sources_dir)}


def test_deb822_suite_must_match_exactly(tmp_path):
    paths = write(tmp_path, {"debian.sources": DEB822})
    assert _sources.find_mirror("bookworm", **paths) == "http://mirror.example/debian"
    assert _sources.find_mirror("bookworm-security", **paths) == \
        "http://mirror.example/debian-security"


def test_deb822_skips_disabled_deb_src_and_folded_fields(tmp_path):
    text = ("Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
            "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\n\n"
            "Types: deb\nURIs: https://on.example/debian/\nSuites: bookworm\n"
            "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n Suites: trap\n")
    paths = write(tmp_path, {"a.sources": text})
    assert _sources.find_mirror("bookworm", **paths) == "https://on.example/debian"


def test_one_line_format_with_options_and_tabs(tmp_path):
    text = ("# deb http://commented.example/debian bookworm main\n"
            "deb-src http://src.example/debian bookworm main\n"
            "deb http://other.example/debian cloud-sdk-bookworm main\n"
            "deb [arch=amd64 signed-by=/k.gpg]\thttp://line.example/debian\tbookworm main\n")
    paths = write(tmp_path, {"sources.list": text})
    assert _sources.find_mirror("bookworm", **paths) == "http://line.example/debian"


def test_sources_list_first_then_directory_in_name_order(tmp_path):
    paths = write(tmp_path, {
        "sources.list": "deb cdrom:[Debian 12]/ bookworm main\n",
        "b.sources": DEB822.replace("mirror.example", "b.example"),
        "a.list": "deb http://a.example/debian bookworm main\n",
        "c.list.disabled-by-farm": "deb http://disabled.example/debian bookworm main\n",
    })
    assert _sources.find_mirror("bookworm", **paths) == "http://a.example/debian"


def test_no_source_for_any_debian_release_is_a_clear_error(tmp_path):
    text = DEB822.replace("bookworm-security", "x").replace("bookworm", "cloud-sdk-bookworm")
    paths = write(tmp_path, {"debian.sources": text})
    with pytest.raises(_sources.MirrorNotFound, match=r"'bookworm'.*debian\.sources.*LAB_MIRROR"):
        _sources.find_mirror("bookworm", **paths)


def test_another_release_gives_the_mirror_for_a_suite_no_source_names(tmp_path):
    """A Debian 12 machine names bookworm only; its mirror serves bullseye and trixie too."""
    paths = write(tmp_path, {"debian.sources": DEB822})
    assert _sources.find_mirror("trixie", **paths) == "http://mirror.example/debian"
    assert _sources.find_mirror("bullseye", **paths) == "http://mirror.example/debian"


def test_a_source_for_the_suite_itself_wins_over_another_release(tmp_path):
    paths = write(tmp_path, {
        "a.sources": DEB822,
        "b.list": "deb http://trixie.example/debian trixie main\n",
    })
    assert _sources.find_mirror("trixie", **paths) == "http://trixie.example/debian"
    assert _sources.find_mirror("bookworm", **paths) == "http://mirror.example/debian"


def test_only_a_plain_debian_release_stands_in(tmp_path):
    """Never the security archive, -updates/-backports, nor a third-party suite that merely
    contains a release name."""
    paths = write(tmp_path, {
        "sources.list": ("deb http://other.example/apt cloud-sdk-bookworm main\n"
                         "deb http://sec.example/debian-security bookworm-security main\n"
                         "deb http://upd.example/debian bookworm-updates main\n"
                         "deb http://stable.example/debian stable main\n"),
    })
    assert _sources.find_mirror("bullseye", **paths) == "http://stable.example/debian"


def test_the_security_archive_never_stands_in(tmp_path):
    paths = write(tmp_path, {"sources.list": "deb http://sec.example/debian-security "
                                             "bookworm-security main\n"})
    with pytest.raises(_sources.MirrorNotFound, match=r"'trixie'.*another Debian release"):
        _sources.find_mirror("trixie", **paths)


def test_a_suite_that_is_not_a_debian_release_needs_its_own_source(tmp_path):
    paths = write(tmp_path, {"debian.sources": DEB822})
    with pytest.raises(_sources.MirrorNotFound, match=r"'jammy'"):
        _sources.find_mirror("jammy", **paths)
