"""gunicorn's settings file, read from the working directory (the release root) at start.

The command line of the unit (app_exec_start) sets the bind address, the workers and their
recycling; this file adds what the command line of a deploy test would not:

- STARTUP_DELAY (seconds, default 0): the master waits this long before it binds, as the
  sample app does, so a deploy's readiness checks meet an app that is slow to start.
- No control socket. gunicorn >= 25.1 opens one by default at $XDG_RUNTIME_DIR/gunicorn.ctl
  or ~/.gunicorn/gunicorn.ctl: ONE path for every instance of the unit, so a clone and its
  original on the same host would take it from each other (and the app's home is read-only
  under the unit's ProtectSystem=strict anyway).
"""
import os
import time

control_socket_disable = True  # pylint: disable=invalid-name


def on_starting(server):  # pylint: disable=unused-argument
    """Called by the master before it binds its listeners."""
    delay = float(os.environ.get("STARTUP_DELAY") or 0)
    if delay > 0:
        time.sleep(min(delay, 3600.0))
