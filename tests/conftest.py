"""Make the collection importable as ``ansible_collections.hitless.deploy`` for every test.

The Makefile links the work tree into ``.tmp/collections``; pytest run by hand gets the same link.
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".tmp", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "hitless", "deploy")

if not os.path.lexists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(REPO, LINK)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", COLLECTIONS)

# Shared test helpers (``from _ansible import run_module``) live in tests/integration.
INTEGRATION = os.path.join(REPO, "tests", "integration")
if INTEGRATION not in sys.path:
    sys.path.insert(0, INTEGRATION)
