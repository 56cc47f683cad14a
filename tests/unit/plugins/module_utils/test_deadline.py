"""The deadline and the retry loop, on a fake clock that only sleeps move."""
import pytest

from ansible_collections.hitless.deploy.plugins.module_utils._deadline import (
    Deadline,
    Retry,
    TimedOut,
    retry_until,
)


class Clock(object):
    """Time is what has been slept so far: an attempt takes none."""

    def __init__(self):
        self.sleeps = []

    def __call__(self):
        return 1000.0 + sum(self.sleeps)

    def sleep(self, seconds):
        self.sleeps.append(seconds)


class Attempts(object):
    """Raises Retry(reason, n) for the first ``failures`` calls, then returns ``result``."""

    def __init__(self, clock, failures, result="done"):
        self.clock = clock
        self.failures = failures
        self.result = result
        self.at = []

    def __call__(self):
        self.at.append(self.clock() - 1000.0)
        if len(self.at) <= self.failures:
            raise Retry("not yet (%d)" % len(self.at), len(self.at))
        return self.result


def run(clock, attempt, timeout=10, interval=1, **kwargs):
    return retry_until(attempt, Deadline(timeout, clock), interval, sleep=clock.sleep, **kwargs)


def test_success_at_the_first_attempt_does_not_sleep():
    clock = Clock()
    attempt = Attempts(clock, 0, result={"ok": True})
    assert run(clock, attempt) == {"ok": True}
    assert attempt.at == [0] and clock.sleeps == []


def test_success_after_retries_sleeps_the_interval_between():
    clock = Clock()
    attempt = Attempts(clock, 3)
    assert run(clock, attempt, interval=0.5) == "done"
    assert clock.sleeps == [0.5, 0.5, 0.5] and attempt.at == [0, 0.5, 1.0, 1.5]


def test_backoff_grows_the_sleeps_up_to_max_interval():
    clock = Clock()
    attempt = Attempts(clock, 5)
    run(clock, attempt, timeout=100, interval=1, backoff=2, max_interval=5)
    assert clock.sleeps == [1, 2, 4, 5, 5]


def test_the_last_sleep_ends_at_the_deadline_then_one_last_attempt():
    clock = Clock()
    attempt = Attempts(clock, 99)
    with pytest.raises(TimedOut) as err:
        run(clock, attempt, timeout=10, interval=1, backoff=2)
    assert clock.sleeps == [1, 2, 4, 3] and attempt.at == [0, 1, 3, 7, 10]
    assert err.value.attempts == 5 and err.value.reason == "not yet (5)" and err.value.value == 5
    assert str(err.value) == "gave up after 5 attempts: not yet (5)"


def test_without_last_look_no_attempt_starts_at_the_deadline():
    clock = Clock()
    attempt = Attempts(clock, 99)
    with pytest.raises(TimedOut) as err:
        run(clock, attempt, timeout=10, interval=1, backoff=2, last_look=False)
    assert clock.sleeps == [1, 2, 4] and attempt.at == [0, 1, 3, 7] and err.value.attempts == 4


def test_a_zero_timeout_makes_one_attempt():
    clock = Clock()
    with pytest.raises(TimedOut) as err:
        run(clock, Attempts(clock, 99), timeout=0)
    assert clock.sleeps == [] and str(err.value) == "gave up after 1 attempt: not yet (1)"


def test_other_errors_are_not_retried():
    clock = Clock()

    def attempt():
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        run(clock, attempt)
    assert clock.sleeps == []


def test_deadline_left_elapsed_and_cap():
    clock = Clock()
    deadline = Deadline(10, clock)
    assert deadline.start == 1000 and deadline.left() == 10 and deadline.cap(4) == 4
    clock.sleep(7.5)
    assert deadline.elapsed() == 7.5 and deadline.left() == 2.5 and deadline.cap(4) == 2.5
    clock.sleep(5)
    assert deadline.left() == 0 and deadline.cap(4) == 0


def test_extend_gives_at_least_that_long_from_now():
    clock = Clock()
    deadline = Deadline(10, clock)
    deadline.extend(5)  # already further away: unchanged
    assert deadline.left() == 10
    clock.sleep(12)
    deadline.extend(5)
    assert deadline.left() == 5 and deadline.elapsed() == 12


def test_a_wait_extended_after_timing_out_goes_on_from_there():
    clock = Clock()
    deadline = Deadline(2, clock)
    attempt = Attempts(clock, 4)
    with pytest.raises(TimedOut):
        retry_until(attempt, deadline, 1, sleep=clock.sleep)
    deadline.extend(5)
    assert retry_until(attempt, deadline, 1, sleep=clock.sleep) == "done"
    assert attempt.at == [0, 1, 2, 2, 3] and clock.sleeps == [1, 1, 1]


def test_the_attempt_after_the_cut_sleep_is_the_last_even_if_the_clock_lags():
    # Float sums, or a sleep that returns a hair early, can leave the clock just short of the
    # deadline after the cut sleep: that must not buy a stream of tiny sleeps and attempts.
    clock = Clock()
    plain_sleep = clock.sleep
    clock.sleep = lambda seconds: plain_sleep(seconds - 1e-9)
    with pytest.raises(TimedOut) as err:
        run(clock, Attempts(clock, 99), timeout=2.5, interval=1)
    assert clock.sleeps == pytest.approx([1, 1, 0.5]) and err.value.attempts == 4
