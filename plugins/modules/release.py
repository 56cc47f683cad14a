#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: release
short_description: Unpack releases, switch C(current) atomically, roll back and prune
version_added: 0.1.0
description:
  - Manages a release tree C(ROOT/releases/NAME/), C(ROOT/shared/) and the symlinks C(ROOT/current)
    and C(ROOT/previous) (relative targets C(releases/NAME)).
  - A release is unpacked into C(ROOT/releases/.tmp-NAME-RANDOM) and renamed into place only when
    complete. Archive members that would escape the release are refused before anything is
    written, and nothing is left behind when a refusal happens halfway.
  - The archive's sha256 is recorded in C(ROOT/releases/NAME/.hitless-release.json); the same
    archive again changes nothing, a different one replaces the release unless it is current or
    an instance is pinned to it.
  - C(current) is switched by creating the new symlink under a temporary name and renaming it over
    the old one, so a reader always sees either the old or the new release.
  - Releases pinned by M(hitless.deploy.app_instance) (a C(hitless-pin.conf) drop-in whose
    C(WorkingDirectory=) lies inside a release) are never removed or replaced.
author: hitless.deploy developers
attributes:
  check_mode:
    support: full
    description: Archives are read and their members checked in check mode too, so check mode
      refuses what a real run would refuse.
  diff_mode:
    support: full
    description: Shows C(current), C(previous) and the list of releases before and after.
  action:
    support: full
    description: An action plugin pushes a controller-side O(src) to the host and renders
      O(templates) on the controller first.
