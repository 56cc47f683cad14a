"""The rolling deploy on the session lab (lb1 in front of app1 and app2), under load.

Every deploy runs under the load probe (keep-alive, fresh, /slow and SSE clients at ~50 req/s)
and a 50 ms ``show stat`` poller; one failed request fails the test. The session lab is shared
with other test files, so each test first brings it to the state it starts from (``served``:
a release serving on every app host, after a given one), deploying under load when it is not
there, and asserts that setup too. No test depends on another having run or passed.
"""
import json
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _deploy import (CLONE_PORT, ROOT, base_name, check_clean, check_under_load,  # noqa: E402
                     current_release, deploy, host_state, role_failures, serving_state, sh)

PHASES = ["preflight", "prepare", "clone", "route_to_clone", "upgrade", "post_start",
          "route_back", "cleanup"]


def previous_release(lab, host):
    return base_name(os.path.basename(sh(lab, host, "readlink %s/previous" % ROOT)))


def served(lab, workdir, release, after=None):
    """Bring the lab to ``release`` serving on every app host (``previous`` ``after``, when
    given), deploying ``after`` and then ``release`` under load where it is not so already."""
    apps = lab.groups["app"]
    steps = [release] if after is None else [after, release]

    def there():
        return all(current_release(lab, h) == release and
                   (after is None or previous_release(lab, h) == after) for h in apps)

    if not there():
        for step in steps:
            # ``after`` already serving needs no deploy; ``release`` must come after it.
            if step != release and all(current_release(lab, h) == step for h in apps):
                continue
            result = deploy(lab, os.path.join(workdir, "setup-" + step), release=step,
                            extra_vars={"hitless_serial": "100%"})
            assert result.rc == 0, "setup: deploying %s: %s" % (step, result.tail())
            check_under_load(result, swapped=apps, app_hosts=apps)
    check_clean(lab, release)
    assert there(), {h: (current_release(lab, h), previous_release(lab, h)) for h in apps}


def check_records(result, hosts, outcome, release, from_release):
    for host in hosts:
        record = result.records[host]
        # Release directories carry the digest of their configuration: v2+1a2b3c4d.
        assert (record["outcome"], base_name(record["release"]),
                base_name(record["from_release"])) == (outcome, release, from_release), record


def failed_deploy(lab, workdir, release):
    """Deploy ``release``; return the result and what ``previous`` was on each host before."""
    previous = {h: previous_release(lab, h) for h in lab.groups["app"]}
    return deploy(lab, workdir, release=release), previous


def check_rolled_back(lab, result, previous, release, step, cause):
    """Deploy of ``release`` failed at ``step`` on the first app host, v2 serves again."""
    first, rest = lab.groups["app"][0], lab.groups["app"][1:]
    assert result.rc != 0, result.tail()
    messages = role_failures(result.output)
    assert list(messages) == [first], result.tail(60)
    message = messages[first]
    prefix = "hitless.deploy.rolling failed on %s at step %s " % (first, step)
    assert message.startswith(prefix), message
    assert re.search(cause, message), message
    assert re.search(r"Rolled back: release v2\+\w+ serves from the original again", message), message
    assert re.search(r"release %s\+\w+ is marked bad" % release, message), message
    # The clone stood in while the original tried the new release; nobody ever saw it answer.
    check_under_load(result, swapped=[first], app_hosts=lab.groups["app"])
    assert release not in result.by_version, result.by_version
    assert result.versions_from(first, CLONE_PORT) == {"v2"}, result.by_instance
    check_clean(lab, "v2")
    bad = json.loads(sh(lab, first, "cat %s/.hitless/bad/%s+*" % (ROOT, release)))
    assert bad["step"] == step, bad
    record = result.records[first]
    assert record["outcome"] == "failed" and record["failure"]["step"] == step, record
    assert [s["step"] for s in record["steps"]] == PHASES[:PHASES.index(step) + 1] + ["rollback"]
    # max_fail_percentage 0: the rollout stopped at the first host. The others were staged
    # with it (the release unpacked beside the serving one) and never swapped.
    assert not set(rest) & set(result.records), result.records.keys()
    for host in rest:
        assert sh(lab, host, "ls %s/releases" % ROOT).count(release + "+") == 1, host
    # Else hitless.deploy.rollback would find the serving release as the one to go back to.
    assert previous_release(lab, first) == previous[first], (
        "%s: previous is %s after the rollback, it was %s before the deploy" % (
            first, previous_release(lab, first), previous[first]))


