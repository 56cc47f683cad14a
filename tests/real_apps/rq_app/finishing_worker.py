"""An RQ worker that stops cleanly: it never orphans the job it has just taken off the queue,
and never hangs on its way out.

RQ's own worker (2.12) answers SIGTERM by raising ``StopRequested`` from its signal handler
whenever it is not busy. Raised after the dequeue has moved a job to RQ's intermediate queue and
before the worker has registered it as started, that leaves the job there with nobody running
it, until RQ's maintenance fails it minutes later (rq/rq#2236, open). A deploy stops old workers
while jobs arrive, so it hits that window: benchmarks/rq_stop_window.py measures how often.

This worker only records a stop requested while it is idle. Its dequeue waits in rounds of at
most ROUND_S seconds and returns nothing once a stop is requested, so the worker exits within a
round; a job the dequeue returned is run to its end first, as RQ does for a job in hand.

RQ's worker listens for its commands in a thread that waits up to 60 s per read. Stopping, it
unsubscribes, then joins that thread, which redis-py 8 does without a bound: when the thread
has begun a new read first, the worker waits out the minute, past many a unit's stop timeout
(5 stops of 100 had not ended after 15 s; rq/rq#1613 is the same hang, open).
This worker waits for that daemon thread at most a second and lets the exit end it.

Run it with ``rq worker -w finishing_worker.FinishingWorker`` (the module at the release root).
"""
import time

from rq.worker import Worker, WorkerStatus

ROUND_S = 1


class FinishingWorker(Worker):
    def _shutdown(self):
        if self.get_state() == WorkerStatus.BUSY:
            super()._shutdown()  # RQ's own: finish the job in hand, then stop
            return
        # Nothing else here: a signal handler that raised or wrote to Redis could land inside
        # the dequeue's Redis call.
        self._stop_requested = True

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        if timeout is None:  # burst mode: one look at the queues, no wait to cut short
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        idle_until = None if max_idle_time is None else time.monotonic() + max_idle_time
        while not self._stop_requested:
            left = ROUND_S if idle_until is None else idle_until - time.monotonic()
            if left <= 0:
                return None
            wait = max(1, int(min(left, ROUND_S, timeout)))
            # RQ's own loop, bounded to one round: it returns None when the round passes idle.
            result = super().dequeue_job_and_maintain_ttl(wait, max_idle_time=wait)
            if result is not None:
                return result
        return None

    def unsubscribe(self):
        if not self.pubsub_thread:
            return
        self.pubsub.unsubscribe()
        try:
            self.pubsub_thread.stop(timeout=1)
        except TypeError:  # an older redis-py, whose stop() takes no timeout
            self.pubsub_thread.stop()
        self.pubsub_thread.join(timeout=1)
        self.pubsub.close()
