from ansible_collections.hitless.deploy.plugins.filter.failure_cause import failure_cause


def test_loop_items_are_named_with_their_cause():
    result = {"msg": "One or more items failed", "results": [
        {"item": "lb1", "failed": False, "msg": "ok"},
        {"item": "lb2", "failed": True, "msg": "backend demo is locked by another rollout: deploy d1."},
        {"item": "lb3", "unreachable": True, "msg": "Failed to connect to the host via ssh"}]}
    assert failure_cause(result) == (
        "on lb2: backend demo is locked by another rollout: deploy d1; "
        "on lb3: Failed to connect to the host via ssh")


def test_plain_message_loses_its_final_periods():
    assert failure_cause({"msg": "post_start checks failed.."}) == "post_start checks failed"
    assert failure_cause({"stderr": "boom\n"}) == "boom"
    assert failure_cause({}) == "unknown cause"