def test_v1_to_v2_serial_1_stages_both_then_swaps_one_host_at_a_time(lab, tmp_path):
    apps = lab.groups["app"]
    served(lab, str(tmp_path), "v1")
    result = deploy(lab, tmp_path, release="v2", extra_vars={"hitless_serial": 1})
    assert result.rc == 0, result.tail()
    check_under_load(result, swapped=apps, app_hosts=apps)
    check_clean(lab, "v2")
    assert result.answered_after_end() == {(h, "v2") for h in apps}, result.answered_after_end()
    check_records(result, apps, "deployed", "v2", "v1")
    for host in apps:
        assert result.versions_from(host, CLONE_PORT) == {"v1"}, result.by_instance
        record = result.records[host]
        assert [s["step"] for s in record["steps"]] == PHASES, record["steps"]
        assert float(record["clone_lifetime"]) > 0, record
    # Both staged at once, then serial 1: the second host's clone starts after the first host
    # is done, never two clones at once.
    first, second = (result.records[h] for h in apps)
    marks = {h: {m["step"]: float(m["at"]) for m in result.records[h]["marks"]} for h in apps}
    assert marks[apps[1]]["preflight"] < marks[apps[0]]["clone"], marks
    assert marks[apps[1]]["prepare"] < marks[apps[0]]["clone"], marks
    assert marks[apps[1]]["clone"] >= float(first["started_at"]) + sum(
        s["seconds"] for s in first["steps"]), (first, second)
    for lb, poller in result.pollers.items():
        both = [s[0] for s in poller["samples"]
                if sum(n.endswith("-clone") and v.startswith("UP") for n, v in s[2].items()) > 1]
        assert not both, "%s had two clones at %s s" % (lb, both[:5])
    print(result.summary())


def test_second_deploy_of_the_same_release_changes_nothing(lab, tmp_path):
    apps = lab.groups["app"]
    served(lab, str(tmp_path), "v2")
    before = {h: host_state(lab, h) for h in apps}
    # Both hosts in one batch: nothing to swap, so serial does not matter and this is quicker.
    result = deploy(lab, tmp_path, release="v2", extra_vars={"hitless_serial": "100%"})
    assert result.rc == 0, result.tail()
    assert set(result.recap) == set(apps), result.recap
    assert {h: r["changed"] for h, r in result.recap.items()} == dict.fromkeys(apps, 0), (
        result.recap, result.tail(60))
    check_under_load(result, swapped=(), app_hosts=apps)
    check_clean(lab, "v2")
    assert {h: host_state(lab, h) for h in apps} == before
    check_records(result, apps, "unchanged", "v2", "v2")
    print(result.summary())


# (d) a release whose checks never pass, (e) one that dies at start.
@pytest.mark.parametrize("release, step, cause", [
    ("broken", "post_start", r"post_start checks failed.*health.*status 503"),
    ("crash", "upgrade", r"demo@8080\S* died while starting"),
])
def test_failing_release_is_rolled_back_and_marked_bad(lab, tmp_path, release, step, cause):
    served(lab, str(tmp_path), "v2")
    sh(lab, lab.groups["app"][0], "rm -f %s/.hitless/bad/%s+*" % (ROOT, release))
    rest = lab.groups["app"][1:]
    untouched = {h: serving_state(lab, h) for h in rest}
    result, previous = failed_deploy(lab, tmp_path, release)
    check_rolled_back(lab, result, previous, release, step, cause)
    assert {h: serving_state(lab, h) for h in rest} == untouched
    print(result.summary())


def test_a_release_marked_bad_is_refused_before_anything_changes(lab, tmp_path):
    apps = lab.groups["app"]
    first = apps[0]
    served(lab, str(tmp_path), "v2")
    if sh(lab, first, "ls %s/.hitless/bad/ | grep -c '^broken+' || true" % ROOT) == "0":
        result, previous = failed_deploy(lab, os.path.join(str(tmp_path), "setup-broken"),
                                         "broken")
        check_rolled_back(lab, result, previous, "broken", "post_start",
                          r"post_start checks failed")
    before = {h: host_state(lab, h) for h in apps}
    result = deploy(lab, tmp_path, release="broken")
    assert result.rc != 0, result.tail()
    message = role_failures(result.output).get(first, "")
    # Refused when staging, before anything is written: the mark names this release with this
    # configuration (its directory).
    assert message.startswith("hitless.deploy.rolling failed on %s at step prepare " % first), (
        result.tail(60))
    assert re.search(r"release broken\+\w+ is marked bad: failed at post_start", message), message
    assert message.endswith("Nothing that serves was changed."), message
    check_under_load(result, swapped=(), app_hosts=apps)
    check_clean(lab, "v2")
    assert {h: host_state(lab, h) for h in apps} == before
    assert result.recap[first]["changed"] == 0, (result.recap, result.tail(60))
    print(result.summary())


def test_rollback_playbook_moves_both_hosts_back_to_the_previous_release(lab, tmp_path):
    apps = lab.groups["app"]
    served(lab, str(tmp_path), "v2", after="v1")
    # Both hosts in one batch (serial as a percentage): two clones stand in at once.
    result = deploy(lab, tmp_path, playbook="rollback", extra_vars={"hitless_serial": "100%"})
    assert result.rc == 0, result.tail()
    check_under_load(result, swapped=apps, app_hosts=apps)
    check_clean(lab, "v1")
    assert result.answered_after_end() == {(h, "v1") for h in apps}, result.answered_after_end()
    check_records(result, apps, "deployed", "v1", "v2")
    for host in apps:
        assert result.versions_from(host, CLONE_PORT) == {"v2"}, result.by_instance
    print(result.summary())
