# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of hitless.deploy.release: push a controller ``src`` to the host's remote tmp
and render ``templates`` here, so the host gets one module call with everything it needs.

Modelled on ansible.builtin.unarchive's action plugin. A directory on the controller is packed
into an uncompressed tar whose owners and times are normalized, so the digest the module records
only changes when names, modes, contents or link targets change. Templates are rendered with the
template lookup (the task's variables, its search path) and reach the module as ``files``, whose
content the module never logs.

A relative ``src`` is looked for first in the directory ansible-playbook runs in (what a user
typing ``-e src=app.tar.gz`` means), then in the role's and playbook's ``files/`` directories.
"""

import os
import tarfile
import tempfile

from ansible.errors import AnsibleError
from ansible.module_utils.common.collections import is_sequence
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import lookup_loader


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


class TemplateError(Exception):
    pass


class SourceNotFound(Exception):
    pass


def find_source(src, find_needle, cwd=None):
    """Controller path of ``src``: as given when absolute, else under ``cwd`` (by default the
    directory ansible-playbook runs in), else what ``find_needle`` finds (the role's and the
    playbook's ``files/``). Raises SourceNotFound listing every place looked in."""
    src = os.path.expanduser(src)
    if os.path.isabs(src):
        if os.path.exists(src):
            return src
        raise SourceNotFound("src: %s not found on the controller" % src)
    here = os.path.join(os.getcwd() if cwd is None else cwd, src)
    if os.path.exists(here):
        return here
    try:
        return find_needle(src)
    except AnsibleError as e:
        paths = getattr(e, "paths", None)
        if paths:
            raise SourceNotFound("src: %s not found on the controller; looked in %s"
                                 % (src, ", ".join([here] + [to_text(p) for p in paths])))
        raise SourceNotFound("src: %s not found on the controller; looked in %s, then: %s"
                             % (src, here, to_text(e)))


def check_templates(templates):
    """Return ``[(src, dest, mode)]`` from the ``templates`` option, or raise TemplateError."""
    if templates is None:
        return []
    if not is_sequence(templates):
        raise TemplateError("templates must be a list of {src, dest, mode}, got %r" % (templates,))
    checked = []
    for index, entry in enumerate(templates):
        if not isinstance(entry, dict) or not entry.get("src") or not entry.get("dest"):
            raise TemplateError("templates[%d] must have src and dest, got %r" % (index, entry))
        unknown = set(entry) - {"src", "dest", "mode"}
        if unknown:
            raise TemplateError("templates[%d] has unknown keys %s (known: src, dest, mode)"
                                % (index, ", ".join(sorted(unknown))))
        checked.append((to_text(entry["src"]), to_text(entry["dest"]),
                        to_text(entry.get("mode") or "0640")))
    return checked


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
            try:
                rendered = self._render(check_templates(args.pop("templates", None)), task_vars)
            except TemplateError as e:
                result.update(failed=True, param="templates", msg=to_text(e))
                return result
            if rendered:
                args["files"] = list(args.get("files") or []) + rendered
            if src and not boolean(args.get("remote_src", False), strict=False):
                try:
                    source = find_source(to_text(src), lambda s: self._find_needle("files", s))
                except SourceNotFound as e:
                    result.update(failed=True, param="src", msg=to_text(e))
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

    def _render(self, templates, task_vars):
        """The ``files`` entries that ``templates`` render to, here on the controller."""
        if not templates:
            return []
        lookup = lookup_loader.get("ansible.builtin.template", loader=self._loader,
                                   templar=self._templar)
        files = []
        for src, dest, mode in templates:
            try:
                content = lookup.run([src], variables=task_vars)[0]
            except AnsibleError as e:
                raise TemplateError("templates: cannot render %s for %s: %s"
                                    % (src, dest, to_text(e)))
            files.append(dict(path=dest, content=to_text(content), mode=mode))
        return files
