"""Run one module through the real ``ansible`` CLI and return its parsed result.

Integration tests drive modules exactly as users do (ad-hoc ``ansible HOST -m FQCN``), so the
argument spec, check mode, diff and the JSON a module returns are all exercised for real.
"""
import json
import os
import subprocess
import sys

BIN = os.path.dirname(sys.executable)
HERE = os.path.dirname(os.path.abspath(__file__))


class ModuleRun(dict):
    """A module's JSON result plus how the CLI ended."""

    @property
    def failed(self):
        return self.get("_status") in ("failed", "unreachable") or bool(self.get("failed"))

    @property
    def changed(self):
        return bool(self.get("changed"))


def run_module(module, args, host="localhost", inventory=None, check=False, diff=False,
               become=False, timeout=300, extra_env=None):
    """Run ``module`` with ``args`` (a dict) on ``host``; return a :class:`ModuleRun`.

    Without ``inventory`` the host is the controller itself over the local connection.
    """
    if "." not in module:
        module = "hitless.deploy." + module
    cmd = [os.path.join(BIN, "ansible"), host, "-m", module]
    if args:
        cmd += ["-a", json.dumps(args)]
    if inventory:
        cmd += ["-i", inventory]
    else:
        cmd += ["-i", "localhost,", "-c", "local",
                "-e", "ansible_python_interpreter=" + sys.executable]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    if become:
        cmd.append("--become")
    env = dict(os.environ)
    env.update({
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_CALLBACK_PLUGINS": os.path.join(HERE, "callback_plugins"),
        "ANSIBLE_STDOUT_CALLBACK": "result_json",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
    })
    env.update(extra_env or {})
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    return parse_result(proc.stdout, host, proc)


def parse_result(stdout, host, proc=None):
    """Find ``RESULT_JSON host status {json}`` as printed by the result_json callback."""
    prefix = "RESULT_JSON %s " % host
    for line in stdout.splitlines():
        if not line.startswith(prefix):
            continue
        status, payload = line[len(prefix):].split(" ", 1)
        result = ModuleRun(json.loads(payload))
        result["_status"] = status
        return result
    detail = "" if proc is None else "\nrc=%s\nstdout:\n%s\nstderr:\n%s" % (
        proc.returncode, proc.stdout, proc.stderr)
    raise AssertionError("no result for %s in ansible output%s" % (host, detail))
