import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.hitless.deploy.plugins.filter.systemd_environment import systemd_environment


def test_sorted_and_quoted():
    text = systemd_environment({"B": 'say "hi" $HOME `x` \\n', "A": 1})
    lines = text.splitlines()
    assert lines[0].startswith("#")
    assert lines[1:] == ['A="1"', 'B="say \\"hi\\" \\$HOME \\`x\\` \\\\n"']


def test_empty_dict_is_only_the_header():
    assert systemd_environment({}).count("\n") == 1


@pytest.mark.parametrize("bad, word", [
    ({"1X": "a"}, "valid variable name"),
    ({"A-B": "a"}, "valid variable name"),
    ({"PORT": "80"}, "set by the unit"),
    ({"A": "one\ntwo"}, "one line"),
])
def test_rejects(bad, word):
    with pytest.raises(AnsibleFilterError, match=word):
        systemd_environment(bad)


def test_reserved_is_configurable():
    assert 'PORT="80"' in systemd_environment({"PORT": 80}, reserved=[])


def test_not_a_dict():
    with pytest.raises(AnsibleFilterError, match="expects a dict"):
        systemd_environment(["A"])
