"""The rolling deploy on the other shapes of a site, under load.

Two labs, booted side by side for this module only:
- ``itest-lb2``: two HAProxy hosts (lb1, lb2) in front of ONE app host (app1). Probes and
  ``show stat`` pollers run against both LB hosts. (f) v1 -> v2: both LB hosts rewritten and
  restored; then (b) v2 -> v3, the hard case where the clone is the only other server. (b)
  builds on (f) and is skipped, naming it, when (f) did not pass.
- ``itest-one`` (``--topology single``): HAProxy on the app host itself, the clone's server
  added over loopback. (c) v1 -> v2.

One failed request fails a test; so does one ``show stat`` sample with fewer UP servers than
app hosts.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _deploy import check_clean, check_under_load, current_release, deploy  # noqa: E402
from _labs import booted_labs  # noqa: E402

# Tests that share one lab run on one xdist worker (make integration-lab: --dist loadgroup).
pytestmark = pytest.mark.xdist_group('topologies')

DONE = set()


def require(*steps):
    missing = [step for step in steps if step not in DONE]
    if missing:
        pytest.skip("builds on the earlier test(s) %s, which did not pass" % ", ".join(missing))


@pytest.fixture(scope="module")
def labs():
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (overlay mounts, bridges, systemd-nspawn)")
    with booted_labs(("itest-lb2", "--lb-hosts", "2", "--app-hosts", "1"),
                     ("itest-one", "--topology", "single")) as (lb2, single):
        yield {"lb2": lb2, "single": single}


def check_deployed(lab, result, release, from_release):
    """app1 moved from ``from_release`` to ``release`` through its clone, nothing failed."""
    assert result.rc == 0, result.tail()
    check_under_load(result, swapped=["app1"], app_hosts=["app1"])
    check_clean(lab, release)
    assert result.answered_after_end() == {("app1", release)}, result.answered_after_end()
    record = result.records["app1"]
    assert (record["outcome"], record["release"], record["from_release"]) == (
        "deployed", release, from_release), record
    print(result.summary())


def test_c_haproxy_on_the_app_host(labs, tmp_path):
    lab = labs["single"]
    assert lab.groups == {"haproxy": ["app1"], "app": ["app1"]}
    assert current_release(lab, "app1") == "v1"
    result = deploy(lab, tmp_path, release="v2")
    check_deployed(lab, result, "v2", "v1")


def test_f_two_lb_hosts_both_rewritten_and_restored(labs, tmp_path):
    lab = labs["lb2"]
    assert lab.groups == {"haproxy": ["lb1", "lb2"], "app": ["app1"]}
    assert current_release(lab, "app1") == "v1"
    result = deploy(lab, tmp_path, release="v2")
    # Per LB host: no failed request, one server UP at every sample, the clone seen.
    assert sorted(result.pollers) == sorted(result.probes) == ["lb1", "lb2"]
    check_deployed(lab, result, "v2", "v1")
    DONE.add("f")


def test_b_single_app_host_v2_to_v3(labs, tmp_path):
    require("f")
    lab = labs["lb2"]
    result = deploy(lab, tmp_path, release="v3")
    check_deployed(lab, result, "v3", "v2")
    # While the original restarted, the clone alone answered, with the release it stood in for.
    assert result.versions_from("app1", 8081) == {"v2"}, result.by_instance
    assert set(result.by_version) == {"v2", "v3"}, result.by_version
