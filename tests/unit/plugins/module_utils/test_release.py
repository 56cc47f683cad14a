"""Unit tests of the release logic on real temporary directories (no AnsibleModule)."""
import io
import json
import os
import re
import stat
import tarfile
import zipfile

import pytest

from ansible_collections.hitless.deploy.plugins.module_utils import _release as R


# --- archive builders --------------------------------------------------------------------------

def _tar(path, entries, mode="w:gz"):
    """entries: (name, kind, payload[, perm]); kind file|dir|symlink|hardlink|fifo|chr."""
    with tarfile.open(path, mode) as tf:
        for entry in entries:
            name, kind, payload = entry[:3]
            info = tarfile.TarInfo(name)
            info.mode = entry[3] if len(entry) > 3 else (0o755 if kind == "dir" else 0o644)
            data = None
            if kind == "file":
                data = payload.encode()
                info.size = len(data)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, payload
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, payload
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return str(path)


def _zip(path, entries):
    with zipfile.ZipFile(path, "w") as zf:
        for name, kind, payload in entries:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            if kind == "symlink":
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            elif kind == "fifo":
                info.external_attr = (stat.S_IFIFO | 0o644) << 16
            else:
                info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, payload)
    return str(path)


GOOD = [
    ("./", "dir", None),
    ("./app.py", "file", "print('hi')\n", 0o4755),
    ("./conf", "dir", None, 0o777),
    ("./conf/a.ini", "file", "a=1\n"),
    ("./conf/link", "symlink", "a.ini"),
    ("./top", "symlink", "conf/../app.py"),
    ("./conf/hard", "hardlink", "./conf/a.ini"),
]

MALICIOUS_TAR = {
    "absolute": [("/tmp/hitless-evil", "file", "x")],
    "dotdot": [("app/../../evil", "file", "x")],
    "through-absolute-symlink": [("etc", "symlink", "/tmp"), ("etc/hitless-evil", "file", "x")],
    "through-absolute-symlink-reversed": [("etc/hitless-evil", "file", "x"), ("etc", "symlink", "/tmp")],
    "symlink-up": [("up", "symlink", "../../outside")],
    "hardlink-absolute": [("passwd", "hardlink", "/etc/passwd")],
    "hardlink-up": [("p", "hardlink", "../outside")],
    "hardlink-later": [("p", "hardlink", "q"), ("q", "file", "x")],
    "fifo": [("pipe", "fifo", None)],
    "device": [("null", "chr", None)],
    "through-symlink": [("sub", "dir", None), ("a", "symlink", "sub"), ("a/f", "file", "x")],
    "through-symlink-reversed": [("x/y", "file", "x"), ("x", "symlink", ".")],
    "duplicate": [("f", "file", "1"), ("f", "symlink", "/etc/passwd")],
    "root-replaced": [(".", "symlink", "/")],
}


def _tree(top):
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for e in dirnames + filenames:
            full = os.path.join(dirpath, e)
            out[os.path.relpath(full, top)] = os.readlink(full) if os.path.islink(full) else None
    return out


# --- names, sorting, options --------------------------------------------------------------------

def test_natural_key_orders_numbers_by_value():
    names = ["v10", "v9", "v1", "v2.10", "v2.9", "v2", "2024-01-10", "2024-01-9"]
    assert sorted(names, key=R.natural_key) == [
        "2024-01-9", "2024-01-10", "v1", "v2", "v2.9", "v2.10", "v9", "v10"]
    assert sorted(["v01", "v1"], key=R.natural_key) == ["v01", "v1"]


@pytest.mark.parametrize("name", ["v1", "2024-05-01_1", "release v2", "v1..2"])
def test_check_name_accepts(name):
    R.check_name(name)


@pytest.mark.parametrize("name", ["", "a/b", ".", "..", ".hidden", "/abs", "a\nb"])
def test_check_name_refuses(name):
    with pytest.raises(R.ReleaseError) as err:
        R.check_name(name)
    assert err.value.param == "name"


def test_normalize_shared():
    assert R.normalize_shared(["log", "./var//run/", ".env"]) == ["log", "var/run", ".env"]
    for bad in (["/abs"], ["a/../b"], [""], ["."], ["log", "log/x"], [R.RECORD]):
        with pytest.raises(R.ReleaseError) as err:
            R.normalize_shared(bad)
        assert err.value.param == "shared"


