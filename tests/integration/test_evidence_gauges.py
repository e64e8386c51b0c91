"""The gate as served: failed checks count in the metrics; a history that is gone fails."""

from __future__ import annotations

from projections.evidence import EvidenceStore
from tests.support.builders import batch, event
from tests.support.history import delete_stored_event


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


def test_a_signed_window_whose_whole_stored_history_is_deleted_fails_its_gate(
    services, database_url
):
    services.admit("gone", batch("gone", event("1"), event("2")))
    receipt = services.close_window("gone")
    for version in range(receipt["events"], 0, -1):
        delete_stored_event(database_url, "gone", version)

    verification, reasons = services.verify("gone")
    assert (verification.ok, verification.events, verification.first_bad_version) == (False, 0, 1)
    assert any("WindowClosed" in r for r in reasons)
    assert any("history holds 0 events, the signed receipt 4" in r for r in reasons)
    gate = services.gate("gone")
    assert gate["status"] == "FAIL" and any("WindowClosed" in r for r in gate["reasons"])
