"""Print each task result whole (``diff`` included) as one JSON line, for the test harness."""
import json

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: result_json
type: stdout
short_description: one JSON line per task result, for tests
description: Prints C(RESULT_JSON host status {result}) lines that the integration tests parse.
"""

MARKER = "RESULT_JSON"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "result_json"

    def _emit(self, result, status):
        payload = json.dumps(dict(result._result), default=str)
        self._display.display("%s %s %s %s" % (MARKER, result._host.get_name(), status, payload))

    def v2_runner_on_ok(self, result):
        self._emit(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._emit(result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._emit(result, "unreachable")

    def v2_runner_on_skipped(self, result):
        self._emit(result, "skipped")