def test_resolve_owner():
    assert R.resolve_owner(None, None) == (-1, -1)
    assert R.resolve_owner("root", "0") == (0, 0)
    for owner, group, param in (("no-such-user-hd", None, "owner"), (None, "no-such-group-hd", "group")):
        with pytest.raises(R.ReleaseError) as err:
            R.resolve_owner(owner, group)
        assert err.value.param == param


# --- unpacking ----------------------------------------------------------------------------------

def test_unpack_tar_keeps_inside_links_and_strips_dangerous_modes(tmp_path):
    src = _tar(tmp_path / "good.tar.gz", GOOD)
    dest = tmp_path / "out"
    dest.mkdir()
    R.unpack(src, str(dest))
    assert (dest / "app.py").read_text() == "print('hi')\n"
    assert stat.S_IMODE(os.stat(dest / "app.py").st_mode) == 0o755  # setuid dropped
    assert stat.S_IMODE(os.stat(dest / "conf").st_mode) == 0o755  # group/other write dropped
    assert os.readlink(dest / "conf" / "link") == "a.ini"
    assert os.stat(dest / "conf" / "hard").st_ino == os.stat(dest / "conf" / "a.ini").st_ino
    assert (dest / "top").read_text() == "print('hi')\n"


def test_unpack_zip_and_suffixless_archive(tmp_path):
    src = _zip(tmp_path / "good.zip", [("app.py", "file", "v"), ("d/x", "file", "y"), ("l", "symlink", "d/x")])
    blob = tmp_path / "source"  # what a transfer to remote tmp may look like
    blob.write_bytes(open(src, "rb").read())
    dest = tmp_path / "out"
    dest.mkdir()
    R.unpack(str(blob), str(dest))
    assert (dest / "l").read_text() == "y"
    assert R.archive_format(_tar(tmp_path / "noext", [("a", "file", "x")], mode="w:xz")) == "tar"
    (tmp_path / "junk").write_text("not an archive")
    with pytest.raises(R.ReleaseError) as err:
        R.archive_format(str(tmp_path / "junk"))
    assert err.value.param == "src"


def test_virtualenv_and_node_modules_links_unpack_as_links(tmp_path):
    # As `python3 -m venv` and `npm install` leave them: absolute links to the system
    # interpreter, relative links chaining into them, relative .bin links inside the tree.
    layout = [("venv/bin/python3", "symlink", "/usr/bin/python3"),
              ("venv/bin/python", "symlink", "python3"),
              ("venv/bin/python3.11", "symlink", "python3"),
              ("venv/lib/python3.11/site-packages/m.py", "file", "x = 1\n"),
              ("venv/lib64", "symlink", "lib"),
              ("node_modules/pkg/cli.js", "file", "//\n"),
              ("node_modules/.bin/pkg", "symlink", "../pkg/cli.js")]
    src = _tar(tmp_path / "app.tar", layout, mode="w")
    R.inspect(src)
    dest = tmp_path / "out"
    dest.mkdir()
    R.unpack(src, str(dest))
    assert os.readlink(dest / "venv" / "bin" / "python3") == "/usr/bin/python3"
    assert os.readlink(dest / "venv" / "bin" / "python") == "python3"
    assert (dest / "venv" / "lib64" / "python3.11" / "site-packages" / "m.py").read_text() == "x = 1\n"
    assert (dest / "node_modules" / ".bin" / "pkg").read_text() == "//\n"


