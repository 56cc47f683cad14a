#!/usr/bin/env python
"""Build the Node.js app's release archives: DIR/node-v1.tar.gz and DIR/node-v2.tar.gz.

Each is built the way a user's CI builds an express app, with this machine's ``npm``, in a
fresh temporary directory (packing and caching as tests/real_apps/_build.py):

- ``server.js`` (CODE_RELEASE = "v1" / "v2"), ``package.json`` and ``package-lock.json`` from
  tests/real_apps/node_app, at the release root;
- ``npm ci --omit=dev``: express exactly as the lock pins it, into ``node_modules``
  (npm's cache is .tmp/real_apps/npm-cache; ``--prefer-offline`` reads it before the
  registry);
- ``releasemark``, a package of this release's own (``RELEASE: "v1"``, version 1.0.0; v2:
  "v2", 2.0.0), packed here by ``npm pack`` into ``vendor/releasemark-VERSION.tgz`` and
  installed from that ``file:`` tarball by ``npm install``, like a vendored private package:
  a real copy in ``node_modules/releasemark`` with its own package.json (a ``file:``
  directory would be a symlink out of the release). The release's package.json and lock name
  it;
- every installed package's ``engines.node`` checked against NODE_TARGET, the oldest Node.js
  Debian 12 shipped (``nodejs`` 18.13; 18.19 and 18.20 in later point releases): the
  lab hosts run Debian's ``/usr/bin/node``, not this machine's.

npm install scripts are not run (``--ignore-scripts``): none of these packages has any, and
a release must not depend on what ran on the build machine. The unit (``app_exec_start`` =
APP_EXEC_START below) runs ``/usr/bin/node /srv/demo/current/server.js``.

Usage: build_node_release.py DIR [--force]   (prints the path of every archive, one a line)
"""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _build  # noqa: E402

BuildError = _build.BuildError  # the error of every builder, for their callers

HERE = _build.HERE
APP_DIR = os.path.join(HERE, "node_app")
APP_FILES = ("server.js", "package.json", "package-lock.json")
NPM_CACHE = os.path.join(_build.WORK, "npm-cache")
NODE_TARGET = "18.13.0"
NPM = "npm"
NODE = "node"

# (archive base name, CODE_RELEASE and releasemark's RELEASE, releasemark's version)
RELEASES = tuple(("node-" + release, release, version + ".0")
                 for release, version in _build.MARKS)

APP_EXEC_START = "/usr/bin/node /srv/demo/current/server.js"

RELEASEMARK_JS = """'use strict';
// Which release this package was built for (tests/real_apps/build_node_release.py).
module.exports = { RELEASE: %s, version: %s };
"""

# Every installed package whose engines.node excludes the target, as JSON (npm's own semver).
ENGINES_JS = r"""
const fs = require('fs');
const path = require('path');
const semver = require(process.argv[1]);
const [target, top] = process.argv.slice(2);
const lock = JSON.parse(fs.readFileSync(path.join(top, 'node_modules', '.package-lock.json')));
const bad = [];
for (const name of Object.keys(lock.packages)) {
  const pkg = JSON.parse(fs.readFileSync(path.join(top, name, 'package.json')));
  const range = (pkg.engines || {}).node;
  if (range && !semver.satisfies(target, range)) {
    bad.push(name + '@' + pkg.version + ' needs node ' + range);
  }
}
console.log(JSON.stringify(bad));
"""


def npm(args, cwd):
    return _build.run([NPM] + list(args) + [
        "--cache", NPM_CACHE, "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts",
        "--no-update-notifier"], cwd=cwd)


def releasemark_tarball(directory, release, version):
    """``npm pack`` the package releasemark@VERSION into ``directory``; return its path."""
    with tempfile.TemporaryDirectory(prefix="releasemark-") as scratch:
        with open(os.path.join(scratch, "package.json"), "w") as handle:
            json.dump({"name": "releasemark", "version": version, "main": "index.js",
                       "description": "Says which release it was built for (hitless.deploy "
                       "tests)", "license": "GPL-3.0-or-later"}, handle, indent=2)
        with open(os.path.join(scratch, "index.js"), "w") as handle:
            handle.write(RELEASEMARK_JS % (json.dumps(release), json.dumps(version)))
        os.makedirs(directory, exist_ok=True)
        _build.run([NPM, "pack", "--pack-destination", directory, "--cache", NPM_CACHE],
                   cwd=scratch)
    path = os.path.join(directory, "releasemark-%s.tgz" % version)
    if not os.path.isfile(path):
        raise BuildError("npm pack did not write %s" % path)
    return path


def check_engines(top):
    semver = os.path.join(_build.run([NPM, "root", "-g"]).strip(), "npm", "node_modules",
                          "semver")
    bad = json.loads(_build.run([NODE, "-e", ENGINES_JS, semver, NODE_TARGET, top]))
    if bad:
        raise BuildError("packages that do not run on node %s: %s" % (NODE_TARGET, bad))


def fill(top, release, version):
    _build.copy_app(APP_DIR, APP_FILES, top, "server.js", 'const CODE_RELEASE = "dev";\n',
                    "const CODE_RELEASE = %s;\n" % json.dumps(release))
    os.makedirs(NPM_CACHE, exist_ok=True)
    npm(["ci", "--omit=dev"], top)
    tarball = releasemark_tarball(os.path.join(top, "vendor"), release, version)
    npm(["install", "--omit=dev", "--save-exact",
         "./" + os.path.relpath(tarball, top)], top)
    with open(os.path.join(top, "node_modules", "releasemark", "package.json")) as handle:
        installed = json.load(handle)["version"]
    if installed != version:
        raise BuildError("node_modules/releasemark is %s, not %s" % (installed, version))
    if os.path.lexists(os.path.join(top, "node_modules", ".bin")):
        # Relative links inside the release: kept, but none is expected with express.
        for name in os.listdir(os.path.join(top, "node_modules", ".bin")):
            target = os.readlink(os.path.join(top, "node_modules", ".bin", name))
            if os.path.isabs(target):
                raise BuildError("node_modules/.bin/%s -> %s is absolute" % (name, target))
    check_engines(top)
    # npm leaves nothing else behind in the tree (its cache and logs are outside it).
    for leftover in (".npm", "npm-debug.log"):
        path = os.path.join(top, leftover)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.unlink(path)


def build_one(directory, name, release, version, force=False):
    """Build DIR/NAME.tar.gz unless it exists with the same inputs; return its path."""
    digest = _build.inputs_digest(
        (name, release, version, NODE_TARGET, _build.run([NPM, "--version"])),
        (os.path.abspath(__file__),) + tuple(os.path.join(APP_DIR, each) for each in APP_FILES))
    return _build.build_one(directory, name, digest, lambda top: fill(top, release, version),
                            force)


def build(directory, force=False):
    os.makedirs(directory, exist_ok=True)
    return [build_one(directory, name, release, version, force)
            for name, release, version in RELEASES]


def main(argv=None):
    return _build.cli(argv, __doc__, "build_node_release.py", build, python=False)


if __name__ == "__main__":
    sys.exit(main())
