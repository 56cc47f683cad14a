"""The shape of a lab: names, networks, addresses, groups and the files written for it."""
import pytest
import yaml

import _plan


@pytest.mark.parametrize("name, net", [("lab", "10.213.0"), ("itest", "10.213.1"),
                                       ("molecule", "10.213.2")])
def test_known_lab_networks(name, net):
    assert _plan.lab_net(name) == net
    assert _plan.bridge_name(name) == "hd-" + name


def test_derived_networks_are_stable_and_clear_of_the_fixed_ones():
    assert _plan.lab_net("roles") == _plan.lab_net("roles")
    thirds = {int(_plan.lab_net("x%d" % i).split(".")[2]) for i in range(300)}
    assert min(thirds) >= 16 and max(thirds) <= 254 and len(thirds) > 100


def test_explicit_network():
    assert _plan.lab_net("any", "10.213.7") == "10.213.7"
    for bad in ("10.213", "10.213.300", "8.8.8", "10.213.7.0"):
        with pytest.raises(_plan.PlanError, match="--net"):
            _plan.lab_net("any", bad)


@pytest.mark.parametrize("name", ["", "Lab", "1lab", "a" * 13, "lab_1", "lab-", "l/b"])
def test_bad_names(name):
    with pytest.raises(_plan.PlanError, match="lab name"):
        _plan.check_name(name)


def test_default_topology_addresses_and_groups():
    hosts = _plan.plan_hosts("10.213.1")
    assert [(h["name"], h["address"], h["groups"]) for h in hosts] == [
        ("lb1", "10.213.1.10", ["haproxy"]),
        ("app1", "10.213.1.11", ["app"]),
        ("app2", "10.213.1.12", ["app"]),
    ]
    assert _plan.lb_url(hosts) == "http://10.213.1.10:80"


def test_several_lb_hosts_move_app_hosts_to_21():
    hosts = _plan.plan_hosts("10.213.0", app_hosts=3, lb_hosts=2)
    assert {h["name"]: h["address"].rsplit(".", 1)[1] for h in hosts} == {
        "lb1": "10", "lb2": "11", "app1": "21", "app2": "22", "app3": "23"}


def test_single_topology_is_one_host_in_both_groups():
    hosts = _plan.plan_hosts("10.213.0", "single", app_hosts=5, lb_hosts=3)
    assert hosts == [{"name": "app1", "address": "10.213.0.11", "groups": ["haproxy", "app"]}]
    assert _plan.lb_url(hosts) == "http://10.213.0.11:80"


@pytest.mark.parametrize("kwargs, match", [({"app_hosts": 0}, "--app-hosts"),
                                           ({"lb_hosts": 11}, "--lb-hosts"),
                                           ({"topology": "mesh"}, "--topology")])
def test_bad_shapes(kwargs, match):
    with pytest.raises(_plan.PlanError, match=match):
        _plan.plan_hosts("10.213.0", **kwargs)


def test_inventory_is_yaml_ansible_reads():
    hosts = _plan.plan_hosts("10.213.1", "single")
    data = yaml.safe_load(_plan.render_inventory("itest", hosts, "/x/.lab/itest/id_ed25519"))
    assert data["all"]["vars"] == {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": "/x/.lab/itest/id_ed25519",
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
                                   " -o ControlMaster=auto -o ControlPersist=60s",
        "ansible_python_interpreter": "/usr/bin/python3",
        "lab_name": "itest",
        "lab_lb_url": "http://10.213.1.11:80",
    }
    assert data["all"]["children"] == {
        "haproxy": {"hosts": {"app1": {"ansible_host": "10.213.1.11"}}},
        "app": {"hosts": {"app1": {"ansible_host": "10.213.1.11"}}},
    }


def test_guest_files():
    hosts = _plan.plan_hosts("10.213.1", app_hosts=1)
    assert _plan.render_etc_hosts(hosts).splitlines()[-2:] == ["10.213.1.10\tlb1",
                                                               "10.213.1.11\tapp1"]
    assert _plan.render_network("10.213.1.11", "10.213.1") == (
        "[Match]\nName=host0\n\n[Network]\nAddress=10.213.1.11/24\nGateway=10.213.1.1\n")


def test_suites_lb_hosts_may_run_another_release():
    hosts = _plan.plan_hosts("10.213.1", app_hosts=2, lb_hosts=2)
    assert _plan.host_suites(hosts, "bullseye") == {
        "lb1": "bullseye", "lb2": "bullseye", "app1": "bullseye", "app2": "bullseye"}
    assert _plan.host_suites(hosts, "bullseye", "trixie") == {
        "lb1": "trixie", "lb2": "trixie", "app1": "bullseye", "app2": "bullseye"}


