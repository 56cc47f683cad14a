"""What the real apps' release builders share (build_gunicorn_release.py,
build_uvicorn_release.py, build_node_release.py).

- ``build_one``: an archive rebuilt only when its inputs changed (their digest is kept beside
  it in ``.NAME.tar.gz.inputs``), built in a fresh temporary directory;
- ``archive_bytes``: the tree packed reproducibly, its symlinks as symlinks, sorted, owner 0:0,
  one fixed mtime;
- ``python_release``: a Python app with its virtualenv inside the release, made by
  ``/usr/bin/python3 -m venv`` (so ``venv/bin/python3`` is a symlink to the absolute
  ``/usr/bin/python3``: the lab hosts are Debian 12, the same Python 3.11 as this machine),
  the pinned requirements installed with ``--no-index`` from wheels cached under
  .tmp/real_apps/wheels (``pip download`` fills the cache from the package index the first
  time; later builds are offline), ``releasemark`` (a distribution of this release's own,
  module ``releasemark`` with ``RELEASE = "v1"``, version 1.0; v2: "v2", 2.0) built here as a
  wheel and pip-installed like any other, pip itself taken out again (a runtime artefact needs
  no installer), and every module compiled with hash-based invalidation: the release module
  unpacks files with new mtimes, which would make every timestamp-based .pyc stale and have
  each worker compile its libraries afresh at boot, for nothing, in a read-only tree;
- ``copy_app``: the app's files copied to the release root, the one that says which release
  it is (``CODE_RELEASE = "dev"``) rewritten;
- ``cli``: the builders' shared command line.

A venv's console scripts (``venv/bin/gunicorn``) carry the build directory in their shebang,
so the releases run their servers as ``venv/bin/python -m SERVER``.
"""
import argparse
import base64
import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
WORK = os.path.join(REPO, ".tmp", "real_apps")
WHEELS = os.path.join(WORK, "wheels")
RELEASES_DIR = os.path.join(WORK, "releases")
PYTHON = "/usr/bin/python3"
MTIME = 1704067200  # 2024-01-01T00:00:00Z, as tests/sample_app/build_releases.py
BUILD_TIMEOUT = 600

# (release, releasemark's version) of the two releases each app is built in.
MARKS = (("v1", "1.0"), ("v2", "2.0"))

RELEASEMARK = '''"""Which release this library was built for (tests/real_apps/_build.py)."""
RELEASE = %(release)r
__version__ = %(version)r
'''


class BuildError(Exception):
    pass


