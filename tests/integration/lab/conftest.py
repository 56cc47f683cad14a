"""The ``lab`` fixture: real lab hosts (systemd-nspawn guests) for the whole test session.

The session boots the lab ``itest`` (or ``$HITLESS_ITEST_LAB``): one LB host and two app
hosts, provisioned by tests/lab/site.yml. It always tears the lab down again, also when booting
failed halfway or a test failed. Needs root, like the lab itself.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _labs import LabError, booted_lab  # noqa: E402

# Another name lets two sessions run side by side (each lab gets its own bridge and /24).
LAB_NAME = os.environ.get("HITLESS_ITEST_LAB", "itest")


@pytest.fixture(scope="session")
def lab():
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (overlay mounts, bridges, systemd-nspawn)")
    try:
        with booted_lab(LAB_NAME, "--app-hosts", "2", "--topology", "lb") as booted:
            yield booted
    except LabError as error:
        # Booting or teardown failed: a readable report, not a traceback through the fixture.
        pytest.fail(str(error), pytrace=False)
