"""Schema evolution of events: a stored version-1 event still loads, verifies and projects."""

from __future__ import annotations

import json
from pathlib import Path

from eventsourcing.persistence import StoredEvent

from ledger.domain import Window, window_uuid

FIXTURE = Path(__file__).parent / "fixtures" / "window_v1_events.json"


def _store_fixture(ledger) -> str:
    data = json.loads(FIXTURE.read_text())
    uuid = window_uuid(data["window_id"])
    ledger.recorder.insert_events(
        [
            StoredEvent(uuid, row["originator_version"], row["topic"], row["state"].encode())
            for row in data["events"]
        ]
    )
    return data["window_id"]


def test_a_stored_version_one_duplicate_loads_as_version_two_with_no_source(ledger):
    window_id = _store_fixture(ledger)
    events = list(ledger.events.get(window_uuid(window_id)))
    (absorbed,) = [e for e in events if isinstance(e, Window.DuplicateAbsorbed)]
    assert Window.DuplicateAbsorbed.class_version == 2
    assert absorbed.source is None
    window = ledger.get_window(window_id)
    assert (window.duplicates, window.admitted, window.status) == (1, 2, "CLOSED")


def test_old_digests_still_verify_because_history_reads_the_stored_fields(ledger):
    window_id = _store_fixture(ledger)
    assert ledger.verify(window_id).ok
    absorbed = [h for h in ledger.history(window_id) if h["type"] == "DuplicateAbsorbed"]
    assert "source" not in absorbed[0]["fields"]


def test_new_duplicates_record_their_source_in_version_two(ledger):
    from tests.conftest import batch, event

    source = {"partition": "p1", "offset": 7}
    ledger.admit("w", batch("w", event("1", source=source)))
    ledger.admit("w", batch("w", event("1", source={"partition": "p1", "offset": 9})))
    (absorbed,) = [h for h in ledger.history("w") if h["type"] == "DuplicateAbsorbed"]
    assert absorbed["fields"]["source"] == {"partition": "p1", "offset": 9}
    assert json.loads(json.dumps(absorbed))["fields"]["offset"] == 1
    assert ledger.verify("w").ok
