import pytest

from ansible_collections.hitless.deploy.plugins.action.release import (
    TemplateError, check_templates)


def test_check_templates_defaults_mode():
    assert check_templates(None) == []
    assert check_templates([{"src": "app.ini.j2", "dest": "config/app.ini"},
                            {"src": "b.j2", "dest": "b", "mode": "0600"}]) == [
        ("app.ini.j2", "config/app.ini", "0640"), ("b.j2", "b", "0600")]


@pytest.mark.parametrize("templates, message", [
    ("app.ini.j2", "must be a list"),
    ([{"src": "a.j2"}], r"templates\[0\] must have src and dest"),
    ([{"dest": "a"}], r"templates\[0\] must have src and dest"),
    (["a.j2"], r"templates\[0\] must have src and dest"),
    ([{"src": "a.j2", "dest": "a", "owner": "root"}], r"unknown keys owner"),
])
def test_check_templates_refuses(templates, message):
    with pytest.raises(TemplateError, match=message):
        check_templates(templates)