options:
  root:
    description: Directory holding C(releases/), C(shared/), C(current) and C(previous).
    type: path
    required: true
  name:
    description:
      - Name of the release, the directory C(ROOT/releases/NAME).
      - Must not contain C(/), be C(.) or C(..), or start with a dot.
      - Required when O(state) is V(present), V(current) or V(absent).
    type: str
  src:
    description:
      - Content of the release. An archive (C(.tar), C(.tar.gz), C(.tgz), C(.tar.bz2), C(.tar.xz),
        C(.zip); detected by content when the suffix says nothing) or a directory.
      - With O(remote_src=false) a path on the controller (searched like the C(files/) lookups of
        M(ansible.builtin.copy)); it is copied to a temporary directory on the host, which is
        removed afterwards. A controller directory is packed into an uncompressed tar with
        normalized owners and times first, so its digest only changes when its content does.
      - With O(remote_src=true) a path on the host.
      - Needed to create a release; without it an existing release is only checked (shared links,
        ownership).
    type: path
  remote_src:
    description: Whether O(src) is already on the host.
    type: bool
    default: false
  shared:
    description:
      - Relative paths inside the release replaced by symlinks to C(ROOT/shared/PATH).
      - A missing C(ROOT/shared/PATH) is seeded with the release's own copy of PATH when there is
        one, otherwise created as an empty directory.
    type: list
    elements: str
    default: []
  owner:
    description: Owner (name or uid) of the unpacked files. Default is the connecting user.
    type: str
  group:
    description: Group (name or gid) of the unpacked files.
    type: str
  state:
    description:
      - V(present) unpacks the release and leaves C(current) alone.
      - V(current) does the same, then points C(current) at it and C(previous) at the release
        C(current) pointed to before.
      - V(rollback) points C(current) at O(name), or at C(previous) when O(name) is omitted, and
        leaves C(previous) as it is, so repeating a rollback changes nothing. Fails when there is
        nothing to roll back to.
      - V(absent) removes the release; refused for the current or previous release or a pinned one.
    type: str
    choices: [present, current, rollback, absent]
    default: present
  keep:
    description:
      - When greater than 0, after the action remove all releases but the O(keep) newest by natural
        name order (V(v9) before V(v10)). The current, the previous, pinned releases and O(name)
        are always kept in addition.
      - V(0) never prunes.
    type: int
    default: 0
  pin_dir:
    description: Where the drop-ins of pinned instances live (C(PIN_DIR/*.service.d/hitless-pin.conf)).
    type: path
    default: /run/systemd/system
  files:
    description:
      - Files written into the release once it is unpacked (or into the existing release), with
        O(state) V(present) or V(current), such as rendered configuration or an environment file.
      - Each is replaced by a rename, only when its content, mode or owner differ, and owned by
        O(owner)/O(group). A path that is, or passes through, a symlink (a O(shared) path) is
        refused, so the serving release is never written to through a link.
      - Contents are never logged.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Path relative to the release directory; missing directories are created.
        type: str
        required: true
      content:
        description: The whole content of the file.
        type: str
        required: true
      mode:
        description: Permissions, an octal string.
        type: str
        default: "0640"
  templates:
    description:
      - Jinja2 templates on the controller (searched like M(ansible.builtin.template)'s C(src)),
        rendered there with the task's variables and written into the release like O(files).
      - Rendered by the action plugin; the host only receives the result.
    type: list
    elements: dict
    default: []
    suboptions:
      src:
        description: The template on the controller.
        type: path
        required: true
      dest:
        description: Path relative to the release directory.
        type: str
        required: true
      mode:
        description: Permissions, an octal string.
        type: str
        default: "0640"
notes:
  - Unpacked files never get setuid, setgid or sticky bits or group/other write permission, like
    Python's tarfile C(data) filter; owners come from O(owner)/O(group), not from the archive.
  - Refused members are absolute paths, paths with C(..), members written through a symlink
    member, symlinks whose target is absolute or resolves outside the release, hard links to
    anything but a regular file stored earlier in the same archive, devices, fifos and duplicates.
  - There is no limit on the unpacked size; do not unpack archives from untrusted sources.
seealso:
  - module: hitless.deploy.app_instance
"""

EXAMPLES = r"""
- name: Push v2 from the controller and make it current, keeping five releases
  hitless.deploy.release:
    root: /srv/demo
    name: v2
    src: "{{ releases_dir }}/v2.tar.gz"
    shared: [log, .env]
    owner: demo
    group: demo
    state: current
    keep: 5

- name: Stage v3 with its configuration and environment, rendered on the controller
  hitless.deploy.release:
    root: /srv/demo
    name: v3
    src: "{{ releases_dir }}/v3.tar.gz"
    group: demo
    templates:
      - src: app.ini.j2
        dest: config/app.ini
    files:
      - path: .env
        content: "{{ app_environment | hitless.deploy.systemd_environment }}"

- name: Unpack an archive already on the host without switching
  hitless.deploy.release:
    root: /srv/demo
    name: v3
    src: /var/tmp/v3.zip
    remote_src: true

- name: Go back to the previous release
  hitless.deploy.release:
    root: /srv/demo
    state: rollback

- name: Remove a release nothing uses
  hitless.deploy.release:
    root: /srv/demo
    name: v1
    state: absent
"""

RETURN = r"""
release_path:
  description: Directory of O(name), or of the current release when O(name) is omitted.
  returned: success
  type: str
  sample: /srv/demo/releases/v2
current:
  description: Release C(current) points to afterwards (its raw link target if outside C(releases/)).
  returned: success
  type: str
  sample: v2
previous:
  description: Release C(previous) points to afterwards.
  returned: success
  type: str
  sample: v1
pruned:
  description: Releases removed (or, in check mode, that would be removed) by O(keep).
  returned: success
  type: list
  elements: str
  sample: [v0]
pinned:
  description: Releases an instance is pinned to.
  returned: success
  type: list
  elements: str
  sample: [v1]
files_changed:
  description: Paths of O(files) and O(templates), relative to the release, that were written
    (or would be, in check mode).
  returned: success
  type: list
  elements: str
  sample: [.env]
diff:
  description: C(current), C(previous) and the sorted list of releases, before and after.
  returned: success
  type: dict
  sample:
    before: {current: v1, previous: null, releases: [v1]}
    after: {current: v2, previous: v1, releases: [v1, v2]}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hitless.deploy.plugins.module_utils._release import ReleaseError, run
from ansible_collections.hitless.deploy.plugins.module_utils._release_files import FilesError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            name=dict(type="str"),
            src=dict(type="path"),
            remote_src=dict(type="bool", default=False),
            shared=dict(type="list", elements="str", default=[]),
            owner=dict(type="str"),
            group=dict(type="str"),
            state=dict(type="str", default="present", choices=["present", "current", "rollback", "absent"]),
            keep=dict(type="int", default=0),
            pin_dir=dict(type="path", default="/run/systemd/system"),
            files=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="str", required=True),
                content=dict(type="str", required=True, no_log=True),
                mode=dict(type="str", default="0640"),
            )),
        ),
        required_if=[
            ("state", "present", ["name"]),
            ("state", "current", ["name"]),
            ("state", "absent", ["name"]),
        ],
        supports_check_mode=True,
    )
    try:
        result = run(module.params, module.check_mode)
    except (ReleaseError, FilesError) as e:
        msg = e.msg if not e.param or e.msg.startswith(e.param) else "%s: %s" % (e.param, e.msg)
        module.fail_json(msg=msg, param=e.param)
    except (IOError, OSError) as e:
        module.fail_json(msg="release %s under %s: %s" % (module.params["name"], module.params["root"], e))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
