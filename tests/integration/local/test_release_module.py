"""hitless.deploy.release run for real (ansible CLI, local connection) against a temp dir.

``src`` is a controller path, so the action plugin's push to the remote tmp is exercised too.
"""
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import zipfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _ansible import BIN, HERE, parse_result, run_module  # noqa: E402

EVIL_OUTSIDE = "hitless-evil-outside"


def _tar(path, entries, mode="w:gz"):
    with tarfile.open(str(path), mode) as tf:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.mode = 0o755 if kind == "dir" else 0o644
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
    with zipfile.ZipFile(str(path), "w") as zf:
        for name, kind, payload in entries:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            kind_bits = stat.S_IFLNK if kind == "symlink" else stat.S_IFREG
            info.external_attr = (kind_bits | 0o644) << 16
            zf.writestr(info, payload)
    return str(path)


def _app(version):
    return [("app.py", "file", "VERSION = %r\n" % version), ("log", "dir", None),
            ("log/boot.log", "file", "packed\n")]


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    d = tmp_path_factory.mktemp("archives")
    out = {v: _tar(d / (v + ".tar.gz"), _app(v)) for v in ("v1", "v3", "v9", "v10")}
    out["v2"] = _zip(d / "v2.zip", [(n, k, p) for n, k, p in _app("v2") if k == "file"])
    out["dir"] = str(d / "tree")
    os.makedirs(os.path.join(out["dir"], "sub"))
    with open(os.path.join(out["dir"], "app.py"), "w") as f:
        f.write("VERSION = 'tree'\n")
    os.symlink("../app.py", os.path.join(out["dir"], "sub", "app.py"))
    outside = "../../../../../../../../tmp/" + EVIL_OUTSIDE
    evil = {
        "absolute-path": _tar(d / "abs.tar", [("/tmp/" + EVIL_OUTSIDE, "file", "x")], "w"),
        "dotdot-path": _tar(d / "dotdot.tgz", [("a/../../" + EVIL_OUTSIDE, "file", "x")]),
        "symlink-outward": _tar(d / "symout.tar.xz", [("link", "symlink", outside)], "w:xz"),
        # An absolute link is kept as a link (a virtualenv's python3): writing through it is not.
        "through-absolute-symlink": _tar(d / "symabs.tar.bz2", [
            ("tmp", "symlink", "/tmp"), ("tmp/" + EVIL_OUTSIDE, "file", "x")], "w:bz2"),
        "write-through-symlink": _tar(d / "through.tar", [("l", "symlink", "."), ("l/x", "file", "x")], "w"),
        "symlink-chain": _tar(d / "chain.tar", [("x", "symlink", "."), ("y", "symlink", "x/..")], "w"),
        "hardlink-outward": _tar(d / "hard.tar", [("passwd", "hardlink", "/etc/passwd")], "w"),
        "device": _tar(d / "dev.tar", [("null", "chr", None)], "w"),
        "zip-dotdot": _zip(d / "dotdot.zip", [("../" + EVIL_OUTSIDE, "file", "x")]),
        "zip-symlink-outward": _zip(d / "symout.zip", [("link", "symlink", "../../../etc/passwd")]),
    }
    out["venv"] = _tar(d / "venv.tar.gz", [
        ("venv/bin/python3", "symlink", "/usr/bin/python3"),
        ("venv/bin/python", "symlink", "python3"),
        ("app.py", "file", "VERSION = 'venv'\n"),
    ])
    out["evil"] = evil
    return out


def release(root, check=False, **args):
    args["root"] = str(root)
    return run_module("release", args, check=check, diff=True)


def converge(root, **args):
    """check (changed) -> apply (changed) -> check -> apply (neither changed)."""
    first = release(root, check=True, **args)
    assert not first.failed and first.changed, first
    applied = release(root, **args)
    assert not applied.failed and applied.changed, applied
    assert first["diff"]["after"] == applied["diff"]["after"]
    for check in (True, False):
        again = release(root, check=check, **args)
        assert not again.failed and not again.changed, again
        assert again["diff"]["before"] == again["diff"]["after"] == applied["diff"]["after"]
    return applied


def listing(root):
    return sorted(os.listdir(os.path.join(str(root), "releases")))


