"""Late drift is never silent (contract s.9): after close, an arrival whose identity is known with
another payload is refused whole (409 `window_closed`) and adds nothing to the window's sealed
history, but it lands in the quarantine queue as a late entry (`"late": true`), from events of
the window's own `LateArrivals` aggregate. On SQLite and on PostgreSQL (`database_url`)."""

from __future__ import annotations

import itertools
import sqlite3
from contextlib import closing
from typing import Any

import psycopg
import pytest

from ledger.application import Ledger
from ledger.domain.late import late_arrivals_uuid
from ledger.errors import ChainBroken, WindowClosed
from ledger.jcs import canonicalize, sha256_hex
from ledger.verdicts import Verdict
from service.composition import Services
from service.settings import Settings
from tests.support.builders import batch, event, identity
from tests.support.cli import run_cli
from tests.support.http import admit, assert_error, close, eventually, in_process
from tests.support.storage import fail_inserts_after, heal_inserts

ORIGINAL, CHANGED, OTHER = {"v": 1}, {"v": 2}, {"v": 3}


def payload_hash(payload: dict[str, Any]) -> str:
    return sha256_hex(canonicalize(payload))


def sealed(ledger: Ledger, window_id: str) -> dict[str, Any]:
    """Everything a closed window shows of itself on the write side."""
    check = ledger.verify(window_id)
    return {
        "history": ledger.history(window_id),
        "verify": (check.ok, check.events, check.head, check.first_bad_version),
        "receipt": ledger.receipt(window_id),
        "index": ledger.index.count_identities(window_id),
    }


def late_events(ledger: Ledger, window_id: str) -> list[Any]:
    """The window's late arrivals as stored (decoded by the ledger's own mapper)."""
    stored = ledger.recorder.select_events(late_arrivals_uuid(window_id))
    return [ledger.mapper.to_domain_event(s) for s in stored]


def closed_window(ledger: Ledger, window_id: str = "w") -> None:
    """Two admitted events, "a" with ORIGINAL and "b"; then closed."""
    ledger.admit(window_id, batch(window_id, event("a", ORIGINAL), event("b")))
    ledger.close_window(window_id)


def refused(ledger: Ledger, window_id: str, *items: dict[str, Any]) -> WindowClosed:
    with pytest.raises(WindowClosed) as refusal:
        ledger.admit(window_id, batch(window_id, *items))
    assert refusal.value.code == "window_closed"
    return refusal.value


def delete_late_event(database_url: str, window_id: str, version: int) -> None:
    """Delete one stored event of a window's late arrivals, as someone with database access
    could (SQLite keeps ids as hex text in `stored_events`, PostgreSQL as uuid in
    `ledger_events`)."""
    uuid = late_arrivals_uuid(window_id)
    if database_url.startswith("sqlite"):
        path = database_url.removeprefix("sqlite:///")
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute(
                "DELETE FROM stored_events WHERE originator_id = ? AND originator_version = ?",
                (uuid.hex, version),
            )
    else:
        with psycopg.connect(database_url) as pg:
            pg.execute(
                "DELETE FROM ledger_events WHERE originator_id = %s AND originator_version = %s",
                (uuid, version),
            )


def queue(services: Services, window_id: str) -> list[dict[str, Any]]:
    services.catch_up()
    items, next_cursor = services.read.quarantine_queue(window_id, None, None)
    assert next_cursor is None
    return items


# --- the write side ---------------------------------------------------------------------------


def test_a_changed_payload_after_close_is_refused_and_the_sealed_history_stays_as_it_was(
    ledger: Ledger,
) -> None:
    closed_window(ledger)
    before = sealed(ledger, "w")
    assert [h["version"] for h in before["history"]] == [1, 2, 3, 4]

    refused(ledger, "w", event("a", CHANGED))

    after = sealed(ledger, "w")
    assert after == before
    assert after["history"][-1]["type"] == "WindowClosed"
    assert after["verify"][:3] == (True, 4, after["receipt"]["chain_head"])
    assert after["receipt"]["events"] == 4


def test_a_late_mismatch_is_recorded_beside_the_window_with_both_hashes_and_the_payload(
    ledger: Ledger,
) -> None:
    closed_window(ledger)
    source = {"partition": "p0", "offset": 41}

    refused(ledger, "w", event("a", CHANGED, source=source))

    opened, mismatch = late_events(ledger, "w")
    assert type(opened).__name__ == "LateArrivalsOpened"
    assert opened.window_id == "w"
    assert type(mismatch).__name__ == "LateMismatchRecorded"
    assert (mismatch.identity, mismatch.event_type, mismatch.event_id) == (
        identity("w", "a"),
        "order.created",
        "a",
    )
    assert mismatch.original_hash == payload_hash(ORIGINAL)
    assert mismatch.received_hash == payload_hash(CHANGED)
    assert mismatch.received_payload == CHANGED
    assert mismatch.source == source
    assert mismatch.prev_digest == opened.digest


