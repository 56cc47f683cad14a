import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.hitless.deploy.plugins.filter.canary_verdict import canary_verdict


def counters(responses, errors=0, rtime=2):
    return {"responses": responses, "errors": errors, "rtime": rtime, "ttime": 0,
            "failed_checks": 0, "selected": responses}


def info(lb, **servers):
    return {"item": lb, "changed": False, "backends": {"demo": {"servers": {
        name: {"name": name, "counters": c} for name, c in servers.items()}}}}


def test_results_of_a_loop_are_read_per_haproxy_host():
    start = [info("lb1", app1=counters(1000), app2=counters(1000), **{"app1-clone": counters(0)}),
             info("lb2", app1=counters(1000), app2=counters(1000))]
    end = [info("lb1", app1=counters(1100, 20), app2=counters(1100), **{"app1-clone": counters(0)}),
           info("lb2", app1=counters(1100, 20), app2=counters(1100))]
    result = canary_verdict(end, start, backend="demo", server="app1", exclude=["app1-clone"])
    assert result["verdict"] == "fail"
    assert result["message"] == "5xx 20.0 % of 200 responses on app1, peers 0.0 %, limit 1.0 %"


def test_an_unreached_host_is_left_out_and_nothing_read_is_an_error():
    start = [info("lb1", app1=counters(0), app2=counters(0))]
    end = [info("lb1", app1=counters(100), app2=counters(100)), {"item": "lb2", "unreachable": True}]
    assert canary_verdict(end, start, backend="demo", server="app1")["verdict"] == "pass"
    with pytest.raises(AnsibleFilterError, match="no HAProxy host was read"):
        canary_verdict([{"item": "lb1", "failed": True}], start, backend="demo", server="app1")


def test_unknown_limit_is_named():
    with pytest.raises(AnsibleFilterError, match="unknown limits max_5xx"):
        canary_verdict([], [], backend="demo", server="app1", limits={"max_5xx": 1})


def test_a_host_with_several_instances_is_judged_on_all_its_servers():
    # app1's second instance answers the 5xx; its first alone would pass.
    names = ("app1-8080", "app1-8082", "app2-8080", "app2-8082")
    start = [info("lb1", **{name: counters(1000) for name in names})]
    end = [info("lb1", **{"app1-8080": counters(1100), "app1-8082": counters(1100, 10),
                          "app2-8080": counters(1100), "app2-8082": counters(1100)})]
    result = canary_verdict(end, start, backend="demo", server=["app1-8080", "app1-8082"],
                            exclude=["app1-8080-clone", "app1-8082-clone"])
    assert result["verdict"] == "fail"
    assert result["message"] == ("5xx 5.0 % of 200 responses on app1-8080, app1-8082, peers 0.0 %,"
                                 " limit 1.0 %")
    # Its own servers are not its peers: the reference is app2's 200 responses.
    assert result["reference"]["responses"] == 200
