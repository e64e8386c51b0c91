from tests.support.builders import batch, event


def test_right_after_a_successful_close_the_gate_reads_pass(services):
    services.ledger.admit("w", batch("w", event("1"), event("2"), event("1")))
    receipt = services.close_window("w")
    assert receipt["status"] == "CLOSED"
    assert services.gate("w") == {"window_id": "w", "status": "PASS", "reasons": []}