def test_unpack_keeps_the_archive_times(tmp_path):
    # Python trusts a .pyc only while its source keeps the mtime recorded in it.
    when = 1704067200
    src = str(tmp_path / "times.tar")
    with tarfile.open(src, "w") as tf:
        for name, kind in (("pkg", tarfile.DIRTYPE), ("pkg/m.py", tarfile.REGTYPE),
                           ("pkg/link", tarfile.SYMTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.mtime = kind, when
            info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            if kind == tarfile.SYMTYPE:
                info.linkname = "m.py"
            data = b"x = 1\n" if kind == tarfile.REGTYPE else None
            info.size = len(data or b"")
            tf.addfile(info, io.BytesIO(data) if data else None)
    dest = tmp_path / "out"
    dest.mkdir()
    R.unpack(src, str(dest))
    for name in ("pkg", "pkg/m.py", "pkg/link"):
        assert os.lstat(str(dest / name)).st_mtime == when, name


def test_relative_link_leaving_says_to_use_an_absolute_target(tmp_path):
    src = _tar(tmp_path / "up.tar", [("data", "symlink", "../../shared/data")], mode="w")
    with pytest.raises(R.ReleaseError, match="a relative link must stay inside it.*absolute target"):
        R.inspect(src)


@pytest.mark.parametrize("case", sorted(MALICIOUS_TAR))
def test_malicious_tar_refused_before_writing(tmp_path, case):
    src = _tar(tmp_path / "evil.tar", MALICIOUS_TAR[case], mode="w")
    with pytest.raises(R.ReleaseError) as err:
        R.inspect(src)
    assert err.value.param == "src"
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(R.ReleaseError):
        R.unpack(src, str(dest))
    assert _tree(dest) == {}
    assert not os.path.exists("/tmp/hitless-evil")


def test_symlink_chain_escape_is_caught_after_writing(tmp_path):
    # Each link looks inside on its own: x -> . and y -> x/.. ; together y is the parent directory.
    src = _tar(tmp_path / "chain.tar", [("x", "symlink", "."), ("y", "symlink", "x/..")], mode="w")
    R.inspect(src)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(R.ReleaseError, match="resolves outside"):
        R.unpack(src, str(dest))


@pytest.mark.parametrize("entries", [
    [("../evil", "file", "x")],
    [("/abs", "file", "x")],
    [("out", "symlink", "../../../etc")],
    [("pipe", "fifo", "")],
], ids=["dotdot", "absolute", "symlink-up", "fifo"])
def test_malicious_zip_refused(tmp_path, entries):
    src = _zip(tmp_path / "evil.zip", entries)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(R.ReleaseError) as err:
        R.unpack(src, str(dest))
    assert err.value.param == "src"
    assert _tree(dest) == {}


def test_directory_source_refuses_outward_links(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("x")
    os.symlink("a", src / "ok")
    dest = tmp_path / "out"
    dest.mkdir()
    R.unpack(str(src), str(dest))
    assert (dest / "ok").read_text() == "x"
    digest = R.source_digest(str(src))
    os.symlink("../../etc", src / "bad")
    assert R.source_digest(str(src)) != digest
    with pytest.raises(R.ReleaseError, match="bad"):
        R.inspect(str(src))


# --- links, shared paths, pins ------------------------------------------------------------------

def test_atomic_link_replaces_and_leaves_no_temp(tmp_path):
    link = str(tmp_path / "current")
    R.atomic_link(link, "releases/v1")
    R.atomic_link(link, "releases/v2")
    assert os.readlink(link) == "releases/v2"
    assert sorted(os.listdir(tmp_path)) == ["current"]


def test_atomic_link_old_target_stays_until_rename(tmp_path, monkeypatch):
    link = str(tmp_path / "current")
    os.symlink("releases/v1", link)
    seen = []
    real_rename = os.rename

    def rename(src, dst):
        seen.append((os.readlink(src), dst, os.readlink(dst)))
        real_rename(src, dst)

    monkeypatch.setattr(R.os, "rename", rename)
    monkeypatch.setattr(R.os, "unlink", lambda p: pytest.fail("unlink %s during a switch" % p))
    R.atomic_link(link, "releases/v2")
    assert seen == [("releases/v2", link, "releases/v1")]
    assert os.readlink(link) == "releases/v2"


def test_link_target_refuses_real_directory(tmp_path):
    layout = R.Layout(str(tmp_path))
    (tmp_path / "current").mkdir()
    with pytest.raises(R.ReleaseError) as err:
        layout.snapshot()
    assert err.value.param == "root"


def test_link_shared_seeds_and_replaces(tmp_path):
    layout = R.Layout(str(tmp_path))
    rel = tmp_path / "releases" / "v1"
    (rel / "log").mkdir(parents=True)
    (rel / "log" / "old.log").write_text("seed")
    (rel / ".env").write_text("A=1\n")
    R.link_shared(str(rel), layout, ["log", ".env", "var/cache"])
    # Absolute: an instance sees its release at ROOT/current, where ../../shared leads out of ROOT.
    assert os.readlink(rel / "log") == str(tmp_path / "shared" / "log")
    assert os.readlink(rel / "var" / "cache") == str(tmp_path / "shared" / "var" / "cache")
    assert (tmp_path / "shared" / "log" / "old.log").read_text() == "seed"
    assert (rel / ".env").read_text() == "A=1\n"  # read through the link
    assert (tmp_path / "shared" / "var" / "cache").is_dir()
    assert R.shared_links_ok(str(rel), layout.root, ["log", ".env", "var/cache"])
    # shared content is never overwritten by a later release's copy
    rel2 = tmp_path / "releases" / "v2"
    rel2.mkdir()
    (rel2 / ".env").write_text("A=2\n")
    R.link_shared(str(rel2), layout, [".env"])
    assert (tmp_path / "shared" / ".env").read_text() == "A=1\n"


def test_legacy_relative_shared_links_are_respelt_in_place(world):
    world(name="v1", src="v1", state="current", shared=["log"])
    link = world.root / "releases" / "v1" / "log"
    os.unlink(str(link))
    os.symlink("../../shared/log", str(link))  # as releases made before the instance view
    res = world(name="v1", state="current", shared=["log"], check=True)
    assert res["changed"] and os.readlink(str(link)) == "../../shared/log"
    res = _apply_twice(world, name="v1", state="current", shared=["log"])
    assert os.readlink(str(link)) == str(world.root / "shared" / "log")
    assert [e for e in os.listdir(str(link.parent)) if e.startswith(".")] == [R.RECORD]


def test_pinned_releases_resolve_links(tmp_path):
    root = tmp_path / "root"
    (root / "releases" / "v1" / "sub").mkdir(parents=True)
    (root / "releases" / "v2").mkdir()
    os.symlink("releases/v1", root / "current")
    pins = tmp_path / "pins"
    for unit, workdir in (("demo@8081", root / "current" / "sub"), ("demo@8082", root),
                          ("other@1", "/nonexistent")):
        (pins / (unit + ".service.d")).mkdir(parents=True)
        (pins / (unit + ".service.d") / R.PIN_FILE).write_text("[Service]\nWorkingDirectory=-%s\n" % workdir)
    assert sorted(R.pinned_releases(R.Layout(str(root)), str(pins))) == ["v1"]


# --- the module's runs ---------------------------------------------------------------------------

@pytest.fixture
def world(tmp_path):
    arch = tmp_path / "archives"
    arch.mkdir()
    for v in ("v1", "v2", "v3", "v10"):
        _tar(arch / (v + ".tar.gz"), [("app.py", "file", "print(%r)\n" % v)])
    pins = tmp_path / "pins"
    pins.mkdir()

    def run(check=False, **params):
        params.setdefault("root", str(tmp_path / "root"))
        params.setdefault("pin_dir", str(pins))
        if params.get("src") in ("v1", "v2", "v3", "v10"):
            params["src"] = str(arch / (params["src"] + ".tar.gz"))
        return R.run(params, check)

    run.root = tmp_path / "root"
    run.arch = arch
    run.pins = pins
    return run


def _apply_twice(world, **params):
    first_check = world(check=True, **params)
    applied = world(**params)
    assert first_check["changed"] and applied["changed"]
    assert first_check["diff"]["after"] == applied["diff"]["after"]
    for check in (True, False):
        again = world(check=check, **params)
        assert not again["changed"], again
    return applied


def test_present_then_current_then_rollback(world):
    res = _apply_twice(world, name="v1", src="v1", state="current")
    assert res["current"] == "v1" and res["previous"] is None
    assert os.readlink(world.root / "current") == "releases/v1"
    record = json.loads((world.root / "releases" / "v1" / R.RECORD).read_text())
    assert record["sha256"] == R.sha256_file(str(world.arch / "v1.tar.gz"))

    res = _apply_twice(world, name="v2", src="v2", state="present")
    assert res["current"] == "v1" and res["diff"]["after"]["releases"] == ["v1", "v2"]

    res = _apply_twice(world, name="v2", state="current")
    assert (res["current"], res["previous"]) == ("v2", "v1")

    res = _apply_twice(world, state="rollback")
    assert (res["current"], res["previous"]) == ("v1", "v1")
    assert (world.root / "current" / "app.py").read_text() == "print('v1')\n"

    res = _apply_twice(world, state="rollback", name="v2")
    assert res["current"] == "v2"


def test_rollback_without_previous_fails(world):
    world(name="v1", src="v1", state="current")
    with pytest.raises(R.ReleaseError) as err:
        world(state="rollback")
    assert err.value.param == "name"
    with pytest.raises(R.ReleaseError):
        world(state="rollback", name="v9")


def test_same_name_other_archive(world):
    world(name="v1", src="v1", state="current")
    world(name="v2", src="v2", state="present")
    with pytest.raises(R.ReleaseError) as err:
        world(name="v1", src="v2", state="present")
    assert err.value.param == "name" and "new name" in err.value.msg
    res = world(name="v2", src="v3", state="present")  # not current: replaced
    assert res["changed"]
    assert (world.root / "releases" / "v2" / "app.py").read_text() == "print('v3')\n"
    assert sorted(os.listdir(world.root / "releases")) == ["v1", "v2"]


def test_absent_refusals(world):
    for v in ("v1", "v2", "v3"):
        world(name=v, src=v, state="current")
    (world.pins / "demo@8081.service.d").mkdir()
    (world.pins / "demo@8081.service.d" / R.PIN_FILE).write_text(
        "[Service]\nWorkingDirectory=%s\n" % (world.root / "releases" / "v1"))
    for name in ("v3", "v2", "v1"):  # current, previous, pinned
        with pytest.raises(R.ReleaseError) as err:
            world(name=name, state="absent")
        assert err.value.param == "name"
    (world.pins / "demo@8081.service.d" / R.PIN_FILE).unlink()
    _apply_twice(world, name="v1", state="absent")
    assert sorted(os.listdir(world.root / "releases")) == ["v2", "v3"]


def test_prune_keeps_the_most_recently_served_current_previous_and_pinned(world):
    for v in ("v1", "v2", "v3", "v10"):
        world(name=v, src=v, state="present")
    world(name="v2", state="current")
    world(name="v1", state="current")  # current v1, previous v2
    (world.pins / "demo@8081.service.d").mkdir()
    (world.pins / "demo@8081.service.d" / R.PIN_FILE).write_text(
        "[Service]\nWorkingDirectory=%s\n" % (world.root / "releases" / "v3"))
    # v10, last by name, was staged before v2 and v1 served, and never served itself.
    res = world(check=True, state="rollback", name="v1", keep=2)
    assert res["pruned"] == ["v10"] and res["changed"]
    (world.pins / "demo@8081.service.d" / R.PIN_FILE).unlink()
    res = _apply_twice(world, state="rollback", name="v1", keep=2)
    assert res["pruned"] == ["v3", "v10"]
    assert sorted(os.listdir(world.root / "releases"), key=R.natural_key) == ["v1", "v2"]
    assert sorted(os.listdir(world.root / ".hitless" / "served")) == ["v1", "v2"]


def test_prune_order_is_when_served_not_the_name(world):
    # Git hashes and NAME+DIGEST variants: names say nothing of age.
    for name in ("zz9", "c3", "a1", "b2"):
        world(name=name, src="v1", state="current")
    res = _apply_twice(world, state="rollback", name="b2", keep=3)
    assert res["pruned"] == ["zz9"]
    # Served again, an old release counts as recent.
    world(name="c3", state="current")
    world(name="b2", state="current")
    assert world(state="rollback", name="b2", keep=2)["pruned"] == ["a1"]


def test_failed_unpack_leaves_nothing(world):
    world(name="v1", src="v1", state="current")
    evil = _tar(world.arch / "evil.tar", MALICIOUS_TAR["symlink-up"], mode="w")
    for check in (True, False):
        with pytest.raises(R.ReleaseError):
            world(check=check, name="v2", src=evil, state="current")
    assert os.listdir(world.root / "releases") == ["v1"]
    assert os.readlink(world.root / "current") == "releases/v1"


def test_shared_and_owner_on_existing_release(world):
    world(name="v1", src="v1", state="current")
    res = _apply_twice(world, name="v1", src="v1", state="current", shared=["log"])
    assert os.readlink(world.root / "releases" / "v1" / "log") == str(world.root / "shared" / "log")
    assert res["current"] == "v1"
    res = world(name="v1", state="present", owner="nobody", group="nogroup", check=True)
    assert res["changed"]
    assert os.stat(world.root / "releases" / "v1" / "app.py").st_uid == 0


def test_missing_src_and_bad_keep(world):
    with pytest.raises(R.ReleaseError) as err:
        world(name="v1", state="present")
    assert err.value.param == "src"
    with pytest.raises(R.ReleaseError) as err:
        world(name="v1", src=str(world.arch / "nope.tgz"), state="present")
    assert err.value.param == "src"
    with pytest.raises(R.ReleaseError) as err:
        world(name="v1", src="v1", keep=-1)
    assert err.value.param == "keep"
    assert not world.root.exists()


# --- configuration digests, immutable releases, bad marks ---------------------------------------

ENV1 = [{"path": ".env", "content": "MODE=one\n"}, {"path": "config/app.ini", "content": "[a]\n"}]
ENV2 = [{"path": ".env", "content": "MODE=two\n"}]


def _dir(files):
    from ansible_collections.hitless.deploy.plugins.module_utils._release_files import (
        check_files, files_digest)
    return "v1+" + files_digest(check_files(files))


def test_release_dir_name():
    files = [("a", b"x", 0o640)]
    assert R.release_dir_name("v1", files, False) == "v1"
    assert R.release_dir_name("v1", [], True) == "v1"
    assert R.release_dir_name("v1", files, True) == "v1+" + R.files_digest(files)
    assert re.match(r"^v1\+[0-9a-f]{8}$", R.release_dir_name("v1", files, True))


def test_release_is_returned_with_or_without_config_digest(world):
    res = world(name="v1", src="v1", files=ENV1, state="present")
    assert res["release"] == "v1" and res["release_path"] == str(world.root / "releases" / "v1")
    res = world(name="v1", src="v1", state="present", config_digest=True)  # no files: NAME
    assert res["release"] == "v1" and not res["changed"]
    res = world(name="v1", src="v1", files=ENV1, state="present", config_digest=True)
    assert res["release"] == _dir(ENV1) and res["changed"]
    assert res["release_path"] == str(world.root / "releases" / _dir(ENV1))
    assert res["bad_mark"] is None


def test_same_archive_other_files_is_another_directory_and_the_serving_one_is_untouched(world):
    first = _apply_twice(world, name="v1", src="v1", files=ENV1, state="current", shared=["log"],
                         config_digest=True)
    serving = world.root / "releases" / _dir(ENV1)
    assert first["current"] == _dir(ENV1) and first["files_changed"] == [".env", "config/app.ini"]
    record = json.loads((serving / R.RECORD).read_text())
    assert record["config_files"] == [".env", "config/app.ini"]
    assert record["release"] == "v1" and record["config_digest"] == _dir(ENV1)[3:]
    before = R.sha256_tree(str(serving))

    second = _apply_twice(world, name="v1", src="v1", files=ENV2, state="current", shared=["log"],
                          config_digest=True)
    assert (second["current"], second["previous"]) == (_dir(ENV2), _dir(ENV1))
    assert second["diff"]["after"]["releases"] == sorted([_dir(ENV1), _dir(ENV2)], key=R.natural_key)
    assert R.sha256_tree(str(serving)) == before
    assert (serving / ".env").read_text() == "MODE=one\n"
    assert (world.root / "current" / ".env").read_text() == "MODE=two\n"
    assert not (world.root / "current" / "config").exists()  # from src: only its own files
    assert not [n for n in os.listdir(world.root / "releases") if n.startswith(".")]


def test_new_configuration_without_src_is_built_from_a_base(world):
    world(name="v1", src="v1", files=ENV1, state="current", shared=["log"], config_digest=True)
    base = world.root / "releases" / _dir(ENV1)
    os.symlink("app.py", str(base / "main.py"))  # a link of the release itself
    before = R.sha256_tree(str(base))

    res = _apply_twice(world, name="v1", files=ENV2, state="current", shared=["log"],
                       config_digest=True)
    made = world.root / "releases" / _dir(ENV2)
    assert res["current"] == _dir(ENV2) and res["files_changed"] == [".env"]
    assert (made / "app.py").read_text() == "print('v1')\n"
    assert os.readlink(str(made / "main.py")) == "app.py"
    assert os.readlink(str(made / "log")) == str(world.root / "shared" / "log")
    assert (made / ".env").read_text() == "MODE=two\n"
    assert not (made / "config" / "app.ini").exists()  # the base's configuration stays behind
    record = json.loads((made / R.RECORD).read_text())
    assert record["derived_from"] == _dir(ENV1) and record["config_files"] == [".env"]
    assert record["sha256"] == R.sha256_file(str(world.arch / "v1.tar.gz"))
    assert R.sha256_tree(str(base)) == before

    # The same archive again is the same release: nothing to do.
    assert not world(name="v1", src="v1", files=ENV2, state="current", shared=["log"],
                     config_digest=True)["changed"]
    # A plain NAME is the preferred base, and without files it is the release itself.
    world(name="v1", src="v1", state="present")
    env3 = [{"path": ".env", "content": "MODE=three\n"}]
    res = world(name="v1", files=env3, config_digest=True)
    assert json.loads((world.root / "releases" / res["release"] / R.RECORD).read_text())[
        "derived_from"] == "v1"


def test_building_without_src_needs_a_base_and_takes_the_newest(world):
    for check in (True, False):
        with pytest.raises(R.ReleaseError, match=r"nor is there a release v1 or v1\+\*") as err:
            world(check=check, name="v1", files=ENV1, config_digest=True)
        assert err.value.param == "src"
    assert not world.root.exists() or R.Layout(str(world.root)).list_releases() == []
    world(name="v1", src="v1", files=ENV1, config_digest=True)
    world(name="v1", src="v2", files=ENV2, config_digest=True)  # v1 rebuilt: other bytes
    world(name="v9", src="v3", files=ENV1, config_digest=True)  # another release, never a base
    env3 = [{"path": ".env", "content": "MODE=3\n"}]
    res = world(name="v1", files=env3, config_digest=True)
    made = world.root / "releases" / res["release"]
    assert json.loads((made / R.RECORD).read_text())["derived_from"] == _dir(ENV2)
    assert (made / "app.py").read_text() == "print('v2')\n"
    with pytest.raises(R.ReleaseError, match="no src was given") as err:  # no derivation without
        world(name="v1", files=ENV1)  # config_digest
    assert err.value.param == "src"


@pytest.mark.parametrize("use", ["current", "previous", "pinned"])
def test_files_of_a_release_in_use_are_never_rewritten(world, use):
    world(name="v1", src="v1", files=ENV1, state="current")
    if use == "previous":
        world(name="v2", src="v2", state="current")
    elif use == "pinned":
        world(name="v2", src="v2", state="current")
        world(name="v3", src="v3", state="current")
        (world.pins / "demo@8081.service.d").mkdir()
        (world.pins / "demo@8081.service.d" / R.PIN_FILE).write_text(
            "[Service]\nWorkingDirectory=%s\n" % (world.root / "releases" / "v1"))
    release = world.root / "releases" / "v1"
    before = R.sha256_tree(str(release))
    for files in (ENV2, ENV1 + [{"path": "extra.ini", "content": "x"}]):
        for check in (True, False):
            with pytest.raises(R.ReleaseError, match="release v1 is %s" % use) as err:
                world(check=check, name="v1", src="v1", files=files, owner="nobody")
            assert err.value.param == "files" and "never rewritten" in err.value.msg
            assert ".env" in err.value.msg or "extra.ini" in err.value.msg
    assert R.sha256_tree(str(release)) == before
    assert os.stat(release / "app.py").st_uid == os.getuid()  # owner not changed either
    # The same configuration is fine, a mode alone is fixed in place.
    assert not world(name="v1", files=ENV1)["changed"]
    res = world(name="v1", files=[dict(ENV1[0], mode="0600"), ENV1[1]])
    assert res["changed"] and res["files_changed"] == [".env"]
    assert (release / ".env").read_text() == "MODE=one\n"


def test_files_of_a_release_nothing_uses_are_rewritten_and_recorded(world):
    world(name="v1", src="v1", state="current")
    world(name="v2", src="v2", files=ENV1)
    res = world(name="v2", files=ENV2 + [{"path": "more.ini", "content": "m"}])
    assert res["changed"] and res["files_changed"] == [".env", "more.ini"]
    record = json.loads((world.root / "releases" / "v2" / R.RECORD).read_text())
    assert record["config_files"] == [".env", "config/app.ini", "more.ini"]


def test_a_tampered_release_in_use_is_refused_with_config_digest(world):
    world(name="v1", src="v1", files=ENV1, state="current", config_digest=True)
    serving = world.root / "releases" / _dir(ENV1)
    (serving / ".env").write_text("MODE=edited\n")
    with pytest.raises(R.ReleaseError, match="changed on the host") as err:
        world(name="v1", src="v1", files=ENV1, state="current", config_digest=True)
    assert err.value.param == "files" and _dir(ENV1) in err.value.msg
    assert (serving / ".env").read_text() == "MODE=edited\n"


def _mark(world, release, **mark):
    bad = world.root / ".hitless" / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    (bad / release).write_text(json.dumps(dict({"step": "post_start", "task": "Check",
                                                "cause": "GET /health: 500"}, **mark)))
    return bad / release


def test_refuse_bad_refuses_the_marked_release_only(world):
    world(name="v1", src="v1", state="current")
    mark = _mark(world, _dir(ENV1))
    args = dict(name="v1", src="v2", files=ENV1, state="current", config_digest=True,
                refuse_bad=True)
    for check in (True, False):
        with pytest.raises(R.ReleaseError) as err:
            world(check=check, **args)
        assert err.value.param == "name"
        assert err.value.msg == (
            "release %s is marked bad: failed at post_start: GET /health: 500 (%s); fix the "
            "release or its configuration (a new configuration is a new release), or clear the "
            "mark with clear_bad=true" % (_dir(ENV1), mark))
        assert err.value.details["bad_mark"]["task"] == "Check"
    assert R.Layout(str(world.root)).list_releases() == ["v1"]
    # Another configuration is another release, not refused.
    res = world(**dict(args, files=ENV2))
    assert res["changed"] and res["bad_mark"] is None
    # Without refuse_bad the mark is only reported.
    res = world(name="v1", src="v2", files=ENV1, config_digest=True)
    assert res["changed"] and res["bad_mark"]["step"] == "post_start"
    # Rolling back to a marked release is refused too, removing it is not.
    with pytest.raises(R.ReleaseError, match="is marked bad"):
        world(state="rollback", name=_dir(ENV1), refuse_bad=True)
    assert world(state="absent", name=_dir(ENV1), refuse_bad=True)["changed"]


def test_clear_bad_removes_the_mark_honestly(world):
    world(name="v1", src="v1", state="current")
    mark = _mark(world, "v2", step="upgrade")
    args = dict(name="v2", src="v2", state="current", refuse_bad=True, clear_bad=True)
    res = world(check=True, **args)
    assert res["changed"] and mark.exists() and res["bad_mark"]["step"] == "upgrade"
    assert res["diff"]["before"]["bad_mark"]["step"] == "upgrade"
    assert res["diff"]["after"]["bad_mark"] is None and res["diff"]["after"]["current"] == "v2"
    res = world(**args)
    assert res["changed"] and not mark.exists() and res["current"] == "v2"
    assert res["diff"]["after"]["bad_mark"] is None
    for check in (True, False):
        again = world(check=check, **args)
        assert not again["changed"] and again["bad_mark"] is None
        assert "bad_mark" not in again["diff"]["before"]
    # Only the mark: a release that already serves, cleared and nothing else.
    mark = _mark(world, "v2", cause="not JSON")
    mark.write_text("plain text cause\n")
    res = world(name="v2", clear_bad=True)
    assert res["changed"] and res["bad_mark"] == {"cause": "plain text cause"} and not mark.exists()


def test_clear_bad_changes_nothing_when_the_task_is_refused(world):
    world(name="v1", src="v1", files=ENV1, state="current")
    mark = _mark(world, "v1")
    with pytest.raises(R.ReleaseError) as err:
        world(name="v1", files=ENV2, clear_bad=True, refuse_bad=True)
    assert err.value.param == "files" and mark.exists()


def test_a_base_with_an_outward_link_is_refused_in_check_mode_too(world):
    world(name="v1", src="v1", files=ENV1, shared=["log"], config_digest=True)
    os.symlink("../../../etc", str(world.root / "releases" / _dir(ENV1) / "etc"))
    for check in (True, False):
        with pytest.raises(R.ReleaseError, match="'etc' -> '../../../etc' of release v1.* resolves outside"):
            world(check=check, name="v1", files=ENV2, shared=["log"], config_digest=True)
    assert os.listdir(world.root / "releases") == [_dir(ENV1)]
