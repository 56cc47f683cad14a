"""Print the fault matrix of the last lab test run (for docs/reliability.md).

Every deploy under the probes writes ``summary.json`` into its test's work directory; this reads
the newest pytest base directory (``/tmp/pytest-of-$USER/pytest-N``, one per session, kept by
pytest) and prints one Markdown row per deploy: the test, its runs' exit codes, requests,
failed requests, the fewest UP servers seen on any LB host, and seconds.

  .venv/bin/python tests/integration/lab/fault_matrix.py [BASEDIR]
"""
import getpass
import glob
import json
import os
import re
import sys


def newest_base():
    bases = glob.glob("/tmp/pytest-of-%s/pytest-[0-9]*" % getpass.getuser())
    return max(bases, key=lambda b: int(b.rsplit("-", 1)[1])) if bases else None


def rows(base):
    for path in sorted(glob.glob(os.path.join(base, "**", "summary.json"), recursive=True)):
        with open(path) as handle:
            summary = json.load(handle)
        rel = os.path.relpath(os.path.dirname(path), base)
        test = re.sub(r"^popen-gw\d+/", "", rel)
        yield test, summary


def main(argv):
    base = argv[1] if len(argv) > 1 else newest_base()
    if not base:
        sys.exit("no pytest base directory found")
    print("| test (work directory) | runs rc | requests | failed | min UP | s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for test, s in rows(base):
        print("| %s | %s | %s | %s | %s | %s |" % (
            test, " ".join(map(str, s["rcs"])), s["requests"], s["failed"], s["min_up"], s["seconds"]))


if __name__ == "__main__":
    main(sys.argv)
