"""docs/awx: the survey specs are what AWX's API accepts (JobTemplateSurveySpec._validate_spec_data)
and ask only for variables the playbooks read; the example project imports the collection's
playbooks and pins the collection's version."""
import configparser
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
DOCS = os.path.join(REPO, "docs", "awx")
PROJECT = os.path.join(DOCS, "project")
SURVEYS = {"rolling": "survey-rolling.json", "rollback": "survey-rollback.json"}
# AWX's question types and the Python type of their answers and defaults.
TYPES = {"text": str, "textarea": str, "password": str, "multiplechoice": str,
         "multiselect": str, "integer": int, "float": float}


def load(name):
    with open(os.path.join(DOCS, SURVEYS[name])) as handle:
        return json.load(handle)


def playbook_vars(name):
    """The hitless_* variables playbooks/NAME.yml reads."""
    with open(os.path.join(REPO, "playbooks", name + ".yml")) as handle:
        return set(re.findall(r"\bhitless_\w+", handle.read()))


def role_options():
    """The rolling_* variables of the role (its argument spec): any of them may be an extra
    variable of a job of either playbook."""
    with open(os.path.join(REPO, "roles", "rolling", "meta", "argument_specs.yml")) as handle:
        specs = yaml.safe_load(handle)["argument_specs"]
    return {option for entry in specs.values() for option in entry.get("options", {})}


def choices(question):
    found = question["choices"]
    return [c for c in found.splitlines() if c.strip()] if isinstance(found, str) else found


@pytest.mark.parametrize("name", sorted(SURVEYS))
def test_survey_is_what_awx_accepts(name):
    spec = load(name)
    assert isinstance(spec.get("name"), str) and spec["name"]
    assert isinstance(spec.get("description"), str)
    assert isinstance(spec.get("spec"), list) and spec["spec"], "a survey needs a question"
    variables = [q.get("variable") for q in spec["spec"]]
    assert len(variables) == len(set(variables)), variables
    for question in spec["spec"]:
        for field in ("type", "question_name", "variable"):
            assert isinstance(question.get(field), str) and question[field], (field, question)
        assert isinstance(question.get("required"), bool), question
        assert question["type"] in TYPES, question
        for key in ("min", "max"):
            assert question.get(key) is None or isinstance(question[key], int), question
        default = question.get("default")
        if default not in (None, ""):
            assert isinstance(default, TYPES[question["type"]]), question
            assert not str(default).startswith("$encrypted$"), question
        if question["type"] in ("multiplechoice", "multiselect"):
            assert choices(question), question
            defaults = [] if default is None else (default.splitlines()
                                                   if isinstance(default, str) else default)
            assert all(d in choices(question) for d in defaults), question
            assert question["type"] == "multiselect" or len(defaults) <= 1, question
        if question["type"] in ("text", "textarea", "password") and default:
            assert question.get("min", 0) <= len(default) <= question.get("max", 1024), question


@pytest.mark.parametrize("name", sorted(SURVEYS))
def test_survey_asks_only_for_variables_the_playbook_reads(name):
    known = playbook_vars(name) | role_options()
    for question in load(name)["spec"]:
        assert question["variable"] in known, (
            "%s: playbooks/%s.yml reads no variable %s" % (SURVEYS[name], name,
                                                           question["variable"]))


@pytest.mark.parametrize("name", sorted(SURVEYS))
def test_optional_questions_have_no_default(name):
    # AWX passes a question's default even when the question is left empty: "" would then be
    # defined, and `| default(...)` in the playbooks would not apply (the deploy id of a
    # sliced job, the previous release of a rollback).
    for question in load(name)["spec"]:
        if not question["required"]:
            assert "default" not in question, question


def test_rolling_survey_asks_for_a_verified_release():
    questions = {q["variable"]: q for q in load("rolling")["spec"]}
    for variable in ("hitless_release_url", "hitless_release_checksum"):
        assert questions[variable]["required"], questions[variable]
    checksum = questions["hitless_release_checksum"]
    assert checksum["min"] == checksum["max"] == len("sha256:") + 64, checksum
    assert questions["hitless_serial"]["default"] == "1", questions["hitless_serial"]


def test_rollback_survey_defaults_to_the_previous_release():
    questions = {q["variable"]: q for q in load("rollback")["spec"]}
    assert not questions["hitless_release_name"]["required"]
    assert not {"hitless_release_url", "hitless_release_src"} & set(questions), questions


@pytest.mark.parametrize("playbook, imported", [("deploy.yml", "hitless.deploy.rolling"),
                                                ("rollback.yml", "hitless.deploy.rollback")])
def test_example_project_imports_the_collections_playbook(playbook, imported):
    with open(os.path.join(PROJECT, playbook)) as handle:
        plays = yaml.safe_load(handle)
    assert [p.get("ansible.builtin.import_playbook") for p in plays] == [imported], plays


def test_example_project_pins_this_version_of_the_collection():
    with open(os.path.join(PROJECT, "collections", "requirements.yml")) as handle:
        wanted = {c["name"]: c for c in yaml.safe_load(handle)["collections"]}
    with open(os.path.join(REPO, "galaxy.yml")) as handle:
        version = yaml.safe_load(handle)["version"]
    assert wanted["hitless.deploy"]["version"] == version, (wanted, version)
    config = configparser.ConfigParser()
    assert config.read(os.path.join(PROJECT, "ansible.cfg"))
    assert config.getboolean("ssh_connection", "pipelining")


def test_example_project_playbooks_pass_a_syntax_check(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  children:\n    app: {hosts: {app1: {}}}\n"
                         "    haproxy: {hosts: {lb1: {}}}\n")
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    proc = subprocess.run([playbook, "--syntax-check", "-i", str(inventory), "deploy.yml",
                           "rollback.yml"], cwd=PROJECT, capture_output=True, text=True,
                          timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
