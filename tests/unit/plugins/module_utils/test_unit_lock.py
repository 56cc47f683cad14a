import multiprocessing
import os
import time

import pytest

from ansible_collections.hitless.deploy.plugins.module_utils._unit_lock import UnitLockTimeout, held


def _hold(lock_dir, ready, seconds):
    with held("demo-worker", lock_dir=lock_dir):
        ready.set()
        time.sleep(seconds)


def holder(tmp_path, seconds):
    """Another process holding the lock ``demo-worker`` for ``seconds``, as a killed
    controller's module still running on the host would."""
    ready = multiprocessing.Event()
    proc = multiprocessing.Process(target=_hold, args=(str(tmp_path), ready, seconds))
    proc.start()
    assert ready.wait(10)
    return proc


def test_a_second_call_waits_until_the_first_has_finished(tmp_path):
    proc = holder(tmp_path, 0.6)
    started = time.monotonic()
    with held("demo-worker", wait=10, lock_dir=str(tmp_path)):
        waited = time.monotonic() - started
    proc.join()
    # The holder had it for 0.6 s from before this call started.
    assert waited >= 0.4
    assert open(os.path.join(str(tmp_path), "demo-worker.lock")).read().startswith("pid %d since " % os.getpid())


def test_a_holder_that_does_not_finish_in_time_is_named(tmp_path):
    proc = holder(tmp_path, 5)
    try:
        with pytest.raises(UnitLockTimeout, match=r"changing the units of demo-worker .* more than 0 s "
                                                  r"\(pid %d since \d+\)" % proc.pid):
            with held("demo-worker", wait=0.3, lock_dir=str(tmp_path)):
                pass
    finally:
        proc.terminate()
        proc.join()


def test_locks_of_other_units_and_a_lock_left_by_a_dead_process_do_not_wait(tmp_path):
    proc = holder(tmp_path, 5)
    try:
        with held("demo", wait=0, lock_dir=str(tmp_path)):
            pass
    finally:
        proc.kill()
        proc.join()
    # The flock went with its process: the file left behind holds nothing.
    with held("demo-worker", wait=0, lock_dir=str(tmp_path)):
        pass


def test_the_lock_directory_is_made(tmp_path):
    with held("demo", lock_dir=str(tmp_path / "run" / "hitless-deploy")):
        assert os.path.isfile(str(tmp_path / "run" / "hitless-deploy" / "demo.lock"))
