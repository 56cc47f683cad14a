"""The haproxy role's files as its tasks would produce them, without Ansible or a host.

Templates are rendered with plain Jinja2 set up as Ansible's template module does
(trim_blocks, trailing newline kept), from the role's defaults and vars plus overrides; the
list of configured servers (vars/main.yml) is evaluated with Jinja2's native types, as Ansible
turns it into a list. Also here: reading ExecReload lines from a unit file, and running them the
way systemd does, for the tests that reload a real HAProxy through the drop-in.
"""
import os
import re
import shlex
import shutil
import subprocess
import time

import jinja2
import jinja2.nativetypes
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))))
ROLE = os.path.join(REPO, "roles", "haproxy")
RUNTIME = os.path.join(REPO, "plugins", "module_utils", "_haproxy_runtime.py")
CLI = os.path.join(ROLE, "files", "haproxy_state.py")
DEBIAN_UNIT = "/lib/systemd/system/haproxy.service"


def _load(path):
    with open(os.path.join(ROLE, path)) as f:
        return yaml.safe_load(f) or {}


def variables(**overrides):
    """Defaults, then the role's vars (templates in them rendered), then ``overrides``."""
    values = dict(_load("defaults/main.yml"))
    values.update(overrides)
    for name, value in _load("vars/main.yml").items():
        if name in overrides:
            continue
        if isinstance(value, str) and ("{{" in value or "{%" in value):
            env = jinja2.nativetypes.NativeEnvironment(undefined=jinja2.StrictUndefined)
            value = env.from_string(value).render(**values)
        values[name] = value
    values.setdefault("ansible_managed", "Ansible managed")
    return values


def render(template, **overrides):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROLE, "templates")),
                             trim_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    return env.get_template(template).render(**variables(**overrides))


def servers(**overrides):
    """The list the role writes to hitless-servers.json (under "servers")."""
    return variables(**overrides)["_haproxy_servers"]


def install_tools(lib_dir):
    """Lay the state saver out as the role does: the CLI beside the collection's client."""
    os.makedirs(lib_dir, exist_ok=True)
    shutil.copy(RUNTIME, os.path.join(lib_dir, "_haproxy_runtime.py"))
    shutil.copy(os.path.join(os.path.dirname(RUNTIME), "_atomic.py"), os.path.join(lib_dir, "_atomic.py"))
    shutil.copy(CLI, os.path.join(lib_dir, "haproxy_state.py"))
    os.chmod(os.path.join(lib_dir, "haproxy_state.py"), 0o755)
    return os.path.join(lib_dir, "haproxy_state.py")


def exec_reload(unit_text, key="ExecReload"):
    """The ExecReload (or ``key``) values of a unit file or drop-in, in order ("" for a
    reset)."""
    lines, section = [], None
    for raw in unit_text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]" and line.startswith(key + "="):
            lines.append(line[len(key) + 1:])
    return lines


def debian_exec_reload():
    with open(DEBIAN_UNIT) as f:
        return exec_reload(f.read())


def effective_exec_reload(dropin_text):
    """Debian's ExecReload lines as the drop-in leaves them (an empty value resets the list)."""
    result = debian_exec_reload()
    for value in exec_reload(dropin_text):
        result = [] if value == "" else result + [value]
    return result


def _expand(word, env):
    """systemd's $VAR (split into words when alone) and ${VAR} (one word)."""
    alone = re.match(r"^\$([A-Za-z_][A-Za-z0-9_]*)$", word)
    if alone:
        return env.get(alone.group(1), "").split()
    return [re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)",
                   lambda m: env.get(m.group(1) or m.group(2), ""), word)]


def run_exec_reload(values, env, timeout=60):
    """Run ExecReload values as systemd does: in order, stopping at the first failure of a line
    without the "-" prefix (whose failure is ignored). Returns [(argv, rc, seconds, output)]."""
    done = []
    for value in values:
        ignore = value.startswith("-")
        argv = []
        for word in shlex.split(value.lstrip("-")):
            argv += _expand(word, env)
        start = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        done.append((argv, proc.returncode, time.monotonic() - start, proc.stdout + proc.stderr))
        if proc.returncode != 0 and not ignore:
            raise AssertionError("ExecReload %s failed (%d): %s" % (value, proc.returncode,
                                                                    proc.stdout + proc.stderr))
    return done