def test_deploy_switch_rollback_prune(tmp_path, archives):
    root = tmp_path / "srv"
    res = converge(root, name="v1", src=archives["v1"], state="current", shared=["log"])
    assert (res["current"], res["previous"]) == ("v1", None)
    assert os.readlink(str(root / "current")) == "releases/v1"
    # Absolute: an instance sees its release at ROOT/current, one level above releases/v1.
    assert os.readlink(str(root / "releases/v1/log")) == str(root / "shared/log")
    assert (root / "shared/log/boot.log").read_text() == "packed\n"

    res = converge(root, name="v2", src=archives["v2"], state="present", shared=["log"])
    assert res["current"] == "v1" and res["diff"]["after"]["releases"] == ["v1", "v2"]
    assert res["release_path"] == str(root / "releases/v2")

    res = converge(root, name="v2", state="current")
    assert (res["current"], res["previous"]) == ("v2", "v1")
    assert (root / "current/app.py").read_text() == "VERSION = 'v2'\n"

    res = converge(root, state="rollback")
    assert (res["current"], res["previous"]) == ("v1", "v1")
    assert (root / "current/app.py").read_text() == "VERSION = 'v1'\n"

    for v in ("v3", "v9"):
        assert release(root, name=v, src=archives[v]).changed
    # kept: v10 (current, so served last) and v9 (made last); v1 is previous; v2 and v3 go
    res = converge(root, name="v10", src=archives["v10"], state="current", keep=2)
    assert res["pruned"] == ["v2", "v3"]
    assert (res["current"], res["previous"]) == ("v10", "v1")
    assert listing(root) == ["v1", "v10", "v9"]

    refused = release(root, name="v10", state="absent")
    assert refused.failed and "v10 is current" in refused["msg"]
    converge(root, name="v9", state="absent")
    assert listing(root) == ["v1", "v10"]


def test_same_name_with_other_content_is_refused_when_current(tmp_path, archives):
    root = tmp_path / "srv"
    assert release(root, name="v1", src=archives["v1"], state="current").changed
    for check in (True, False):
        res = release(root, check=check, name="v1", src=archives["v3"], state="current")
        assert res.failed and res["msg"].startswith("name:") and "new name" in res["msg"], res
    assert (root / "current/app.py").read_text() == "VERSION = 'v1'\n"
    assert listing(root) == ["v1"]


def test_a_virtualenv_with_its_absolute_interpreter_link_deploys(tmp_path, archives):
    root = tmp_path / "srv"
    converge(root, name="venv", src=archives["venv"], state="current")
    assert os.readlink(str(root / "releases/venv/venv/bin/python3")) == "/usr/bin/python3"
    assert os.readlink(str(root / "releases/venv/venv/bin/python")) == "python3"
    assert (root / "current/app.py").read_text() == "VERSION = 'venv'\n"


def test_directory_sources(tmp_path, archives):
    root = tmp_path / "srv"
    # On the controller: packed by the action plugin; the pack must be stable to be idempotent.
    res = converge(root, name="t1", src=archives["dir"], state="current")
    assert (root / "releases/t1/sub/app.py").read_text() == "VERSION = 'tree'\n"
    assert os.path.islink(str(root / "releases/t1/sub/app.py"))
    # Already on the host.
    for changed in (True, False):
        res = release(root, name="t2", src=archives["dir"], remote_src=True)
        assert not res.failed and res.changed == changed, res
    assert (root / "releases/t2/app.py").read_text() == "VERSION = 'tree'\n"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, archives):
    root = tmp_path_factory.mktemp("evil") / "srv"
    assert release(root, name="v1", src=archives["v1"], state="current").changed
    return root


# Every kind of refusal is unit-tested in check mode (inspect) and apply mode (unpack); here each
# runs once for real, and two also in check mode, to keep the suite's number of CLI runs down.
CHECKED_TOO = ("dotdot-path", "zip-symlink-outward")


@pytest.mark.parametrize("case", [
    "absolute-path", "dotdot-path", "symlink-outward", "through-absolute-symlink", "write-through-symlink",
    "symlink-chain", "hardlink-outward", "device", "zip-dotdot", "zip-symlink-outward",
])
def test_malicious_archive_is_refused(deployed, archives, case):
    for check in ((True, False) if case in CHECKED_TOO else (False,)):
        res = release(deployed, check=check, name="evil", src=archives["evil"][case], state="current")
        assert res.failed and res["msg"].startswith("src:"), res
    assert listing(deployed) == ["v1"]
    assert os.readlink(str(deployed / "current")) == "releases/v1"
    assert not os.path.lexists("/tmp/" + EVIL_OUTSIDE)
    assert not os.path.lexists(str(deployed / EVIL_OUTSIDE))


