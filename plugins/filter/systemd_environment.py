"""Filter that renders a dict as a systemd EnvironmentFile."""

import re

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: systemd_environment
short_description: Render a dict as the content of a systemd EnvironmentFile
version_added: 0.1.0
description:
  - 'Turns a dict into C(KEY="value") lines, sorted by key, quoted so that systemd reads back
    exactly the value given (backslash, double quote, C($) and backtick escaped).'
  - Fails on a key that is not a shell-style name, on a value with a newline, and on a key
    listed in O(reserved) (the unit sets those itself, for instance C(PORT) from the instance
    name).
options:
  _input:
    description: Variables to write.
    type: dict
    required: true
  reserved:
    description: Keys that may not be set.
    type: list
    elements: str
    default: [PORT]
"""

EXAMPLES = r"""
- name: Write the environment file of a release
  ansible.builtin.copy:
    content: "{{ app_environment | hitless.deploy.systemd_environment }}"
    dest: /srv/demo/releases/v2/.env
    mode: "0640"
  no_log: true
"""

RETURN = r"""
_value:
  description: The file content, one C(KEY="value") line per variable.
  type: str
"""

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEADER = "# Written by hitless.deploy; read by systemd (EnvironmentFile=).\n"


def _quote(value):
    text = str(value)
    for char in ("\\", '"', "$", "`"):
        text = text.replace(char, "\\" + char)
    return '"%s"' % text


def systemd_environment(variables, reserved=("PORT",)):
    if not isinstance(variables, dict):
        raise AnsibleFilterError("systemd_environment expects a dict, got %s" % type(variables).__name__)
    lines = [HEADER]
    for key in sorted(variables):
        if not NAME.match(str(key)):
            raise AnsibleFilterError("environment key %r is not a valid variable name" % (key,))
        if key in reserved:
            raise AnsibleFilterError("environment key %r is set by the unit itself" % (key,))
        value = variables[key]
        if "\n" in str(value) or "\r" in str(value):
            raise AnsibleFilterError("environment value of %r must be one line" % (key,))
        lines.append("%s=%s\n" % (key, _quote(value)))
    return "".join(lines)


class FilterModule(object):
    def filters(self):
        return {"systemd_environment": systemd_environment}
