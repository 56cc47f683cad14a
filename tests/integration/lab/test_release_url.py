"""Deploys from an artifact repository (``hitless_release_url``), on a lab of their own.

The lab ``itest-url`` (lb1 in front of ONE app host, app1; booted for this module only) starts
on v1. A tiny HTTP server on 127.0.0.1, started by this module, plays the repository: it serves
$HITLESS_RELEASES under ``/repo/NAME`` only to ``Authorization: Bearer TOKEN`` (a fresh random
token), answers ``/redirect/NAME`` (same token) with a 302 to ``/storage/NAME?signature=...``
(presigned storage, which must NOT get the token), and records every request. Each deploy runs
under the load probe and the ``show stat`` poller (one failed request fails a test), with
``-vvv``, and the token must appear nowhere: not in the output, the deploy records, or the
hosts' files and journals. Each test starts from whatever release serves (none depends on
another having run or passed):

- a wrong checksum: the download is refused in preflight, nothing changed anywhere;
- no checksum, or a malformed one: refused before any request, nothing changed;
- the right checksum: the next release from the URL through the redirect, one download;
- the same URL again: unchanged, no request at all (the controller's cache);
- a wrong token (its right checksum): 401, refused naming the headers, nothing changed.
"""
import hashlib
import json
import os
import re
import secrets
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _deploy import (NEXT, Run, base_name, check_clean, check_under_load,  # noqa: E402
                     current_release, deploy_runs, host_state, show_stat)
from _labs import LabError, booted_lab, ensure_releases  # noqa: E402
from _repository import serving  # noqa: E402

APP_HOST = "app1"
# A message of the role (the rescue's final fail), as -vvv prints it: one JSON string.
MSG_RE = re.compile(r'"msg": ("(?:[^"\\]|\\.)*")')