@pytest.mark.parametrize("args,param", [
    ({"name": "../x", "state": "current"}, "name"),
    ({"name": ".hidden"}, "name"),
    ({"name": "v1/x", "state": "absent"}, "name"),
    ({"state": "current"}, "name"),
    ({"name": "v2", "src": "/nonexistent/v2.tar.gz"}, "src"),
    ({"name": "v2", "src": "/nonexistent/v2.tar.gz", "remote_src": True}, "src"),
    ({"name": "v2", "shared": ["../etc"]}, "shared"),
    ({"name": "v1", "keep": -1}, "keep"),
])
def test_bad_input_fails_naming_the_parameter(deployed, args, param):
    for check in ((True, False) if param == "name" else (False,)):
        res = release(deployed, check=check, **args)
        assert res.failed and param in res["msg"], res
    assert listing(deployed) == ["v1"]
    assert os.readlink(str(deployed / "current")) == "releases/v1"


def test_templates_and_files_are_written_into_the_release(tmp_path, archives):
    template = tmp_path / "app.ini.j2"
    template.write_text("[app]\nhost = {{ inventory_hostname }}\n")
    root = tmp_path / "srv"
    # Another group than the one running the test: ownership must converge on the first run.
    args = {"name": "v1", "src": archives["v1"], "group": "1",
            "templates": [{"src": str(template), "dest": "config/app.ini"}],
            "files": [{"path": ".env", "content": "TOKEN=hush-4711\n", "mode": "0600"}]}
    applied = converge(root, **args)
    assert applied["files_changed"] == [".env", "config/app.ini"]
    path = root / "releases" / "v1"
    assert (path / "config" / "app.ini").read_text() == "[app]\nhost = localhost\n"
    assert stat.S_IMODE(os.stat(path / "config" / "app.ini").st_mode) == 0o640
    assert (path / ".env").read_text() == "TOKEN=hush-4711\n"
    assert stat.S_IMODE(os.stat(path / ".env").st_mode) == 0o600
    assert "hush-4711" not in json.dumps(applied)

    template.write_text("[app]\nhost = {{ inventory_hostname }}\nport = 8080\n")
    changed = release(root, **args)  # nothing uses v1 yet: rewritten
    assert changed.changed and changed["files_changed"] == ["config/app.ini"], changed
    assert (path / "config" / "app.ini").read_text().endswith("port = 8080\n")

    # Once it serves, never again: another configuration is another release.
    assert release(root, name="v1", state="current").changed
    template.write_text("[app]\nhost = {{ inventory_hostname }}\nport = 9090\n")
    for check in (True, False):
        refused = release(root, check=check, **args)
        assert refused.failed and refused["param"] == "files", refused
        assert refused["msg"].startswith("files: release v1 is current") and "never rewritten" in refused["msg"]
    assert (path / "config" / "app.ini").read_text().endswith("port = 8080\n")
    staged = release(root, config_digest=True, **args)
    assert staged.changed and staged["release"].startswith("v1+"), staged
    assert (root / "releases" / staged["release"] / "config/app.ini").read_text().endswith("port = 9090\n")
    assert (path / "config" / "app.ini").read_text().endswith("port = 8080\n")


def test_templates_bad_input_changes_nothing(tmp_path, archives):
    root = tmp_path / "srv"
    for extra, param in (({"templates": [{"src": str(tmp_path / "none.j2"), "dest": "a"}]},
                          "templates"),
                         ({"templates": [{"dest": "a"}]}, "templates"),
                         ({"files": [{"path": "../a", "content": "x"}]}, "files")):
        res = release(root, name="v1", src=archives["v1"], **extra)
        assert res.failed and res["param"] == param and res["msg"].startswith(param), res
        assert not os.path.exists(root / "releases" / "v1")


