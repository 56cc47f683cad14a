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
  - With O(config_digest=true) the configuration is part of the release, the directory is
    C(NAME+DIGEST), named after the O(files) and rendered O(templates), so the same archive with
    another configuration makes another directory and the serving one is never touched.
  - A release in use (current, previous or pinned) is never rewritten; O(files) whose content
    differs from what such a release holds are refused.
  - C(current) is switched by creating the new symlink under a temporary name and renaming it over
    the old one, so a reader always sees either the old or the new release.
  - Releases pinned by M(hitless.deploy.app_instance) (a C(hitless-pin.conf) drop-in whose
    C(WorkingDirectory=) lies inside a release) are never removed or replaced.
  - A failed rolling deploy marks its release bad in C(ROOT/.hitless/bad/RELEASE) (a JSON object
    with C(step), C(task) and C(cause)); O(refuse_bad) refuses such a release and O(clear_bad)
    removes the mark.
author: hitless.deploy developers (@hitless-deploy)
attributes:
  check_mode:
    support: full
    description: Archives are read and their members checked in check mode too, so check mode
      refuses what a real run would refuse.
  diff_mode:
    support: full
    description: Shows C(current), C(previous) and the list of releases before and after, and
      the release's bad mark when it has one.
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
      - Name of the release, the directory C(ROOT/releases/NAME) (C(NAME+DIGEST) with
        O(config_digest)).
      - Must not contain C(/), be C(.) or C(..), or start with a dot.
      - Required when O(state) is V(present), V(current) or V(absent).
      - With O(state=rollback) or O(state=absent) the name of a directory under C(releases/),
        C(NAME+DIGEST) included.
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
        ownership). With O(config_digest), a missing C(NAME+DIGEST) is built without O(src) from
        another directory of the release, see O(config_digest).
      - A relative controller path is looked for first in the directory C(ansible-playbook) runs
        in, then in the C(files/) directories of the role and the playbook.
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
      - When greater than 0, after the action remove all releases but the O(keep) that were made
        current most recently (a release never made current counts from its creation). Names
        do not matter, which suits git hashes and C(NAME+DIGEST) variants. The current, the
        previous, pinned releases and O(name) are always kept in addition.
      - Each time this module makes a release current, it touches
        C(ROOT/.hitless/served/RELEASE); the file's mtime is when the release last served.
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
      - A new release gets them before it is renamed into place, so it never exists without them.
        Their paths are recorded in the release's record (C(config_files)).
      - Writing a different content into a release that is current, previous or pinned is refused
        (with O(config_digest) that can only mean its files were changed on the host); in a release
        in use only modes and owners are fixed; one nothing uses is rewritten.
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
  config_digest:
    description:
      - Name the release directory after its configuration, C(NAME+DIGEST), when O(files) and
        O(templates) give at least one file; with none it is C(NAME). The result's RV(release)
        is that directory name, and O(state=current) points C(current) at it.
      - C(DIGEST) is the first 8 hex digits of a sha256 over the files sorted by path (by the
        UTF-8 bytes of the normalized relative path, C(config/./app.ini) being C(config/app.ini)),
        feeding for each, in that order, its path in UTF-8, a NUL byte, its mode as four octal
        digits (C(0640)), a NUL byte, its content's length in bytes in decimal, a NUL byte and its
        content. The order the files are given in does not change it; a path, mode or content
        does. Owners are not part of it.
      - When C(NAME+DIGEST) does not exist and no O(src) is given, it is built from C(NAME) or,
        if there is none, from the newest C(NAME+OTHER) (by the C(created) time of its record)
        whose record says config_digest made it for release NAME. Its tree is copied (symlinks as
        links, O(shared) links made again) without its record and the files that were its own
        configuration (C(config_files) of its record), then the new files are written; in a
        temporary directory renamed into place, like an unpacked release.
    type: bool
    default: false
  refuse_bad:
    description:
      - Fail, before changing anything and in check mode too, when C(ROOT/.hitless/bad/RELEASE)
        exists for the release directory this task is about (C(NAME+DIGEST) with
        O(config_digest), the rollback's target with O(state=rollback)), unless O(clear_bad)
        removes it. The failure names O(name), the failed step and cause, and returns RV(bad_mark).
      - Not applied with O(state=absent).
    type: bool
    default: false
  clear_bad:
    description:
      - Remove the release's bad mark C(ROOT/.hitless/bad/RELEASE) when there is one (a change,
        reported in check mode and in the diff), after every refusal and the release's own
        changes and before C(current) is switched.
    type: bool
    default: false
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

