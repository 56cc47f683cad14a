"""The RQ release's background job (tests/integration/lab/test_rq_workers.py).

tests/real_apps/build_rq_release.py copies this file to the root of each release and sets
CODE_RELEASE there ("v1", "v2"). A worker runs ``rq worker`` from the release's venv with the
release as working directory, so ``jobs.record`` is imported from the release it runs.

``record`` takes a while (a job in hand when its worker gets SIGTERM must be finished, not cut
short), then appends what ran it to the Redis list ``RESULTS``: the release of this code, the
release of the library ``releasemark`` in this process's venv, the worker's ID and PID. A result
is written only once the job is done, so a job cut short leaves none: the test finds it lost.
"""
import json
import os
import socket
import time

from rq import get_current_job

CODE_RELEASE = "dev"
RESULTS = "hitless:results"


def record(number, enqueued, seconds=0.3):
    started = time.time()
    time.sleep(seconds)
    # Imported here, as a real job's library would be: in RQ's work horse, forked per job.
    import releasemark
    from importlib import metadata
    job = get_current_job()
    result = {"job": number, "enqueued": enqueued, "claimed_at": started, "finished_at": time.time(),
              "version": CODE_RELEASE, "dependency": releasemark.RELEASE,
              "dependency_dist": metadata.version("releasemark"),
              "host": socket.gethostname(), "worker": os.environ.get("WORKER"), "pid": os.getpid(), "ppid": os.getppid(),
              "cwd": os.getcwd(), "rq_job": job.id}
    job.connection.rpush(RESULTS, json.dumps(result))
    return result
