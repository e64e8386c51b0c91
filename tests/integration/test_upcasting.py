"""Schema evolution of events: a stored version-1 event still loads, verifies and projects."""

from __future__ import annotations

import json

from ledger.domain import Window, window_uuid
from tests.support.builders import batch, event
from tests.support.legacy import store_v1_window


def test_a_stored_version_one_duplicate_loads_as_version_two_with_no_source(ledger):
    window_id = store_v1_window(ledger.recorder)
    events = list(ledger.events.get(window_uuid(window_id)))
    (absorbed,) = [e for e in events if isinstance(e, Window.DuplicateAbsorbed)]
    assert Window.DuplicateAbsorbed.class_version == 2
    assert absorbed.source is None
    window = ledger.get_window(window_id)
    assert (window.duplicates, window.admitted, window.status) == (1, 2, "CLOSED")


def test_old_digests_still_verify_because_history_reads_the_stored_fields(ledger):
    window_id = store_v1_window(ledger.recorder)
    assert ledger.verify(window_id).ok
    absorbed = [h for h in ledger.history(window_id) if h["type"] == "DuplicateAbsorbed"]
    assert "source" not in absorbed[0]["fields"]


def test_new_duplicates_record_their_source_in_version_two(ledger):
    source = {"partition": "p1", "offset": 7}
    ledger.admit("w", batch("w", event("1", source=source)))
    ledger.admit("w", batch("w", event("1", source={"partition": "p1", "offset": 9})))
    (absorbed,) = [h for h in ledger.history("w") if h["type"] == "DuplicateAbsorbed"]
    assert absorbed["fields"]["source"] == {"partition": "p1", "offset": 9}
    assert json.loads(json.dumps(absorbed))["fields"]["offset"] == 1
    assert ledger.verify("w").ok