def test_suites_single_host_has_one_release():
    hosts = _plan.plan_hosts("10.213.1", "single")
    assert _plan.host_suites(hosts, "trixie", "trixie") == {"app1": "trixie"}
    with pytest.raises(_plan.PlanError, match="topology single"):
        _plan.host_suites(hosts, "trixie", "bullseye")


def test_inventory_names_each_hosts_release():
    hosts = _plan.plan_hosts("10.213.1", app_hosts=1)
    suites = _plan.host_suites(hosts, "bullseye", "trixie")
    data = yaml.safe_load(_plan.render_inventory("itest", hosts, "/k", suites))
    assert data["all"]["children"]["haproxy"]["hosts"]["lb1"]["lab_debian_suite"] == "trixie"
    assert data["all"]["children"]["app"]["hosts"]["app1"] == {
        "ansible_host": "10.213.1.11", "lab_debian_suite": "bullseye"}


@pytest.mark.parametrize("topology,lb_hosts", [("lb", 1), ("lb", 10), ("single", 1)])
def test_the_queue_host_never_takes_an_lb_or_app_address(topology, lb_hosts):
    hosts = _plan.plan_hosts("10.213.1", topology, app_hosts=3, lb_hosts=lb_hosts, queue_host=True)
    assert hosts[-1] == {"name": "queue1", "address": "10.213.1.9", "groups": ["queue"]}
    addresses = [h["address"] for h in hosts]
    assert len(set(addresses)) == len(addresses)
    assert _plan.groups_of(hosts)["queue"] == ["queue1"]
    data = yaml.safe_load(_plan.render_inventory("itest", hosts, "/k"))
    assert data["all"]["children"]["queue"]["hosts"]["queue1"] == {"ansible_host": "10.213.1.9"}
    assert data["all"]["children"]["app"]["vars"] == {
        "lab_workers": ["1"], "rolling_workers": ["1"], "rolling_worker_settle": 3}


def test_no_queue_group_nor_workers_without_a_queue_host():
    hosts = _plan.plan_hosts("10.213.1")
    assert "queue" not in _plan.groups_of(hosts)
    assert "vars" not in yaml.safe_load(_plan.render_inventory("itest", hosts, "/k"))["all"]["children"]["app"]


@pytest.mark.parametrize("instances, ports, clone_ports", [
    (1, [8080], [8081]), (2, [8080, 8082], [8081, 8083]),
    (3, [8080, 8082, 8084], [8081, 8083, 8085])])
def test_instance_ports_come_in_pairs(instances, ports, clone_ports):
    assert _plan.instance_ports(instances) == (ports, clone_ports)


@pytest.mark.parametrize("instances", [0, -1, 11])
def test_bad_instance_counts(instances):
    with pytest.raises(_plan.PlanError, match="--instances"):
        _plan.instance_ports(instances)


def test_one_instance_leaves_the_inventory_as_it_was():
    hosts = _plan.plan_hosts("10.213.1", queue_host=True)
    assert _plan.render_inventory("itest", hosts, "/k", instances=1) \
        == _plan.render_inventory("itest", hosts, "/k")
    hosts = _plan.plan_hosts("10.213.1")
    assert "vars" not in yaml.safe_load(
        _plan.render_inventory("itest", hosts, "/k", instances=1))["all"]["children"]["app"]


def test_instances_give_the_app_group_their_ports():
    hosts = _plan.plan_hosts("10.213.1")
    inventory = _plan.render_inventory("itest", hosts, "/k", instances=2)
    children = yaml.safe_load(inventory)["all"]["children"]
    assert children["app"]["vars"] == {
        "lab_instance_ports": [8080, 8082], "rolling_ports": [8080, 8082],
        "rolling_clone_ports": [8081, 8083]}
    assert children["app"]["hosts"] == {"app1": {"ansible_host": "10.213.1.11"},
                                        "app2": {"ansible_host": "10.213.1.12"}}
    assert "vars" not in children["haproxy"]


def test_instances_and_workers_share_the_app_groups_vars():
    hosts = _plan.plan_hosts("10.213.1", queue_host=True)
    text = _plan.render_inventory("itest", hosts, "/k", instances=2)
    # One vars block: a second one under the same group would be a duplicate YAML key.
    assert text.count("      vars:") == 1
    assert yaml.safe_load(text)["all"]["children"]["app"]["vars"] == {
        "lab_workers": ["1"], "rolling_workers": ["1"], "rolling_worker_settle": 3,
        "lab_instance_ports": [8080, 8082], "rolling_ports": [8080, 8082],
        "rolling_clone_ports": [8081, 8083]}
