"""Start the probes and pollers in the background, stop them again (each by its own PID) and
read the JSON result each one wrote.

The demo and the deploy tests share this: a probe gets a stop file first so it can let its
in-flight requests finish and write its result; only one that ignores it is signalled.
"""
import json
import subprocess
import time

STOP_TIMEOUT = 20.0  # a probe lets in-flight requests finish (their timeout is 10 s)


def spawn(argv, log):
    """Start ``argv`` with its output in the file ``log``."""
    with open(log, "w") as handle:
        return subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def stop(procs, stop_file, timeout=STOP_TIMEOUT):
    """Stop file first, then SIGTERM, then SIGKILL, each process by its own PID."""
    with open(stop_file, "w"):
        pass
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def load_result(path, log, error=AssertionError):
    """The JSON result at ``path``; without one, ``error`` carrying the process's ``log``."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        with open(log) as handle:
            raise error("no result in %s (%s); its output:\n%s" % (path, exc, handle.read()))
