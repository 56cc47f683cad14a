import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.hitless.deploy.plugins.filter.fleet_status import FilterModule

fleet_status = FilterModule().filters()["fleet_status"]
SPEC = {"host": "app1", "app": "demo", "backend": "demo", "server": "app1",
        "clone_server": "app1-clone", "port": 8080, "clone_port": 8081, "haproxy_hosts": ["lb1"]}


def test_results_are_paired_by_their_items_and_a_missing_lock_read_is_a_finding():
    info = [{"item": ["lb1", "demo"], "backends": {"demo": {"servers": {
        "app1": {"status": "UP", "admin_state": "ready", "scur": 1}}}}}]
    status = fleet_status([{"spec": SPEC, "read": {"unreachable": True, "msg": "down"}}], info, [])
    assert status["haproxy"][0]["error"] == "the lock was not read"
    assert status["lines"][0].startswith("HOST") and not status["consistent"]


@pytest.mark.parametrize("apps, haproxy, words", [
    ([{"read": {}}], [], "list of {spec, read}"),
    ([], {"results": []}, "results of a loop"),
    ([], [{"item": "lb1"}], "item [HAProxy host, backend]"),
    ([{"spec": dict(SPEC, instances=[{"port": 8080}]), "read": {}}], [], "instances of app1 must be a list of {port"),
])
def test_bad_input_is_refused_naming_it(apps, haproxy, words):
    with pytest.raises(AnsibleFilterError, match=r"fleet_status: .*" + words.replace("[", r"\[").replace("{", r"\{")):
        fleet_status(apps, haproxy, [])