def test_an_exact_duplicate_after_close_is_still_a_duplicate_and_nothing_late_is_recorded(
    ledger: Ledger,
) -> None:
    closed_window(ledger)
    before = sealed(ledger, "w")

    results = ledger.admit("w", batch("w", event("a", ORIGINAL), event("b")))

    assert [(r.verdict, r.offset) for r in results] == [
        (Verdict.DUPLICATE, 1),
        (Verdict.DUPLICATE, 2),
    ]
    assert late_events(ledger, "w") == []
    assert sealed(ledger, "w") == before


def test_new_identities_after_close_are_refused_and_nothing_late_is_recorded(
    ledger: Ledger,
) -> None:
    closed_window(ledger)
    before = sealed(ledger, "w")

    refusal = refused(ledger, "w", event("c"), event("d", CHANGED))

    assert "order.created/c" in refusal.detail
    assert late_events(ledger, "w") == []
    assert sealed(ledger, "w") == before


def test_a_mixed_batch_after_close_is_refused_whole_and_records_only_its_mismatches(
    ledger: Ledger,
) -> None:
    closed_window(ledger)
    before = sealed(ledger, "w")

    refused(ledger, "w", event("b"), event("c"), event("a", CHANGED), event("b", OTHER), event("b"))

    recorded = [(e.event_id, e.received_payload) for e in late_events(ledger, "w")[1:]]
    assert recorded == [("a", CHANGED), ("b", OTHER)]
    assert sealed(ledger, "w") == before


def test_late_arrivals_from_two_ledgers_on_one_database_extend_one_unbroken_chain(
    make_ledger: Any,
) -> None:
    # Two processes: each may hold the late arrivals in its cache; each must build on the other.
    first, second = make_ledger(), make_ledger()
    closed_window(first)

    for ledger, payload in [(first, {"v": 10}), (first, {"v": 11}), (second, {"v": 12})]:
        refused(ledger, "w", event("a", payload))
    refused(first, "w", event("a", {"v": 13}))

    events = late_events(second, "w")
    assert [e.originator_version for e in events] == [1, 2, 3, 4, 5]
    assert [e.received_payload for e in events[1:]] == [{"v": n} for n in (10, 11, 12, 13)]
    for before, after in itertools.pairwise(events):
        assert after.prev_digest == before.digest


def test_a_late_record_that_storage_refused_leaves_no_trace_and_the_next_one_has_no_gap(
    ledger: Ledger, database_url: str
) -> None:
    closed_window(ledger)  # the window's versions 1-4
    refused(ledger, "w", event("a", {"v": 10}))  # late versions 1-2
    refused(ledger, "w", event("a", {"v": 11}))  # late version 3 (now cached)
    fail_inserts_after(database_url, 3)
    with pytest.raises(Exception) as failed:
        ledger.admit("w", batch("w", event("a", {"v": 12})))
    assert not isinstance(failed.value, WindowClosed)  # not recorded: not answered as if it was
    assert len(late_events(ledger, "w")) == 3

    heal_inserts(database_url)
    refused(ledger, "w", event("a", {"v": 13}))

    events = late_events(ledger, "w")
    assert [e.originator_version for e in events] == [1, 2, 3, 4]
    assert [e.received_payload for e in events[1:]] == [{"v": 10}, {"v": 11}, {"v": 13}]
    for before, after in itertools.pairwise(events):
        assert after.prev_digest == before.digest


def test_late_arrivals_with_a_hole_are_reported_as_chain_broken_and_never_built_on(
    make_ledger: Any, database_url: str
) -> None:
    writer = make_ledger()
    closed_window(writer)
    for n in (10, 11, 12):
        refused(writer, "w", event("a", {"v": n}))  # late versions 1-4
    delete_late_event(database_url, "w", 2)
    fresh = make_ledger()  # nothing cached: it reads the late arrivals from storage

    with pytest.raises(ChainBroken) as broken:
        fresh.admit("w", batch("w", event("a", {"v": 13})))

    assert broken.value.code == "chain_broken"
    assert "late arrivals" in broken.value.detail
    assert [e.originator_version for e in late_events(fresh, "w")] == [1, 3, 4]
    # The sealed window itself is untouched, and its exact duplicates are still answered.
    assert fresh.verify("w").ok
    [duplicate] = fresh.admit("w", batch("w", event("a", ORIGINAL)))
    assert duplicate.verdict is Verdict.DUPLICATE


# --- the quarantine queue -----------------------------------------------------------------------


def test_a_late_mismatch_is_a_late_queue_entry_with_both_payloads(services: Services) -> None:
    closed_window(services.ledger)

    refused(services.ledger, "w", event("a", CHANGED))

    [entry] = queue(services, "w")
    [_, recorded] = late_events(services.ledger, "w")
    seen = recorded.timestamp.isoformat(timespec="microseconds").replace("+00:00", "Z")
    assert entry == {
        "window_id": "w",
        "event_type": "order.created",
        "event_id": "a",
        "identity": identity("w", "a"),
        "original_hash": payload_hash(ORIGINAL),
        "original_payload": ORIGINAL,
        "received_hash": payload_hash(CHANGED),
        "received_payload": CHANGED,
        "occurrences": 1,
        "first_seen": seen,
        "last_seen": seen,
        "late": True,
    }


