import os
import stat

import pytest

from ansible_collections.hitless.deploy.plugins.module_utils import _release as R
from ansible_collections.hitless.deploy.plugins.module_utils._release_files import (
    FilesError, check_files, content_differs, files_digest, write_files)


def test_check_files_normalizes_and_defaults_mode():
    assert check_files([{"path": "config/./app.ini", "content": "x"},
                        {"path": ".env", "content": "A=1\n", "mode": "0600"}]) == [
        ("config/app.ini", b"x", 0o640), (".env", b"A=1\n", 0o600)]
    assert check_files(None) == []


@pytest.mark.parametrize("entry, message", [
    ({"path": "../x", "content": ""}, "must be relative and stay inside"),
    ({"path": "/etc/passwd", "content": ""}, "must be relative and stay inside"),
    ({"path": "a/../..", "content": ""}, "must be relative and stay inside"),
    ({"path": ".", "content": ""}, "must be relative and stay inside"),
    ({"path": "", "content": ""}, "must be relative and stay inside"),
    ({"path": "a"}, "a has no content"),
    ({"path": "a", "content": "", "mode": "999"}, "not an octal permission"),
    ({"path": "a", "content": "", "mode": "01777"}, "not an octal permission"),
])
def test_check_files_refuses(entry, message):
    with pytest.raises(FilesError, match=message) as error:
        check_files([entry])
    assert error.value.param == "files"
    assert error.value.msg.startswith("files: ")


def test_check_files_refuses_the_same_path_twice():
    with pytest.raises(FilesError, match="given twice"):
        check_files([{"path": "a", "content": "1"}, {"path": "./a", "content": "2"}])


def test_write_files_writes_only_what_differs(tmp_path):
    release = tmp_path / "r1"
    release.mkdir()
    files = check_files([{"path": "config/app.ini", "content": "one\n"},
                         {"path": ".env", "content": "A=1\n", "mode": "0600"}])
    assert write_files(str(release), files, -1, -1, check_mode=True) == ["config/app.ini", ".env"]
    assert not (release / "config").exists()
    assert write_files(str(release), files, -1, -1, check_mode=False) == ["config/app.ini", ".env"]
    assert (release / "config" / "app.ini").read_text() == "one\n"
    assert stat.S_IMODE(os.stat(release / ".env").st_mode) == 0o600
    assert write_files(str(release), files, -1, -1, check_mode=False) == []

    os.chmod(release / ".env", 0o644)
    changed = check_files([{"path": "config/app.ini", "content": "two\n"},
                           {"path": ".env", "content": "A=1\n", "mode": "0600"}])
    assert write_files(str(release), changed, -1, -1, check_mode=True) == ["config/app.ini", ".env"]
    assert (release / "config" / "app.ini").read_text() == "one\n"
    assert write_files(str(release), changed, -1, -1, check_mode=False) == ["config/app.ini", ".env"]
    assert (release / "config" / "app.ini").read_text() == "two\n"
    assert stat.S_IMODE(os.stat(release / ".env").st_mode) == 0o600
    assert sorted(os.listdir(release / "config")) == ["app.ini"]  # no temporary file left


def test_write_files_into_a_release_not_there_yet_counts_all_in_check_mode(tmp_path):
    files = check_files([{"path": "a", "content": "x"}])
    assert write_files(str(tmp_path / "missing"), files, -1, -1, check_mode=True) == ["a"]


@pytest.mark.parametrize("link", [".env", "config"])
def test_write_files_never_writes_through_a_link(tmp_path, link):
    shared = tmp_path / "shared"
    (shared / "config").mkdir(parents=True)
    (shared / ".env").write_text("serving\n")
    release = tmp_path / "r1"
    release.mkdir()
    os.symlink(str(shared / link), str(release / link))
    files = check_files([{"path": ".env", "content": "new\n"},
                         {"path": "config/app.ini", "content": "new\n"}])
    with pytest.raises(FilesError, match="is a symlink"):
        write_files(str(release), files, -1, -1, check_mode=False)
    assert (shared / ".env").read_text() == "serving\n"
    assert not (shared / "config" / "app.ini").exists()