def sha256(release):
    with open(os.path.join(os.environ["HITLESS_RELEASES"], release + ".tar.gz"), "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


@pytest.fixture(scope="module")
def repository():
    with serving(ensure_releases()) as repo:
        yield repo


@pytest.fixture(scope="module")
def url_lab():
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (overlay mounts, bridges, systemd-nspawn)")
    try:
        with booted_lab("itest-url", "--app-hosts", "1", "--topology", "lb") as booted:
            yield booted
    except LabError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """The controller's download cache (rolling_release_cache_dir) of this module's deploys."""
    return str(tmp_path_factory.mktemp("release-cache"))


# --- deploys and checks --------------------------------------------------------------------

def url_deploy(lab, workdir, repo, cache, path, checksum, token=None):
    """Deploy the archive at ``path`` of the repository with ``-vvv`` under the probes."""
    extra = {"hitless_release_url": repo.url(path), "hitless_release_checksum": checksum,
             "hitless_release_url_headers": {
                 "Authorization": "Bearer " + (token or repo.token)},
             "rolling_release_cache_dir": cache}
    return deploy_runs(lab, workdir, [Run(extra_vars=extra, args=["-vvv"])])


def role_message(output, host):
    """The role's final failure message for ``host`` (``-vvv`` prints results indented)."""
    for match in MSG_RE.finditer(output):
        msg = json.loads(match.group(1))
        if msg.startswith("hitless.deploy.rolling failed on %s " % host):
            return msg
    return ""


def snapshot(lab):
    """What a deploy may change: the app host's releases, links, marks and units, and every
    server of lb1 with its state."""
    return {"host": host_state(lab, APP_HOST),
            "servers": {lb: show_stat(lab, lb) for lb in lab.groups["haproxy"]}}


def check_secret_kept(lab, result, workdir, secret):
    """``secret`` is nowhere: the -vvv output, the files of the run (records, playbook log,
    probe results), the hosts' deploy state and journals."""
    assert secret not in result.output, "the token is in the ansible-playbook -vvv output"
    for folder, _dirs, files in os.walk(str(workdir)):
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                assert secret.encode() not in handle.read(), os.path.join(folder, name)
    command = ("! grep -rlF %s /srv /var/lib/hitless-deploy /root/.ansible 2>/dev/null "
               "&& ! journalctl -q -o cat | grep -F %s" % (secret, secret))
    for host in lab.groups["app"] + lab.groups["haproxy"]:
        proc = lab.ssh(host, command)
        assert proc.returncode == 0, "%s holds the token: %s" % (host, proc.stdout)


def check_refused(lab, result, workdir, repo, before, serving, cause):
    """The deploy failed in preflight with ``cause`` and changed nothing; no request failed."""
    assert result.rc != 0, result.tail()
    message = role_message(result.output, APP_HOST)
    assert message.startswith(
        "hitless.deploy.rolling failed on %s at step preflight (" % APP_HOST), result.tail(60)
    assert re.search(cause, message), message
    assert message.endswith("Nothing was changed."), message
    assert result.recap[APP_HOST]["changed"] == 0, (result.recap, result.tail(60))
    check_under_load(result, swapped=(), app_hosts=[APP_HOST])
    check_clean(lab, serving)
    assert snapshot(lab) == before
    assert result.records[APP_HOST]["outcome"] == "failed", result.records
    check_secret_kept(lab, result, workdir, repo.token)
    print(message)
    print(result.summary())


def test_wrong_checksum_is_refused_and_not_kept(url_lab, repository, cache_dir, tmp_path):
    serving = current_release(url_lab, APP_HOST)
    before, count = snapshot(url_lab), len(repository.requests)
    # A real archive's checksum, just not this one's.
    wrong = sha256("v3")
    result = url_deploy(url_lab, tmp_path, repository, cache_dir, "/repo/v2.tar.gz",
                        "sha256:" + wrong)
    check_refused(url_lab, result, tmp_path, repository, before, serving,
                  r"\(Check the download of rolling_release_url\): The archive downloaded from "
                  r"http://127\.0\.0\.1:\d+/repo/v2\.tar\.gz does not match "
                  r"rolling_release_checksum \(hitless_release_checksum\) sha256:%s: its sha256 "
                  r"is %s\. It was not kept and nothing was unpacked" % (wrong, sha256("v2")))
    # Downloaded once (by the controller, with the token), refused, not kept.
    assert repository.since(count) == [("/repo/v2.tar.gz", 200, "token")]
    assert not os.path.exists(os.path.join(cache_dir, wrong, "v2.tar.gz"))


@pytest.mark.parametrize("checksum, got", [
    ("", "nothing"),
    ("md5:0123456789abcdef0123456789abcdef", '"md5:0123456789abcdef0123456789abcdef"'),
    ("sha256:" + "0" * 63, '"sha256:%s"' % ("0" * 63)),
], ids=["missing", "md5", "short"])
def test_missing_or_malformed_checksum_is_refused_before_any_download(
        url_lab, repository, cache_dir, tmp_path, checksum, got):
    serving = current_release(url_lab, APP_HOST)
    before, count = snapshot(url_lab), len(repository.requests)
    result = url_deploy(url_lab, tmp_path, repository, cache_dir, "/repo/v2.tar.gz", checksum)
    check_refused(url_lab, result, tmp_path, repository, before, serving,
                  r"\(Check rolling_release_checksum\): rolling_release_checksum "
                  r"\(hitless_release_checksum\) is required with rolling_release_url and must "
                  r"be sha256:<64 hex digits>, .*; got %s\. Nothing" % re.escape(got))
    assert repository.since(count) == [], "nothing may be downloaded without a checksum"


def test_right_checksum_deploys_with_one_download_through_a_redirect(url_lab, repository,
                                                                     tmp_path):
    old = current_release(url_lab, APP_HOST)
    new = NEXT[old]
    # A cache of its own: the download must happen here, whatever ran before.
    cache = str(tmp_path / "cache")
    count = len(repository.requests)
    result = url_deploy(url_lab, tmp_path, repository, cache, "/redirect/%s.tar.gz" % new,
                        "sha256:" + sha256(new))
    assert result.rc == 0, result.tail(60)
    check_under_load(result, swapped=[APP_HOST], app_hosts=[APP_HOST])
    check_clean(url_lab, new)
    assert result.answered_after_end() == {(APP_HOST, new)}, result.answered_after_end()
    record = result.records[APP_HOST]
    assert (record["outcome"], base_name(record["release"]),
            base_name(record["from_release"])) == ("deployed", new, old), record
    # One download for the run; the token went to the repository, not on to the storage.
    assert repository.since(count) == [("/redirect/%s.tar.gz" % new, 302, "token"),
                                       ("/storage/%s.tar.gz" % new, 200, None)]
    cached = os.path.join(cache, sha256(new), "%s.tar.gz" % new)
    with open(cached, "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == sha256(new)
    assert oct(os.stat(cached).st_mode & 0o777) == "0o600"
    check_secret_kept(url_lab, result, tmp_path, repository.token)
    print(result.summary())


def test_same_url_again_is_unchanged_from_the_cache(url_lab, repository, tmp_path):
    new = NEXT[current_release(url_lab, APP_HOST)]
    cache, path = str(tmp_path / "cache"), "/repo/%s.tar.gz" % new
    checksum = "sha256:" + sha256(new)
    first = url_deploy(url_lab, tmp_path / "first", repository, cache, path, checksum)
    assert first.rc == 0, "setup: the first deploy from the URL: %s" % first.tail(60)
    check_under_load(first, swapped=[APP_HOST], app_hosts=[APP_HOST])
    before, count = snapshot(url_lab), len(repository.requests)
    result = url_deploy(url_lab, tmp_path, repository, cache, path, checksum)
    assert result.rc == 0, result.tail(60)
    assert result.recap[APP_HOST]["changed"] == 0, (result.recap, result.tail(60))
    assert repository.since(count) == [], "the archive in the cache must be used as it is"
    check_under_load(result, swapped=(), app_hosts=[APP_HOST])
    check_clean(url_lab, new)
    assert snapshot(url_lab) == before
    assert result.records[APP_HOST]["outcome"] == "unchanged", result.records
    check_secret_kept(url_lab, result, tmp_path, repository.token)
    print(result.summary())


def test_wrong_token_is_refused_and_never_written_anywhere(url_lab, repository, cache_dir,
                                                           tmp_path):
    serving = current_release(url_lab, APP_HOST)
    before, count = snapshot(url_lab), len(repository.requests)
    wrong_token = secrets.token_hex(16)
    result = url_deploy(url_lab, tmp_path, repository, cache_dir, "/repo/v3.tar.gz",
                        "sha256:" + sha256("v3"), token=wrong_token)
    check_refused(url_lab, result, tmp_path, repository, before, serving,
                  r"\(Check the download of rolling_release_url\): Cannot download "
                  r"rolling_release_url \(hitless_release_url\) "
                  r"http://127\.0\.0\.1:\d+/repo/v3\.tar\.gz: HTTP status 401 \(.*\), check the "
                  r"token in rolling_release_url_headers \(hitless_release_url_headers\)")
    check_secret_kept(url_lab, result, tmp_path, wrong_token)
    assert repository.since(count) == [("/repo/v3.tar.gz", 401, "wrong")]
    assert not os.path.exists(os.path.join(cache_dir, sha256("v3"), "v3.tar.gz"))