def test_repeats_of_a_late_mismatch_group_into_one_entry_apart_from_the_in_window_one(
    services: Services,
) -> None:
    ledger = services.ledger
    ledger.admit("w", batch("w", event("a", ORIGINAL), event("b")))
    ledger.admit("w", batch("w", event("a", CHANGED)))  # in the window: quarantined
    ledger.close_window("w")
    services.catch_up()
    # The same drift after close: twice in one batch, then again in later requests, each
    # projected on its own; and another payload once.
    refused(ledger, "w", event("a", CHANGED), event("a", CHANGED))
    queue(services, "w")
    refused(ledger, "w", event("a", CHANGED))
    queue(services, "w")
    refused(ledger, "w", event("a", OTHER), event("a", CHANGED))

    items = queue(services, "w")

    by_key = {(i["received_hash"], i["late"]): i for i in items}
    assert set(by_key) == {
        (payload_hash(CHANGED), False),
        (payload_hash(CHANGED), True),
        (payload_hash(OTHER), True),
    }
    assert by_key[(payload_hash(CHANGED), False)]["occurrences"] == 1
    repeated = by_key[(payload_hash(CHANGED), True)]
    assert repeated["occurrences"] == 4
    assert repeated["first_seen"] < repeated["last_seen"]
    assert repeated["original_payload"] == ORIGINAL
    assert by_key[(payload_hash(OTHER), True)]["occurrences"] == 1
    # In the order first seen: the in-window entry, then the late ones.
    assert [(i["received_payload"], i["late"]) for i in items] == [
        (CHANGED, False),
        (CHANGED, True),
        (OTHER, True),
    ]
    # The window's own count is of in-window mismatches only, as sealed.
    assert ledger.receipt("w")["counts"]["quarantined"] == 1


def test_an_exact_duplicate_after_close_leaves_the_queue_without_a_late_entry(
    services: Services,
) -> None:
    ledger = services.ledger
    ledger.admit("w", batch("w", event("a", ORIGINAL)))
    ledger.admit("w", batch("w", event("a", CHANGED)))
    ledger.close_window("w")

    [result] = ledger.admit("w", batch("w", event("a", ORIGINAL)))

    assert result.verdict is Verdict.DUPLICATE
    assert [(i["received_payload"], i["late"]) for i in queue(services, "w")] == [(CHANGED, False)]


def test_late_entries_come_back_from_the_log_after_a_rebuild(
    services: Services, database_url: str
) -> None:
    closed_window(services.ledger)
    refused(services.ledger, "w", event("a", CHANGED), event("a", CHANGED))
    refused(services.ledger, "w", event("b", OTHER))
    before = queue(services, "w")
    assert [(i["event_id"], i["occurrences"], i["late"]) for i in before] == [
        ("a", 2, True),
        ("b", 1, True),
    ]

    rebuilt = run_cli(database_url, "projections", "rebuild")

    assert rebuilt.returncode == 0, rebuilt.stderr
    assert queue(services, "w") == before
    services.runner.rebuild("quarantine")
    assert queue(services, "w") == before


# --- over HTTP ----------------------------------------------------------------------------------


def test_over_http_a_late_mismatch_answers_409_and_the_queue_shows_it_late(
    migrated: Settings,
) -> None:
    with in_process(migrated) as api:
        admit(api, "w", event("a", ORIGINAL), event("b"))
        admit(api, "w", event("b", OTHER))  # in the window: quarantined
        close(api, "w")
        history = api.get("/v1/windows/w/history").json()["items"]
        verified = api.get("/v1/windows/w/verify").json()

        response = api.post(
            "/v1/windows/w/admissions", json={"events": [event("a", CHANGED), event("b")]}
        )

        assert_error(response, 409, "window_closed")
        assert api.get("/v1/windows/w/history").json()["items"] == history
        assert api.get("/v1/windows/w/verify").json() == verified
        duplicate = admit(api, "w", event("a", ORIGINAL))
        assert [r["verdict"] for r in duplicate["results"]] == ["DUPLICATE"]
        listed = eventually(
            lambda: api.get("/v1/quarantine", params={"window_id": "w"}),
            lambda r: len(r.json()["items"]) == 2,
        ).json()["items"]
        assert [(i["event_id"], i["late"]) for i in listed] == [("b", False), ("a", True)]
        late = listed[1]
        assert (late["original_payload"], late["received_payload"]) == (ORIGINAL, CHANGED)
        assert (late["original_hash"], late["received_hash"]) == (
            payload_hash(ORIGINAL),
            payload_hash(CHANGED),
        )


def test_a_late_anomaly_leaves_the_read_sides_receipt_and_pass_gate_as_sealed(
    services: Services,
) -> None:
    closed_window(services.ledger)
    services.catch_up()
    receipt = services.read.receipt("w")
    assert receipt is not None and receipt["gate"] == "PASS"

    refused(services.ledger, "w", event("a", CHANGED))
    services.catch_up()

    assert services.read.receipt("w") == receipt
    assert services.read.gate("w") == {"window_id": "w", "status": "PASS", "reasons": []}
    assert [i["late"] for i in queue(services, "w")] == [True]