def run(argv, cwd=None, timeout=BUILD_TIMEOUT, env=None):
    proc = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, check=False, env=env)
    if proc.returncode != 0:
        raise BuildError("%s failed (exit %d):\n%s%s" % (
            " ".join(argv), proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
    return proc.stdout


# --- the app's own files -------------------------------------------------------------------

def copy_app(app_dir, names, top, code_file, marker, replacement):
    """Copy ``names`` from ``app_dir`` to ``top``; in ``code_file`` the line ``marker`` (which
    must be there exactly once) becomes ``replacement``."""
    for name in names:
        with open(os.path.join(app_dir, name)) as handle:
            source = handle.read()
        if name == code_file:
            if source.count(marker) != 1:
                raise BuildError("%s must contain %r exactly once" % (name, marker))
            source = source.replace(marker, replacement)
        with open(os.path.join(top, name), "w") as handle:
            handle.write(source)


# --- Python: the per-release distribution and the venv -------------------------------------

def _record_hash(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def releasemark_wheel(directory, release, version):
    """Write ``releasemark-VERSION-py3-none-any.whl`` into ``directory``; return its path."""
    dist_info = "releasemark-%s.dist-info" % version
    files = [
        ("releasemark/__init__.py", RELEASEMARK % {"release": release, "version": version}),
        (dist_info + "/METADATA", "Metadata-Version: 2.1\nName: releasemark\nVersion: %s\n"
         "Summary: Says which release it was built for (hitless.deploy tests)\n" % version),
        (dist_info + "/WHEEL", "Wheel-Version: 1.0\nGenerator: hitless.deploy tests\n"
         "Root-Is-Purelib: true\nTag: py3-none-any\n"),
    ]
    files = [(name, text.encode("utf-8")) for name, text in files]
    record = "".join("%s,%s,%d\n" % (name, _record_hash(data), len(data)) for name, data in files)
    files.append((dist_info + "/RECORD", (record + dist_info + "/RECORD,,\n").encode("utf-8")))
    path = os.path.join(directory, "releasemark-%s-py3-none-any.whl" % version)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as whl:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            whl.writestr(info, data)
    return path


def pip_install(venv_python, requirements, wheels):
    """Install the pinned requirements from the wheel cache; fill the cache first if needed."""
    install = [venv_python, "-m", "pip", "install", "--no-index", "--find-links", wheels,
               "--only-binary=:all:", "-r", requirements]
    try:
        run(install)
        return
    except BuildError:
        os.makedirs(wheels, exist_ok=True)
    # The one step that needs the package index: the cache lacks a pinned wheel.
    run([venv_python, "-m", "pip", "download", "--only-binary=:all:", "--dest", wheels,
         "-r", requirements])
    run(install)


def python_release(top, requirements, release, version, python, wheels, copy, compile_files):
    """Fill the empty directory ``top``: ``venv`` with ``requirements`` and this release's
    ``releasemark``, then ``copy(top)`` (the app's files), then every module compiled
    (``compile_files``: the app's modules, relative to ``top``)."""
    venv = os.path.join(top, "venv")
    run([python, "-m", "venv", venv])
    venv_python = os.path.join(venv, "bin", "python")
    pip_install(venv_python, requirements, wheels)
    with tempfile.TemporaryDirectory(prefix="releasemark-") as scratch:
        wheel = releasemark_wheel(scratch, release, version)
        run([venv_python, "-m", "pip", "install", "--no-index", "--no-deps", wheel])
    run([venv_python, "-m", "pip", "uninstall", "--yes", "pip", "setuptools"])
    copy(top)
    # Remove pip's timestamp-based caches, then compile every module with hash-based
    # invalidation (valid whatever the mtimes after unpacking).
    for dirpath, dirnames, _files in os.walk(top):
        if "__pycache__" in dirnames:
            shutil.rmtree(os.path.join(dirpath, "__pycache__"))
            dirnames.remove("__pycache__")
    run([venv_python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "checked-hash",
         os.path.join(venv, "lib")] + [os.path.join(top, name) for name in compile_files])
    # The venv's activate scripts and console scripts name the temporary build directory;
    # they stay (a user's CI would ship them), but nothing here runs them.


# --- the archive ---------------------------------------------------------------------------

def _tarinfo(tar, path, arcname):
    info = tar.gettarinfo(path, arcname)
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = MTIME
    if info.isdir():
        info.mode = 0o755
    elif info.isreg():
        info.mode = 0o755 if info.mode & 0o111 else 0o644
    elif not info.issym():
        raise BuildError("%s: neither a directory, a file nor a symlink" % path)
    return info


def archive_bytes(top):
    """The tree ``top`` as a reproducible tar.gz (sorted, owner 0:0, fixed mtime)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        entries = []
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in dirnames + filenames:
                entries.append(os.path.relpath(os.path.join(dirpath, name), top))
        for rel in sorted(entries):
            path = os.path.join(top, rel)
            info = _tarinfo(tar, path, rel)
            # gettarinfo makes a second name of one inode a hard link: there are none here.
            if info.islnk():
                raise BuildError("%s is a hard link" % path)
            if info.isreg():
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=MTIME, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def write_atomically(path, data):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def inputs_digest(parts, files):
    """A digest of the strings ``parts`` and the contents of ``files`` (this module is always
    one of them)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8") + b"\0")
    for path in (os.path.abspath(__file__),) + tuple(files):
        with open(path, "rb") as handle:
            digest.update(handle.read() + b"\0")
    return digest.hexdigest()


def python_version(python):
    return run([python, "-c", "import sys; print(sys.version)"])


def build_one(directory, name, digest, fill, force=False):
    """Build DIR/NAME.tar.gz with ``fill(top)`` unless it exists with the inputs ``digest``;
    return its path."""
    path = os.path.join(directory, name + ".tar.gz")
    stamp = os.path.join(directory, "." + name + ".tar.gz.inputs")
    if not force and os.path.exists(path) and os.path.exists(stamp):
        with open(stamp) as handle:
            if handle.read().strip() == digest:
                return path
    with tempfile.TemporaryDirectory(prefix="build-%s-" % name) as scratch:
        top = os.path.join(scratch, name)
        os.mkdir(top)
        fill(top)
        data = archive_bytes(top)
    write_atomically(path, data)
    write_atomically(stamp, (digest + "\n").encode("ascii"))
    return path


# --- the command line ----------------------------------------------------------------------

def cli(argv, doc, prog, build, python=True):
    """``PROG DIR [--force]`` (and ``--python``, ``--wheels`` when ``python``): calls
    ``build(directory, force=..., [python=..., wheels=...])`` and prints each archive's path."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    parser.add_argument("directory", help="where to write the archives (created if missing)")
    if python:
        parser.add_argument("--python", default=PYTHON, help="the Python the venv is made from "
                            "(the one at this path on the app hosts), default %(default)s")
        parser.add_argument("--wheels", default=WHEELS,
                            help="the wheel cache, default %(default)s")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args(argv)
    options = {"force": args.force}
    if python:
        options.update(python=args.python, wheels=os.path.abspath(args.wheels))
    try:
        paths = build(os.path.abspath(args.directory), **options)
    except BuildError as error:
        sys.stderr.write("%s: %s\n" % (prog, error))
        return 1
    for path in paths:
        print(path)
    return 0