- name: Deploy v3 with this host's configuration as its own release directory v3+DIGEST
  hitless.deploy.release:
    root: /srv/demo
    name: v3
    src: "{{ releases_dir }}/v3.tar.gz"
    group: demo
    templates:
      - src: app.ini.j2
        dest: config/app.ini
    config_digest: true
    refuse_bad: true
    state: current
  register: deployed  # deployed.release is v3+DIGEST

- name: Reconfigure v3 without pushing it again (built from v3+OLD, which stays untouched)
  hitless.deploy.release:
    root: /srv/demo
    name: v3
    group: demo
    files:
      - path: .env
        content: "{{ app_environment | hitless.deploy.systemd_environment }}"
    config_digest: true
    state: current

- name: Deploy v3 and its configuration again once what made it fail is fixed elsewhere
  hitless.deploy.release:
    root: /srv/demo
    name: v3
    group: demo
    templates:
      - src: app.ini.j2
        dest: config/app.ini
    config_digest: true
    refuse_bad: true
    clear_bad: true
    state: current

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
release:
  description:
    - Name of the release directory the task is about, under C(ROOT/releases/) - C(NAME+DIGEST)
      with O(config_digest) and files, else O(name); the rollback's target, or the current
      release when O(name) is omitted.
  returned: success
  type: str
  sample: v2+1a2b3c4d
release_path:
  description: Directory of RV(release).
  returned: success
  type: str
  sample: /srv/demo/releases/v2+1a2b3c4d
bad_mark:
  description:
    - The bad mark C(ROOT/.hitless/bad/RELEASE) found for RV(release) before the task (also when
      O(clear_bad) removed it; a mark that is not a JSON object comes as a dict with its text as
      C(cause)), or null when there is none.
  returned: success, and when O(refuse_bad) fails the task
  type: dict
  sample: {step: post_start, task: Check the release, cause: "GET /health returned 500"}
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
  description: C(current), C(previous) and the sorted list of releases, before and after;
    C(bad_mark) too when RV(release) has a mark.
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
            # Rendered by the action plugin, which passes them on as files.
            templates=dict(type="list", elements="dict", default=[], options=dict(
                src=dict(type="path", required=True),
                dest=dict(type="str", required=True),
                mode=dict(type="str", default="0640"),
            )),
            config_digest=dict(type="bool", default=False),
            refuse_bad=dict(type="bool", default=False),
            clear_bad=dict(type="bool", default=False),
        ),
        required_if=[
            ("state", "present", ["name"]),
            ("state", "current", ["name"]),
            ("state", "absent", ["name"]),
        ],
        supports_check_mode=True,
    )
    if module.params["templates"]:
        module.fail_json(msg="templates: rendered on the controller by the action plugin, which did "
                             "not run; pass the rendered files as files", param="templates")
    try:
        result = run(module.params, module.check_mode)
    except (ReleaseError, FilesError) as e:
        msg = e.msg if not e.param or e.msg.startswith(e.param) else "%s: %s" % (e.param, e.msg)
        module.fail_json(msg=msg, param=e.param, **getattr(e, "details", {}))
    except (IOError, OSError) as e:
        module.fail_json(msg="release %s under %s: %s" % (module.params["name"], module.params["root"], e))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
