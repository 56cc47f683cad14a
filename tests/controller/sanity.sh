#!/usr/bin/env bash
# ansible-test sanity with the controller's ansible-core, in its container: tests/sanity/run.sh
# (a copy of the tree, offline but for the pip index) with that controller's virtualenv and
# Python, on a tree of its own (.tmp/sanity-CORE). Run it through run.py:
#
#   tests/controller/run.py --core 2.21 -- bash tests/controller/sanity.sh 2.21 [OPTIONS...]
#
# (make sanity-2.21). OPTIONS go to ansible-test sanity (e.g. --test pylint).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CORE=${1:?usage: sanity.sh CORE [OPTIONS...]}
shift
export VENV=$REPO/.tmp/core-$CORE
export SANITY_PYTHON
SANITY_PYTHON=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
export SANITY_TREE=$REPO/.tmp/sanity-$CORE

exec bash "$REPO/tests/sanity/run.sh" --sanity-only "$@"
