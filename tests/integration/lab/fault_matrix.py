"""Print the fault matrix of the last lab test run (for docs/reliability.md).

Every deploy under the probes writes ``summary.json`` into its test's work directory; this reads
the newest pytest base directory (``/tmp/pytest-of-$USER/pytest-N``, one per session, kept by
pytest) and prints one Markdown row per deploy, in the order they ran: the test, its runs' exit codes, requests,
failed requests, the fewest UP servers seen on any LB host, and seconds.

  .venv/bin/python tests/integration/lab/fault_matrix.py [BASEDIR]
"""
import getpass
import glob
import json
import os
import sys


def newest_base():
    bases = glob.glob("/tmp/pytest-of-%s/pytest-[0-9]*" % getpass.getuser())
    return max(bases, key=lambda b: int(b.rsplit("-", 1)[1])) if bases else None


def rows(base):
    paths = glob.glob(os.path.join(base, "**", "summary.json"), recursive=True)
    for path in sorted(paths, key=os.path.getmtime):
        rel = os.path.relpath(os.path.dirname(path), base)
        # pytest links the newest work directory of each test as ...current: seen already.
        if any(part.endswith("current") for part in rel.split(os.sep)):
            continue
        with open(path) as handle:
            summary = json.load(handle)
        # A second deploy in a subdirectory of the test's work directory (``again``).
        sub = rel.split(os.sep)[2:] if len(rel.split(os.sep)) > 2 else []
        yield (summary.get("test") or rel) + ("".join(" (%s)" % s for s in sub)), summary


def main(argv):
    base = argv[1] if len(argv) > 1 else newest_base()
    if not base:
        sys.exit("no pytest base directory found")
    print("| test | runs rc | requests | failed | min UP | s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for test, s in rows(base):
        print("| %s | %s | %s | %s | %s | %s |" % (
            test, " ".join(map(str, s["rcs"])), s["requests"], s["failed"], s["min_up"], s["seconds"]))


if __name__ == "__main__":
    main(sys.argv)
