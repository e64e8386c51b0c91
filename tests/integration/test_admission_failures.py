"""A save that fails inside the database must leave nothing behind, not even in the cache."""

from __future__ import annotations

import pytest

from ledger.errors import Contention, PublishUnknownPending, WindowClosed
from tests.support.builders import batch, event
from tests.support.bus import ScriptedBus
from tests.support.storage import fail_inserts_after, heal_inserts


def test_a_failed_save_leaves_no_trace_and_the_retry_records_without_a_gap(ledger, database_url):
    ledger.admit("w", batch("w", event("1"), event("2")))  # versions 1-3; the window is cached
    fail_inserts_after(database_url, 3)
    with pytest.raises((Contention, Exception)):
        ledger.admit("w", batch("w", event("3"), event("1")))
    assert len(ledger.history("w")) == 3
    assert ledger.index.count_identities("w") == {"ADMITTED": 2}

    heal_inserts(database_url)
    results = ledger.admit("w", batch("w", event("3"), event("1")))
    assert [(r.verdict.value, r.offset) for r in results] == [("ADMITTED", 3), ("DUPLICATE", 1)]
    history = ledger.history("w")
    assert [h["version"] for h in history] == [1, 2, 3, 4, 5]
    assert ledger.verify("w").ok


def test_a_refusal_that_changed_nothing_keeps_the_cached_window(ledger):
    ledger.admit("w", batch("w", event("1")))
    ledger.admit("w", batch("w", event("1")))  # the second command loads, so caches, the window
    cached = ledger.uow.cached("w")
    assert cached is not None and cached.version == 3
    ledger.close_window("w")
    closed = ledger.uow.cached("w")
    assert closed is not None and closed.is_closed
    with pytest.raises(WindowClosed):  # a refusal before any save: nothing to evict
        ledger.admit("w", batch("w", event("2")))
    assert ledger.uow.cached("w") is closed
    assert closed.version == 4 and not closed.pending_events


def test_a_close_refused_for_pending_identities_keeps_the_cached_window(make_ledger):
    bus = ScriptedBus()
    ledger = make_ledger(bus)
    [one] = batch("w", event("1"))
    bus.time_out_and_drop.add(one.identity)
    ledger.admit("w", [one])
    ledger.admit("w", [one])  # still unknown: nothing new, and the window is now cached
    cached = ledger.uow.cached("w")
    assert cached is not None
    with pytest.raises(PublishUnknownPending):
        ledger.close_window("w")
    assert ledger.uow.cached("w") is cached
    assert not cached.pending_events and cached.pending