def tree_sha256(top):
    """Names, modes, link targets, contents, inodes and mtimes of a tree: any write shows."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(str(top)):
        dirnames.sort()
        for entry in sorted(dirnames + filenames):
            full = os.path.join(dirpath, entry)
            st = os.lstat(full)
            digest.update(("%s %o %d %d %d\n" % (os.path.relpath(full, str(top)), st.st_mode,
                                                 st.st_uid, st.st_gid, st.st_ino)).encode())
            if stat.S_ISLNK(st.st_mode):
                digest.update(os.readlink(full).encode())
            elif stat.S_ISREG(st.st_mode):
                digest.update(("%d\n" % st.st_mtime_ns).encode())
                with open(full, "rb") as f:
                    digest.update(f.read())
    return digest.hexdigest()


def test_same_archive_other_configuration_is_another_release(tmp_path, archives):
    root = tmp_path / "srv"
    base = {"name": "v1", "src": archives["v1"], "state": "current", "shared": ["log"],
            "config_digest": True, "refuse_bad": True}
    first = converge(root, files=[{"path": ".env", "content": "MODE=one\n"}], **base)
    one = first["release"]
    assert one.startswith("v1+") and len(one) == len("v1+") + 8 and first["current"] == one
    assert first["release_path"] == str(root / "releases" / one)
    serving = root / "releases" / one
    before = tree_sha256(serving)

    second = converge(root, files=[{"path": ".env", "content": "MODE=two\n"}], **base)
    two = second["release"]
    assert two != one and (second["current"], second["previous"]) == (two, one)
    assert listing(root) == sorted([one, two])
    assert tree_sha256(serving) == before
    assert (serving / ".env").read_text() == "MODE=one\n"
    assert (root / "current/.env").read_text() == "MODE=two\n"

    # The same code with a third configuration, no src: built from a directory of v1.
    third_args = dict(base)
    third_args.update(src=None, state="present")
    third = release(root, files=[{"path": ".env", "content": "MODE=three\n"}], **third_args)
    assert third.changed and third["files_changed"] == [".env"], third
    assert (root / "releases" / third["release"] / "app.py").read_text() == "VERSION = 'v1'\n"
    assert tree_sha256(serving) == before

    # A mark on the second: refused before anything is done, until cleared.
    bad = root / ".hitless" / "bad"
    bad.mkdir(parents=True)
    (bad / two).write_text(json.dumps({"step": "post_start", "task": "Check", "cause": "HTTP 500"}))
    refused = release(root, files=[{"path": ".env", "content": "MODE=two\n"}], **base)
    assert refused.failed and refused["param"] == "name", refused
    assert refused["msg"].startswith("name: release %s is marked bad: failed at post_start: HTTP 500" % two)
    assert refused["bad_mark"]["task"] == "Check"
    cleared = release(root, files=[{"path": ".env", "content": "MODE=two\n"}], clear_bad=True, **base)
    assert cleared.changed and cleared["bad_mark"]["cause"] == "HTTP 500", cleared
    assert not (bad / two).exists()
    assert tree_sha256(serving) == before


def playbook(book_dir, cwd, args):
    """Run one release task from a playbook in ``book_dir`` with ansible-playbook in ``cwd``."""
    book = os.path.join(str(book_dir), "deploy.yml")
    with open(book, "w") as f:
        json.dump([{"hosts": "localhost", "gather_facts": False,
                    "tasks": [{"hitless.deploy.release": args}]}], f)
    env = dict(os.environ, ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_CALLBACK_PLUGINS=os.path.join(HERE, "callback_plugins"),
               ANSIBLE_STDOUT_CALLBACK="result_json", ANSIBLE_NOCOLOR="1",
               ANSIBLE_DEPRECATION_WARNINGS="False")
    proc = subprocess.run(
        [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", "ansible_python_interpreter=" + sys.executable, book],
        cwd=str(cwd), capture_output=True, text=True, timeout=300, env=env, check=False)
    return parse_result(proc.stdout, "localhost", proc)


def test_relative_src_is_found_in_the_directory_ansible_playbook_runs_in(tmp_path, archives):
    work, books = tmp_path / "work", tmp_path / "books"
    (work / "dist").mkdir(parents=True)
    books.mkdir()
    with open(archives["v3"], "rb") as f:
        (work / "dist" / "app-v3.tar.gz").write_bytes(f.read())
    root = tmp_path / "srv"
    res = playbook(books, work, {"root": str(root), "name": "v3", "src": "dist/app-v3.tar.gz"})
    assert not res.failed and res.changed, res
    assert (root / "releases/v3/app.py").read_text() == "VERSION = 'v3'\n"

    res = playbook(books, work, {"root": str(root), "name": "v4", "src": "dist/nope.tar.gz"})
    assert res.failed and res["param"] == "src", res
    assert res["msg"].startswith("src: dist/nope.tar.gz not found on the controller; looked in ")
    assert str(work / "dist" / "nope.tar.gz") in res["msg"]
    assert str(books / "files" / "dist" / "nope.tar.gz") in res["msg"]
    assert listing(root) == ["v3"]
