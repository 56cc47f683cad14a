"""The role helpers (_haproxy_role.py) live beside these tests, not in a package."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
