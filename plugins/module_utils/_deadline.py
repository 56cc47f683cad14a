# -*- coding: utf-8 -*-
# Copyright: hitless.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One deadline and one retry loop for every wait of the collection.

Shaped like ``do_until_success_or_timeout`` in ansible-core's ``reboot`` action, but with the
clock and the sleep injected, so unit tests run a wait of minutes in no time, and with sleeps
cut at the deadline, so a wait never overruns the timeout it was given.
Stdlib only; runs on the target (Python >= 3.9).
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time


class Retry(Exception):
    """Raised by an attempt that should be made again.

    ``reason`` says why in a word or a sentence; ``value`` is handed back in :class:`TimedOut`
    (the last state seen, the last error), so the caller can say where things stood.
    """

    def __init__(self, reason, value=None):
        Exception.__init__(self, reason)
        self.reason = reason
        self.value = value


class TimedOut(Exception):
    """The deadline passed; ``reason`` and ``value`` are those of the last :class:`Retry`."""

    def __init__(self, reason, value, attempts):
        Exception.__init__(self, "gave up after %d attempt%s: %s"
                           % (attempts, "" if attempts == 1 else "s", reason))
        self.reason = reason
        self.value = value
        self.attempts = attempts


class Deadline:
    """A point in time ``seconds`` after creation, on ``clock`` (monotonic: NTP steps the wall
    clock)."""

    def __init__(self, seconds, clock=time.monotonic):
        self.clock = clock
        self.start = clock()
        self.at = self.start + seconds

    def elapsed(self):
        return self.clock() - self.start

    def left(self):
        return max(0.0, self.at - self.clock())

    def extend(self, seconds):
        """Give at least ``seconds`` more from now, e.g. a grace after a last-resort action."""
        self.at = max(self.at, self.clock() + seconds)

    def cap(self, timeout):
        """``timeout`` cut to the time left, so an attempt that hangs cannot outlive the wait."""
        return min(timeout, self.left())


def retry_until(attempt, deadline, interval, backoff=1.0, max_interval=None, sleep=time.sleep,
                last_look=True):
    """Call ``attempt()`` until it returns instead of raising :class:`Retry`; return its result.

    Between attempts it sleeps ``interval``, multiplied by ``backoff`` after each one up to
    ``max_interval``, and never past ``deadline``: the last sleep is cut to end there. Other
    exceptions propagate at once: a failure that waiting cannot mend is not retried.

    ``last_look`` makes one more attempt at the deadline itself, right for a cheap look (a stats
    read, a local connect). An attempt that needs time of its own (a probe, whose timeout would
    be cut to nothing) passes False: when the next one could not start before the deadline, it
    gives up without sleeping.

    Raises :class:`TimedOut` with the last reason, value and the number of attempts.
    """
    attempts = 0
    delay = interval
    final = False
    while True:
        attempts += 1
        try:
            return attempt()
        except Retry as e:
            last = e
        left = deadline.left()
        if final or left <= 0 or (left <= delay and not last_look):
            raise TimedOut(last.reason, last.value, attempts)
        # A sleep that would overrun ends at the deadline instead, and the attempt after it is
        # the last: a clock read a hair short of the deadline must not buy more.
        final = left <= delay
        sleep(min(delay, left))
        delay *= backoff
        if max_interval is not None:
            delay = min(delay, max_interval)
