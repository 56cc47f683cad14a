"""The status's read of the workers (``_app_worker.observe``/``read``, for deploy_journal_info):
parsing of systemctl's listing, discovery, and the release each process really runs, against
a fake systemctl and a fake /proc (the real thing: tests/integration/lab/_status_workers.py)."""
import os

import pytest

from ansible_collections.hitless.deploy.plugins.module_utils._app_instance import InstanceError, Systemctl
from ansible_collections.hitless.deploy.plugins.module_utils._app_worker import (
    WorkerError, discover, loaded, observe, read)

LISTING = """demo-worker@1.service      loaded active   running demo worker 1 (hitless.deploy)
demo-worker@2.service      loaded inactive dead    demo worker 2 (hitless.deploy)
\u25cf demo-worker@3.service    loaded failed   failed  demo worker 3 (hitless.deploy)
demo-worker@4-next.service loaded active   running demo worker 4-next (hitless.deploy)
demo-worker-other@9.service loaded active  running another template
"""


class Host(object):
    """systemctl's show and list-units over ``units`` ({unit: (ActiveState, release or None)}),
    each running unit's /proc/PID/cwd a link to its release directory."""

    def __init__(self, tmp_path, units, listing=None, load_state="loaded"):
        self.root, self.proc, self.runtime = tmp_path / "srv" / "demo", tmp_path / "proc", tmp_path / "run"
        for name in ("v1", "v2"):
            (self.root / "releases" / name).mkdir(parents=True)
        os.symlink("releases/v2", str(self.root / "current"))
        self.proc.mkdir()
        self.runtime.mkdir()
        self.props, self.calls = {}, []
        for pid, (unit, (state, release)) in enumerate(sorted(units.items()), start=100):
            self.props[unit] = {"LoadState": load_state, "ActiveState": state, "SubState": "running",
                                "MainPID": str(pid if release else 0)}
            if release:
                (self.proc / str(pid)).mkdir()
                os.symlink(str(self.root / "releases" / release), str(self.proc / str(pid) / "cwd"))
        self.listing = LISTING if listing is None else listing
        self.load_state = load_state

    def run(self, argv):
        self.calls.append(argv[1:])
        if argv[1] == "list-units":
            return (0, self.listing, "") if self.listing is not False else (1, "", "Failed to connect to bus")
        unit = argv[-1]
        unknown = {"LoadState": self.load_state, "ActiveState": "inactive", "SubState": "dead", "MainPID": "0"}
        props = dict(self.props.get(unit, unknown), WorkingDirectory=str(self.root / "current"))
        return 0, "".join("%s=%s\n" % item for item in props.items()), ""

    def pin(self, unit, release):
        drop_in = self.runtime / (unit + ".d")
        drop_in.mkdir()
        (drop_in / "hitless-pin.conf").write_text(
            "[Service]\nBindReadOnlyPaths=%s:%s\n" % (self.root / "releases" / release, self.root / "current"))

    def observe(self, listed):
        return observe(Systemctl(self.run), "demo-worker", listed, proc=str(self.proc), runtime_dir=str(self.runtime))


def test_the_listing_gives_each_instance_of_the_template_and_its_state_bullets_and_other_templates_aside():
    assert loaded(LISTING, "demo-worker") == {"1": "active", "2": "inactive", "3": "failed", "4-next": "active"}
    assert loaded("", "demo-worker") == {}
    assert loaded("demo-worker@.service loaded active running odd\n", "demo-worker") == {}


def test_discovery_finds_workers_not_inactive_and_overlaps_left_running_or_pinned(tmp_path):
    host = Host(tmp_path, {})
    host.pin("demo-worker@7-next.service", "v1")
    (host.runtime / "demo-worker@8-next.service.d").mkdir()  # no pin in it: not ours
    assert discover(Systemctl(host.run), "demo-worker", str(host.runtime)) == {"1", "3", "4", "7"}
    assert host.calls == [["list-units", "--all", "--plain", "--no-legend", "--full", "--", "demo-worker@*.service"]]


def test_each_worker_is_read_with_the_release_its_process_runs_listed_ones_first(tmp_path):
    host = Host(tmp_path, {"demo-worker@1.service": ("active", "v2"), "demo-worker@3.service": ("failed", None),
                           "demo-worker@4.service": ("active", "v1"), "demo-worker@4-next.service": ("active", "v2")})
    host.pin("demo-worker@4-next.service", "v2")
    seen = host.observe(["2", "1"])
    assert [(w["worker"], w["listed"], w["active_state"], w["running_release"]) for w in seen] == [
        ("2", True, "inactive", None), ("1", True, "active", "v2"),
        ("3", False, "failed", None), ("4", False, "active", "v1")]
    overlap = seen[3]["overlap"]
    assert overlap == {"unit": "demo-worker@4-next.service", "active_state": "active", "main_pid": overlap["main_pid"],
                       "running_release": "v2", "pinned_to": str(host.root / "releases" / "v2")}
    assert seen[1]["unit"] == "demo-worker@1.service" and seen[1]["main_pid"] > 0
    assert seen[0]["overlap"]["pinned_to"] is None
    # Reads only: list-units and show, nothing else.
    assert {call[0] for call in host.calls} == {"list-units", "show"}


def test_a_listed_worker_whose_unit_systemd_does_not_know_says_so(tmp_path):
    host = Host(tmp_path, {}, listing="", load_state="not-found")
    assert [(w["worker"], w["load_state"], w["active_state"]) for w in host.observe(["1"])] == [
        ("1", "not-found", "inactive")]


def test_without_a_worker_unit_nothing_is_read(tmp_path):
    host = Host(tmp_path, {})
    assert read({"worker_unit": None, "workers": []}, Systemctl(host.run)) == []
    assert host.calls == []


@pytest.mark.parametrize("params, param, words", [
    ({"worker_unit": None, "workers": ["1"]}, "workers", "workers needs worker_unit"),
    ({"worker_unit": "demo@worker", "workers": []}, "worker_unit", "is not a template unit prefix"),
    ({"worker_unit": "demo-worker", "workers": ["1-next"]}, "workers", "is not a worker ID"),
    ({"worker_unit": "demo-worker", "workers": ["1", "1"]}, "workers", "lists an ID twice"),
])
def test_bad_names_are_refused_before_systemctl_is_asked(tmp_path, params, param, words):
    host = Host(tmp_path, {})
    with pytest.raises(WorkerError) as refused:
        read(params, Systemctl(host.run), runtime_dir=str(host.runtime))
    assert refused.value.param == param and words in refused.value.msg, refused.value.msg
    assert host.calls == []


def test_a_listing_that_fails_is_an_error_naming_the_command(tmp_path):
    host = Host(tmp_path, {}, listing=False)
    with pytest.raises(InstanceError, match=r"systemctl list-units .* failed \(rc=1\): Failed to connect to bus"):
        host.observe(["1"])