def test_write_files_refuses_a_directory_in_the_way(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(FilesError, match="not a regular file"):
        write_files(str(tmp_path), check_files([{"path": "a", "content": "x"}]), -1, -1, False)


def test_release_refuses_bad_files_before_unpacking(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("print(1)\n")
    root = tmp_path / "root"
    params = {"root": str(root), "name": "v1", "src": str(src),
              "files": [{"path": "../escape", "content": "x"}]}
    with pytest.raises(FilesError):
        R.run(params, check_mode=False)
    assert not os.path.exists(root / "releases" / "v1")


def test_release_writes_files_after_unpacking_and_then_changes_nothing(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("print(1)\n")
    params = {"root": str(tmp_path / "root"), "name": "v1", "src": str(src),
              "files": [{"path": ".env", "content": "A=1\n"}]}
    first = R.run(params, check_mode=False)
    assert first["changed"] and first["files_changed"] == [".env"]
    assert (tmp_path / "root" / "releases" / "v1" / ".env").read_text() == "A=1\n"
    again = R.run(params, check_mode=False)
    assert not again["changed"] and again["files_changed"] == []


def test_release_files_need_state_present_or_current(tmp_path):
    with pytest.raises(R.ReleaseError, match="files can only be written") as error:
        R.run({"root": str(tmp_path), "state": "rollback",
               "files": [{"path": "a", "content": "x"}]}, check_mode=False)
    assert error.value.param == "files"


def test_write_files_creates_directories_owned_like_the_release(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("changing a group needs root")
    files = check_files([{"path": "config/deep/app.ini", "content": "x"}])
    write_files(str(tmp_path), files, -1, 1, check_mode=False)
    for path in ("config", "config/deep", "config/deep/app.ini"):
        assert os.stat(tmp_path / path).st_gid == 1, path


# --- the configuration digest -------------------------------------------------------------------

def test_files_digest_is_the_documented_sha256():
    import hashlib
    files = check_files([{"path": "config/./app.ini", "content": "a=1\n"},
                         {"path": ".env", "content": "A=1\n", "mode": "600"}])
    feed = b".env\x000600\x004\x00A=1\n" + b"config/app.ini\x000640\x004\x00a=1\n"
    assert files_digest(files) == hashlib.sha256(feed).hexdigest()[:8]
    assert len(files_digest(files)) == 8


def test_files_digest_ignores_order_but_not_mode_path_or_content():
    a = {"path": "config/app.ini", "content": "a=1\n"}
    b = {"path": ".env", "content": "A=1\n", "mode": "0600"}
    digest = files_digest(check_files([a, b]))
    assert files_digest(check_files([b, a])) == digest
    assert files_digest(check_files([dict(a, path="./config//app.ini"), b])) == digest
    assert files_digest(check_files([a, dict(b, mode="600")])) == digest  # the same permission
    for other in (dict(b, mode="0640"), dict(b, content="A=2\n"), dict(b, path="env")):
        assert files_digest(check_files([a, other])) != digest
    # Lengths are part of the feed, so contents cannot slide into the next path.
    assert (files_digest(check_files([{"path": "x", "content": "1"}, {"path": "y", "content": ""}]))
            != files_digest(check_files([{"path": "x", "content": ""}, {"path": "y", "content": "1"}])))


def test_content_differs_ignores_modes_and_sees_missing_files(tmp_path):
    files = check_files([{"path": ".env", "content": "A=1\n"}, {"path": "c/app.ini", "content": "x"}])
    write_files(str(tmp_path), files, -1, -1, check_mode=False)
    assert content_differs(str(tmp_path), files) == []
    os.chmod(tmp_path / ".env", 0o600)
    assert content_differs(str(tmp_path), files) == []
    (tmp_path / ".env").write_text("A=2\n")
    (tmp_path / "c" / "app.ini").unlink()
    assert content_differs(str(tmp_path), files) == [".env", "c/app.ini"]
    os.symlink("c", str(tmp_path / "d"))
    with pytest.raises(FilesError, match="is a symlink"):
        content_differs(str(tmp_path), check_files([{"path": "d/app.ini", "content": "x"}]))
