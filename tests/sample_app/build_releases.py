#!/usr/bin/env python
"""Build the sample app's release archives: DIR/{v1,v2,v3,broken,crash,flaky,slow}.tar.gz.

Each archive holds ``app.py`` and ``release.json`` at its root. The archives are reproducible
(fixed mtimes, sorted members, owner 0:0, mode 0644, no name or time in the gzip header), so a
rebuild gives byte-identical files, and an archive that would not change is not rewritten (its
mtime stays, so nothing downstream sees a change that is not one).

Usage: build_releases.py DIR   (prints the path of every archive, one a line)
"""
import argparse
import gzip
import io
import json
import os
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
# A fixed, plausible time: mtime 0 makes some tar implementations warn.
MTIME = 1704067200  # 2024-01-01T00:00:00Z
RELEASES = (
    ("v1", "ok"),
    ("v2", "ok"),
    ("v3", "ok"),
    ("broken", "broken"),
    ("crash", "crash"),
    # Healthy by /health, bad for real traffic: what the canary bake is there to catch.
    ("flaky", "flaky"),
    ("slow", "slow"),
    # Serves well, but its background worker exits at start (worker.py).
    ("noworker", "ok"),
)


def _member(name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.type = tarfile.REGTYPE
    return info


def archive_bytes(version, mode, app_source, worker_source):
    fields = {"version": version, "mode": mode}
    if version == "noworker":
        fields["worker"] = "crash"
    release = (json.dumps(fields, sort_keys=True) + "\n").encode()
    files = {"app.py": app_source, "release.json": release, "worker.py": worker_source}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in sorted(files):
            tar.addfile(_member(name, files[name]), io.BytesIO(files[name]))
    out = io.BytesIO()
    # filename="" and a fixed mtime keep the gzip header independent of where and when.
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=MTIME, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def write_if_changed(path, data):
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".tar.gz")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return True


def build(directory):
    with open(os.path.join(HERE, "app.py"), "rb") as f:
        app_source = f.read()
    with open(os.path.join(HERE, "worker.py"), "rb") as f:
        worker_source = f.read()
    os.makedirs(directory, exist_ok=True)
    paths = []
    for version, mode in RELEASES:
        path = os.path.join(directory, version + ".tar.gz")
        write_if_changed(path, archive_bytes(version, mode, app_source, worker_source))
        paths.append(path)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="where to write the archives (created if missing)")
    args = parser.parse_args(argv)
    for path in build(os.path.abspath(args.directory)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
