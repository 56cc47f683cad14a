"""The RQ workers' settings (``rq worker -c worker_settings``), imported once at a worker's start.

A real app's worker loads its framework here (Django's settings, its models) and takes seconds
to be ready; WORKER_STARTUP_DELAY (from the release's environment, default 0) stands for that,
so that a gap in consumption during a deploy shows as jobs waiting at least that long.
"""
import os
import time

time.sleep(float(os.environ.get("WORKER_STARTUP_DELAY", "0")))

REDIS_URL = "redis://queue1:6379/0"
QUEUES = ["hitless"]
