"""Filter that turns a failed task result into the sentence a person needs: what failed, where."""

from collections.abc import Mapping

DOCUMENTATION = r"""
name: failure_cause
short_description: The underlying cause of a failed task result, naming the failed loop items
version_added: 0.1.0
description:
  - 'A task that loops (for instance over HAProxy hosts with C(delegate_to)) fails with the
    message "One or more items failed", which names neither the item nor the cause. This filter
    returns C(on ITEM: MESSAGE) for every failed or unreachable item instead, joined by C(; ),
    and the task''s own message for a task without a loop.'
  - The message loses its final period, so a sentence can follow it.
options:
  _input:
    description: A task result, such as C(ansible_failed_result) in a C(rescue) section.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Record why the deploy failed
  ansible.builtin.set_fact:
    cause: "{{ ansible_failed_result | hitless.deploy.failure_cause }}"
"""

RETURN = r"""
_value:
  description: The cause, without a final period.
  type: str
"""

GENERIC = ("One or more items failed", "All items completed")


def _message(result):
    for key in ("msg", "stderr", "module_stderr", "stdout"):
        text = result.get(key)
        if isinstance(text, str) and text.strip():
            return text.strip()
    return "unknown cause"


def _trim(text):
    text = " ".join(text.split())
    while text.endswith("."):
        text = text[:-1]
    return text


def failure_cause(result):
    if not isinstance(result, Mapping):
        return _trim(str(result)) or "unknown cause"
    items = result.get("results")
    if isinstance(items, list) and items:
        causes = []
        for item in items:
            if not isinstance(item, Mapping) or not (item.get("failed") or item.get("unreachable")):
                continue
            label = item.get("_ansible_item_label", item.get("item"))
            causes.append("on %s: %s" % (label, _trim(_message(item))))
        if causes:
            return "; ".join(causes)
    message = _message(result)
    return _trim(message) if message not in GENERIC else "a loop item failed without a message"


class FilterModule(object):
    def filters(self):
        return {"failure_cause": failure_cause}
