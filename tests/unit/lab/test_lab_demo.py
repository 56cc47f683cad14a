"""What the demo reads from a lab's inventory: the servers it must keep UP and the clone ports."""
import os

import pytest

import _plan
import demo


@pytest.mark.parametrize("instances, workers, servers, clone_ports", [
    (1, False, 2, [8081]), (2, False, 4, [8081, 8083]), (2, True, 4, [8081, 8083])])
def test_capacity_is_app_hosts_times_instances(tmp_path, monkeypatch, instances, workers,
                                               servers, clone_ports):
    hosts = _plan.plan_hosts("10.213.1", queue_host=workers)
    path = tmp_path / ".lab" / "x" / "inventory.yml"
    os.makedirs(path.parent)
    path.write_text(_plan.render_inventory("x", hosts, "/k", instances=instances))
    monkeypatch.setattr(demo, "REPO", str(tmp_path))
    lab = demo.Lab("x")
    assert lab.app_hosts == ["app1", "app2"]
    assert (lab.servers, lab.clone_ports) == (servers, clone_ports)
