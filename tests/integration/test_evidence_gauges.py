"""The metrics count windows by the gate as it is served: a failed integrity check counts."""

from __future__ import annotations

from projections.evidence import EvidenceStore
from tests.support.builders import batch, event


def test_a_closed_window_whose_latest_check_failed_counts_as_fail_in_the_gauges(services):
    for window in ("kept", "broken", "open"):
        services.admit(window, batch(window, event("1")))
    services.close_window("kept")
    services.close_window("broken")
    assert services.read.gauges()[1] == {"PASS": 2, "OPEN": 1}

    EvidenceStore(services.store).record(
        "broken", ok=False, reasons=["hash chain broken at version 2"], source="scrub"
    )
    EvidenceStore(services.store).record("open", ok=False, reasons=["a gap"], source="follower")
    assert services.read.gauges()[1] == {"PASS": 1, "FAIL": 1, "OPEN": 1}
    assert services.gate("broken")["status"] == "FAIL"
    assert services.gate("open")["status"] == "OPEN"  # FAIL is for closed windows
    assert "a gap" in services.gate("open")["reasons"]
