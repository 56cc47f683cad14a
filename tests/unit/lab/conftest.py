"""The lab's helper modules live beside tests/lab/lab.py, not in a package."""
import os
import sys

LAB = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                   "lab")
if LAB not in sys.path:
    sys.path.insert(0, LAB)
