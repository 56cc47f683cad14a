import json
import os

from ansible_collections.hitless.deploy.plugins.module_utils import _release_index as index


def tree(tmp_path, *names):
    """Releases with records made at the epoch, so that only their served marks order them."""
    root = tmp_path / "srv"
    for name in names:
        (root / "releases" / name).mkdir(parents=True)
        (root / "releases" / name / index.RECORD).write_text(json.dumps({"created": "1970-01-01T00:00:00+00:00"}))
    return root


def served(root, name, at):
    marks = root / ".hitless" / "served"
    marks.mkdir(parents=True, exist_ok=True)
    (marks / name).write_text("")
    os.utime(str(marks / name), (at, at))


def test_releases_come_most_recently_served_first_whatever_their_names(tmp_path):
    root = tree(tmp_path, "v10", "v9", "abc123", "v2+ff00")
    (root / "releases" / ".tmp-v11-x").mkdir()
    os.symlink("v9", str(root / "releases" / "link"))
    for name, at in (("v9", 100), ("v10", 300), ("abc123", 200), ("v2+ff00", 50)):
        served(root, name, at)
    assert index.index(str(root))["releases"] == ["v10", "abc123", "v9", "v2+ff00"]


def test_a_release_never_served_counts_from_its_record(tmp_path):
    root = tree(tmp_path, "v1", "v2")
    served(root, "v1", 1000)
    # Created after v1 was last served (2001 > 1000 s after the epoch).
    (root / "releases" / "v2" / index.RECORD).write_text(json.dumps({"created": "2001-01-01T00:00:00+00:00"}))
    assert index.index(str(root))["releases"] == ["v2", "v1"]


def test_bad_marks_are_read_as_the_release_module_writes_them_and_never_raise(tmp_path):
    root = tree(tmp_path, "v2")
    bad = root / ".hitless" / "bad"
    bad.mkdir(parents=True)
    (bad / "v2").write_text(json.dumps({"step": "post_start", "cause": "GET /health returned 500"}))
    (bad / "gone").write_text("marked by hand\n")
    (bad / "odd").mkdir()
    marks = index.index(str(root))["bad"]
    assert marks["v2"] == {"step": "post_start", "cause": "GET /health returned 500"}
    assert marks["gone"] == {"cause": "marked by hand"}
    assert "not a regular file" in marks["odd"]["cause"]


def test_an_empty_root_has_nothing(tmp_path):
    assert index.index(str(tmp_path / "nowhere")) == {"releases": [], "bad": {}}
