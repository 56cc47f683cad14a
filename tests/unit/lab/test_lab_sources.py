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


def test_no_source_for_the_suite_is_a_clear_error(tmp_path):
    paths = write(tmp_path, {"debian.sources": DEB822.replace("bookworm", "trixie")})
    with pytest.raises(_sources.MirrorNotFound, match=r"'bookworm'.*debian\.sources.*LAB_MIRROR"):
        _sources.find_mirror("bookworm", **paths)
