# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of hitless.deploy.release: push a controller ``src`` to the host's remote tmp.

Modelled on ansible.builtin.unarchive's action plugin. A directory on the controller is packed
into an uncompressed tar whose owners and times are normalized, so the digest the module records
only changes when names, modes, contents or link targets change.
"""

import os
import tarfile
import tempfile

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase


def _normalize(info):
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def pack_directory(path):
    """Tar ``path`` into a controller temp file; the caller removes it."""
    fd, archive = tempfile.mkstemp(prefix="hitless-release-", suffix=".tar")
    os.close(fd)
    try:
        with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tf:
            tf.add(path, arcname=".", recursive=True, filter=_normalize)
    except BaseException:
        os.unlink(archive)
        raise
    return archive


class ActionModule(ActionBase):

    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        if task_vars is None:
            task_vars = {}
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp

        args = self._task.args.copy()
        src = args.get("src")
        local_tmp = None
        try:
            if src and not boolean(args.get("remote_src", False), strict=False):
                try:
                    source = self._find_needle("files", os.path.expanduser(to_text(src)))
                except AnsibleError as e:
                    result.update(failed=True, param="src",
                                  msg="src: %s not found on the controller: %s" % (src, to_text(e)))
                    return result
                source = source.rstrip("/") or source
                if os.path.isdir(source):
                    local_tmp = pack_directory(source)
                    upload, base = local_tmp, os.path.basename(source) + ".tar"
                else:
                    upload, base = self._loader.get_real_file(source), os.path.basename(source)
                remote = self._connection._shell.join_path(self._connection._shell.tmpdir, base)
                self._transfer_file(upload, remote)
                self._fixup_perms2((self._connection._shell.tmpdir, remote))
                args["src"] = remote
            result.update(self._execute_module(module_name="hitless.deploy.release",
                                               module_args=args, task_vars=task_vars))
            return result
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
            if local_tmp:
                os.unlink(local_tmp)
