#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: app_worker
short_description: Move an app's background workers to a release without a gap in consumption
version_added: 0.2.0
description:
  - Manages the workers C(UNIT@ID.service) of the template unit C(UNIT@.service) (queue
    consumers such as Celery, RQ or Sidekiq, with no port and no HAProxy server), which run from
    C(ROOT/current) with their own view of the app root, so each runs one release for its
    whole life (P(hitless.deploy.app#role) installs such a template, see C(docs/apps.md)).
  - A worker's overlap is the instance C(UNIT@ID-next.service), pinned by a runtime drop-in
    C(RUNTIME_DIR/UNIT@ID-next.service.d/hitless-pin.conf) to one release, as
    M(hitless.deploy.app_instance) pins a clone. It consumes while the worker is replaced, so a
    worker of the new release always runs before an old one gets C(SIGTERM).
  - O(state=overlapped) starts each worker's overlap on O(release_path) and waits until it has
    stayed up for O(settle) seconds; the workers themselves are not touched. A release whose
    worker cannot start fails here, before any worker stopped.
  - O(state=moved) leaves each worker running O(release_path) and no overlap. A worker on
    another release (or not running) is replaced behind its overlap - the overlap started on
    O(release_path) first if it does not run it already, then the worker stopped (C(SIGTERM),
    and the unit's whole C(TimeoutStopSec) to finish the job in hand) and started again on
    C(current), which must point at O(release_path); once it stayed up for O(settle) seconds
    the overlap is stopped the same way and its drop-in removed.
  - Both are idempotent, so a converge, either way, is O(state=moved) to the release to keep.
notes:
  - A call holds an exclusive lock C(/run/hitless-deploy/<unit>.lock) (O(unit)) on the host for as long as it
    acts, and a second call on the same units waits for it (up to 900 s, then fails naming the
    holder). A controller killed mid-call leaves its module running on the host until it is
    done; the next run's converge waits for it instead of acting on the same units at once.
    Check mode takes no lock.
author: hitless.deploy developers (@hitless-deploy)
attributes:
  check_mode:
    support: full
    description: Reports what would be done (RV(actions)) and changes nothing.
  diff_mode:
    support: full
    description: Shows each worker and its overlap (state, release run, pin) before and after.
options:
  unit:
    description: Prefix of the template unit C(UNIT@.service), for instance C(demo-worker); it must exist on the host.
    type: str
    required: true
  workers:
    description: The worker IDs, the instance names C(UNIT@ID) (for instance V(1), V(2)).
    type: list
    elements: str
    required: true
  release_path:
    description:
      - Release directory C(ROOT/releases/NAME) the workers must run; resolved on the host.
      - With O(state=moved), C(ROOT/current) must point there.
    type: path
    required: true
  state:
    description: V(overlapped) or V(moved), see the description above.
    type: str
    choices: [overlapped, moved]
    default: moved
  environment_file:
    description: The release's environment file, relative to it, that the overlap reads.
    type: str
    default: .env
  settle:
    description:
      - Seconds a started worker or overlap must stay up, on end, to count as started (its start-up
        included, so that it consumes by then); a worker that dies at start (a missing library, a
        bad setting) usually does so within them.
    type: float
    default: 2.0
  start_timeout:
    description: Seconds a unit may take to become active after its start.
    type: int
    default: 60
  runtime_dir:
    description: Directory of runtime unit drop-ins.
    type: path
    default: /run/systemd/system
"""

EXAMPLES = r"""
- name: Start the new release's workers beside the old ones
  hitless.deploy.app_worker:
    unit: demo-worker
    workers: ["1", "2"]
    release_path: /srv/demo/releases/v2
    state: overlapped

- name: Replace the old workers, then stop the overlaps
  hitless.deploy.app_worker:
    unit: demo-worker
    workers: ["1", "2"]
    release_path: /srv/demo/releases/v2
    state: moved
"""

RETURN = r"""
release:
  description: The release directory name of O(release_path), resolved on the host.
  returned: success
  type: str
  sample: v2
actions:
  description: What was done (or would be, in check mode), in order, as C(ACTION ID).
  returned: success
  type: list
  elements: str
  sample: [start-overlap 1, replace-original 1, remove-overlap 1]
workers:
  description:
    - Per worker, C(worker) (its ID), C(unit), C(active_state), C(running_release) (the release
      directory its main process runs in) and C(overlap) (C(unit), C(active_state),
      C(running_release), C(pinned_to)), afterwards.
  returned: success
  type: list
  elements: dict
worker:
  description: The worker whose move failed.
  returned: failure
  type: str
param:
  description: The option at fault, when one is.
  returned: failure
  type: str
"""

import contextlib

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hitless.deploy.plugins.module_utils._app_instance import (
    InstanceError, failure, module_systemctl)
from ansible_collections.hitless.deploy.plugins.module_utils._app_worker import ARGUMENT_SPEC, ensure
from ansible_collections.hitless.deploy.plugins.module_utils._unit_lock import UnitLockTimeout, held


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    systemctl = module_systemctl(module)
    # A dry run changes nothing: it neither waits for nor blocks a call that does.
    lock = contextlib.nullcontext() if module.check_mode else held(module.params["unit"])
    try:
        with lock:
            result = ensure(module.params, systemctl, module.check_mode)
    except UnitLockTimeout as e:
        module.fail_json(msg=str(e))
    except InstanceError as e:
        module.fail_json(worker=getattr(e, "worker", None), **failure(e))
    except (IOError, OSError) as e:
        module.fail_json(msg="%s: %s" % (module.params["unit"], e))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
