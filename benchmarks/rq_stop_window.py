"""How often a stopping RQ worker orphans the job it has just taken: RQ's worker against ours.

A deploy stops old workers (SIGTERM) while jobs arrive. RQ 2.12's worker, when idle, answers
SIGTERM by raising from its signal handler, and a job it has just moved off the queue is then
left in RQ's intermediate queue, run by nobody (rq/rq#2236). This script measures that window
and checks that tests/real_apps/rq_app/finishing_worker.py closes it.

Each trial starts one ``rq worker`` on an empty queue, enqueues one job once the worker listens,
sends SIGTERM 0 to --spread-ms later, waits for the worker to exit and reads the job's fate:
finished (run once), queued (left for the next worker: not lost) or intermediate (orphaned).

Everything runs in a chroot on an overlay of the lab's bookworm root file system (its Python and
Debian's redis-server, bound to 127.0.0.1), with RQ and redis-py from the wheels the real apps
are built from (tests/real_apps, .tmp/real_apps/wheels). Run as root, after a lab has been
booted once (the root file system) and the RQ releases built (``make test`` or
``tests/real_apps/build_rq_release.py``):

  .venv/bin/python benchmarks/rq_stop_window.py [--trials 100] [--spread-ms 4]

A benchmark, not a test: it asserts nothing; it exits non-zero only if it could not run.
"""
import argparse
import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))

import _rootfs  # noqa: E402

WHEELS = os.path.join(ROOT, ".tmp", "real_apps", "wheels")
WORKER = os.path.join(ROOT, "tests", "real_apps", "rq_app", "finishing_worker.py")
CLASSES = ("rq.worker.Worker", "finishing_worker.FinishingWorker")

# Runs inside the chroot: python3 trials.py PORT CLASS TRIALS SPREAD_MS
TRIALS = r'''
import json, os, random, signal, subprocess, sys, time
from redis import Redis
from rq import Queue

port, worker_class, trials, spread = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
redis = Redis(host="127.0.0.1", port=int(port))
queue = Queue("bench", connection=redis)
fates, stop_s = {}, []
for number in range(trials):
    redis.flushdb()
    worker = subprocess.Popen([sys.executable, "-m", "rq.cli", "worker", "-w", worker_class,
                               "-u", "redis://127.0.0.1:" + port, "--logging_level", "ERROR", "bench"])
    deadline = time.monotonic() + 30
    while not redis.keys("rq:worker:*") and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)  # in its blocking dequeue
    job = queue.enqueue("tasks.noop", number)
    time.sleep(random.uniform(0, spread / 1000))
    worker.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    try:
        worker.wait(15)
        fate = None
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        fate = "did not stop in 15 s"
    stop_s.append(time.monotonic() - sent)
    if fate is None:
        if job.id in queue.intermediate_queue.get_job_ids():
            fate = "orphaned (intermediate)"
        elif job.id in queue.job_ids:
            fate = "queued (not lost)"
        else:
            fate = str(job.get_status(refresh=True).value)
    fates[fate] = fates.get(fate, 0) + 1
stop_s.sort()
print(json.dumps({"class": worker_class, "trials": trials, "fates": fates,
                  "stop_s_median": stop_s[len(stop_s) // 2], "stop_s_max": stop_s[-1]}))
'''


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unpack_wheels(target):
    wheels = [path for path in glob.glob(os.path.join(WHEELS, "*-py3-none-any.whl"))
              if not os.path.basename(path).startswith(("flask", "gunicorn", "werkzeug"))]
    if not any(os.path.basename(path).startswith("rq-") for path in wheels):
        raise SystemExit("no RQ wheel in %s: build the RQ releases first "
                         "(tests/real_apps/build_rq_release.py .tmp/real_apps/releases)" % WHEELS)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(target)


@contextlib.contextmanager
def chroot_tree(rootfs, bench_dir):
    """An overlay of the root file system with /proc, /dev and bench_dir (as /bench) mounted.

    Unmounts them again on the way out, most recent first."""
    upper, work, merged = (os.path.join(bench_dir, "..", name) for name in ("upper", "work", "merged"))
    for path in (upper, work, merged):
        os.makedirs(path)
    mounted = []
    try:
        for cmd, target in (
                (["mount", "-t", "overlay", "overlay", "-o",
                  "lowerdir=%s,upperdir=%s,workdir=%s" % (rootfs, upper, work), merged], merged),
                (["mount", "-t", "proc", "proc", merged + "/proc"], merged + "/proc"),
                (["mount", "--bind", "/dev", merged + "/dev"], merged + "/dev"),
                (["mount", "--bind", bench_dir, merged + "/bench"], merged + "/bench")):
            os.makedirs(target, exist_ok=True)
            subprocess.run(cmd, check=True)
            mounted.append(target)
        yield merged
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", target], check=False)


def mounts_under(top):
    with open("/proc/self/mounts") as handle:
        points = [line.split()[1] for line in handle]
    return [point for point in points if point == top or point.startswith(top + "/")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--spread-ms", type=float, default=4.0,
                        help="SIGTERM follows the enqueue by 0 to this many milliseconds")
    args = parser.parse_args(argv)
    rootfs = _rootfs.path()
    if not os.path.isdir(rootfs):
        raise SystemExit("no lab root file system at %s: boot a lab once (make lab-up)" % rootfs)
    top = tempfile.mkdtemp(prefix="rq-stop-window-")
    bench_dir = os.path.join(top, "bench")
    os.makedirs(os.path.join(bench_dir, "py"))
    figures = []
    try:
        unpack_wheels(os.path.join(bench_dir, "py"))
        shutil.copy(WORKER, bench_dir)
        with open(os.path.join(bench_dir, "tasks.py"), "w") as handle:
            handle.write("def noop(number):\n    return number\n")
        with open(os.path.join(bench_dir, "trials.py"), "w") as handle:
            handle.write(TRIALS)
        port = str(free_port())
        with chroot_tree(rootfs, bench_dir) as merged:
            env = dict(os.environ, PYTHONPATH="/bench/py:/bench", HOME="/bench")
            redis = subprocess.Popen(["chroot", merged, "redis-server", "--port", port, "--bind",
                                      "127.0.0.1", "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, env=env)
            try:
                for worker_class in CLASSES:
                    out = subprocess.run(
                        ["chroot", merged, "/bin/sh", "-c", 'cd /bench && exec python3 trials.py "$@"',
                         "trials", port, worker_class, str(args.trials), str(args.spread_ms)],
                        check=True, capture_output=True, text=True, env=env, timeout=60 * args.trials)
                    figures.append(json.loads(out.stdout.strip().splitlines()[-1]))
            finally:
                redis.terminate()
                redis.wait(10)
    finally:
        left = mounts_under(top)
        if left:  # never remove through a mount: /dev is the machine's own
            print("left %s: still mounted %s" % (top, ", ".join(left)), file=sys.stderr)
        else:
            shutil.rmtree(top, ignore_errors=True)
    print("| worker class | trials | fates | SIGTERM to exit, median / max s |")
    print("| --- | ---: | --- | --- |")
    for each in figures:
        print("| %s | %d | %s | %.2f / %.2f |" % (
            each["class"], each["trials"],
            ", ".join("%s %d" % item for item in sorted(each["fates"].items())),
            each["stop_s_median"], each["stop_s_max"]))


if __name__ == "__main__":
    main()
