#!/usr/bin/env bash
# ansible-test sanity, then ansible-test units, on a copy of the work tree; offline but for
# the pip index. Exits non-zero when either finds anything.
#
#   tests/sanity/run.sh                                   sanity, then units
#   tests/sanity/run.sh --sanity-only|--units-only [OPTIONS...]   one of them, OPTIONS added
#                                           (e.g. --sanity-only --test pylint)
#
# ansible-test wants the collection at a path ending in ansible_collections/hitless/deploy,
# and resolves the .tmp/collections symlink back to the work tree: so the files git knows
# of, committed or not (git ls-files -co --exclude-standard), are copied to
# .tmp/sanity/ansible_collections/hitless/deploy and ansible-test runs there (the work tree
# and its git index are only read).
#
# It runs on the controller Python of .venv (ansible-core from requirements.txt, which also
# brings pytest and pytest-xdist for the unit tests), with --python 3.11: the other Pythons
# are not on PATH here, so the multi-version tests (compile, import) run on 3.11. Each
# sanity test with requirements gets a virtual environment of ansible-test's own under
# ~/.ansible/test/venv, created without pip; ansible-test then downloads get-pip.py from a
# host these machines cannot reach. tests/sanity/get_pip.py stands in for it, saved where
# ansible-test caches that script, and installs pip from the wheel that ships with Python
# (ensurepip's): the pinned sanity requirements then come from the pip index as usual.
# The first run builds those environments (about a minute); later runs reuse them.
#
# Environment: VENV (default .venv), SANITY_PYTHON (default 3.11), SANITY_TREE (default
# .tmp/sanity). shellcheck must be installed (Debian package shellcheck): without it
# ansible-test would skip the shellcheck test, so this script refuses to run.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${VENV:-$REPO/.venv}
SANITY_PYTHON=${SANITY_PYTHON:-3.11}
SANITY_TREE=${SANITY_TREE:-$REPO/.tmp/sanity}
COLLECTION=$SANITY_TREE/ansible_collections/hitless/deploy
ANSIBLE_TEST=$VENV/bin/ansible-test

fail() {
    echo "tests/sanity/run.sh: $*" >&2
    exit 2
}

run_sanity=1
run_units=1
case "${1:-}" in
    --sanity-only) run_units=0; shift ;;
    --units-only) run_sanity=0; shift ;;
    *) (($# == 0)) || fail "options need --sanity-only or --units-only" ;;
esac

[[ -x $ANSIBLE_TEST ]] || fail "$ANSIBLE_TEST not found: run 'make venv' first"
if ((run_sanity)) && ! command -v shellcheck > /dev/null; then
    fail "shellcheck not found: apt-get install shellcheck (make sanity does)"
fi

# The tree: what git would commit, as it is in the work tree now (deleted files left out).
rm -rf "$SANITY_TREE"
mkdir -p "$COLLECTION"
(
    cd "$REPO"
    git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' path; do
            if [[ -e $path || -L $path ]]; then
                printf '%s\0' "$path"
            fi
        done |
        xargs -0 --no-run-if-empty cp -P --parents -t "$COLLECTION"
)
# ansible-test lists the content with git from the nearest .git above it, which would be the
# work tree's (where .tmp is ignored): a repository of the copy's own, with nothing staged
# (ansible-test takes untracked files too), makes the copy its own root.
git init -q "$COLLECTION"

# The pip bootstrap: the pip version and cache path that ansible-test uses, asked of it.
get_pip=$(SANITY_PYTHON=$SANITY_PYTHON "$VENV/bin/python" - << 'EOF'
import os
from types import SimpleNamespace

from ansible_test._internal.python_requirements import get_venv_packages

pip_version = get_venv_packages(SimpleNamespace(version=os.environ["SANITY_PYTHON"]))["pip"]
print(os.path.expanduser("~/.ansible/test/cache/get_pip_%s.py" % pip_version.replace(".", "_")))
EOF
)
if [[ ! -f $get_pip ]] || grep -q "Offline stand-in for the get-pip.py script" "$get_pip"; then
    # A real get-pip.py that was downloaded once is left alone; a stand-in is kept current.
    mkdir -p "$(dirname "$get_pip")"
    cp "$REPO/tests/sanity/get_pip.py" "$get_pip"
fi

# The work tree's own settings would point ansible at the work tree, not at the copy.
unset ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_PATHS
export PATH=$VENV/bin:$PATH

cd "$COLLECTION"
status=0
if ((run_sanity)); then
    echo "--- ansible-test sanity --python $SANITY_PYTHON $*"
    "$ANSIBLE_TEST" sanity --python "$SANITY_PYTHON" --color no "$@" || status=1
fi
if ((run_units)); then
    echo "--- ansible-test units --python $SANITY_PYTHON $*"
    "$ANSIBLE_TEST" units --python "$SANITY_PYTHON" --color no "$@" || status=1
fi
exit "$status"
