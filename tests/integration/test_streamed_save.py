"""A batch is saved in chunks sent while the next is made (ADR 0011): still all or nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import psycopg
import pytest

from ledger.application import STREAM_CHUNK, Ledger
from ledger.infrastructure import pgarrays
from ledger.jcs import CanonicalizationError
from ledger.ports import Message, Published, PublishOutcome
from service.composition import build_ledger
from service.settings import Settings
from tests.support.builders import batch, event
from tests.support.bus import ScriptedBus
from tests.support.storage import fail_inserts_after, heal_inserts

# Four chunks, the last one short: the failures below happen after three were sent.
ITEMS = 3 * STREAM_CHUNK + 7


def _events(prefix: str, n: int = ITEMS) -> list[dict[str, object]]:
    return [event(f"{prefix}-{i}") for i in range(n)]


class _OffsetBeyondJsonBus(ScriptedBus):
    """Acks the last message of a publish with an offset no JCS form holds: the chain digest
    of that admission (made in the batch's last chunk) raises inside the save."""

    def publish(
        self, window_id: str, messages: Sequence[Message], next_sequence: int
    ) -> list[PublishOutcome]:
        outcomes = super().publish(window_id, messages, next_sequence)
        if self.poison:
            outcomes[-1] = Published(2**60)
        return outcomes

    poison = False


def _stored_rows(ledger: Ledger, window_id: str) -> tuple[int, dict[str, int]]:
    history = ledger.history(window_id) if ledger.has_window(window_id) else []
    return len(history), ledger.index.count_identities(window_id)


def test_a_batch_of_several_chunks_is_recorded_whole_in_order_and_at_one_moment(
    ledger: Ledger,
) -> None:
    results = ledger.admit("w", batch("w", *_events("a")))

    assert [r.offset for r in results] == list(range(1, ITEMS + 1))
    history = ledger.history("w")
    assert [h["version"] for h in history] == list(range(1, ITEMS + 2))
    # One command, one transaction: every event of it carries the same recorded time.
    assert len({h["recorded_at"] for h in history[1:]}) == 1
    assert ledger.index.count_identities("w") == {"ADMITTED": ITEMS}
    assert ledger.verify("w").ok


def test_a_domain_failure_in_the_last_chunk_records_nothing_of_the_chunks_already_sent(
    make_ledger: Callable[..., Ledger],
) -> None:
    bus = _OffsetBeyondJsonBus()
    ledger = make_ledger(bus)
    ledger.admit("w", batch("w", event("first")))  # the window exists and is cached
    before = _stored_rows(ledger, "w")
    bus.poison = True

    with pytest.raises(CanonicalizationError):
        ledger.admit("w", batch("w", *_events("a")))

    assert _stored_rows(ledger, "w") == before
    bus.poison = False
    results = ledger.admit("w", batch("w", *_events("a")))
    # The bus deduplicated the re-publish by message id: same offsets, nothing twice.
    assert {r.verdict.value for r in results} == {"ADMITTED"}
    assert len({r.offset for r in results}) == ITEMS
    assert _stored_rows(ledger, "w") == (2 + ITEMS, {"ADMITTED": ITEMS + 1})
    assert ledger.verify("w").ok


def test_storage_refusing_the_last_chunk_records_nothing_and_the_retry_has_no_gap(
    ledger: Ledger, database_url: str
) -> None:
    ledger.admit("w", batch("w", event("first")))  # versions 1-2
    fail_inserts_after(database_url, 2 + 3 * STREAM_CHUNK)  # the fourth chunk's first event

    # PostgreSQL reports the trigger's error; SQLite's RAISE(ABORT) reads as a constraint
    # violation, re-run until the command gives up (Contention): nothing recorded either way.
    with pytest.raises(Exception, match=r"storage refused the write|kept changing"):
        ledger.admit("w", batch("w", *_events("a")))

    assert _stored_rows(ledger, "w") == (2, {"ADMITTED": 1})
    heal_inserts(database_url)
    results = ledger.admit("w", batch("w", *_events("a")))
    assert [r.offset for r in results] == list(range(2, ITEMS + 2))
    assert [h["version"] for h in ledger.history("w")] == list(range(1, ITEMS + 3))
    assert ledger.verify("w").ok


def test_two_instances_streaming_into_one_window_admit_each_identity_once(
    make_ledger: Callable[..., Ledger],
) -> None:
    first, second = make_ledger(), make_ledger()
    first.admit("w", batch("w", event("seed")))
    second.admit("w", batch("w", event("seed")))  # both have the window cached
    first.admit("w", batch("w", *_events("a")))

    # `second` judges against a stale cached window: its chunks conflict, it re-runs whole.
    results = second.admit("w", batch("w", *_events("a"), *_events("b", STREAM_CHUNK)))

    verdicts = [r.verdict.value for r in results]
    assert verdicts == ["DUPLICATE"] * ITEMS + ["ADMITTED"] * STREAM_CHUNK
    assert second.index.count_identities("w") == {"ADMITTED": 1 + ITEMS + STREAM_CHUNK}
    assert second.verify("w").ok


I1, I2 = "1" * 64, "2" * 64


def test_a_postgres_index_made_before_adr_0011_is_carried_over_to_the_identity_keyed_table(
    postgres_url: str,
) -> None:
    database_url = postgres_url
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE ledger_identity_index (window_id text NOT NULL, identity text NOT "
            "NULL, payload_hash text NOT NULL, state text NOT NULL, bus_offset bigint, "
            "PRIMARY KEY (window_id, identity))"
        )
        conn.execute(
            "INSERT INTO ledger_identity_index VALUES ('w', %s, 'h1', 'ADMITTED', 1), "
            "('w', %s, 'h2', 'UNKNOWN', NULL)",
            (I1, I2),
        )

    ledger = build_ledger(Settings(database_url=database_url))
    try:
        assert ledger.index.count_identities("w") == {"ADMITTED": 1, "UNKNOWN": 1}
        known = ledger.index.lookup_identities("w", [I1, I2, "3" * 64, "not hex"])
        assert sorted((i, k.state.value, k.offset) for i, k in known.items()) == [
            (I1, "ADMITTED", 1),
            (I2, "UNKNOWN", None),
        ]
    finally:
        ledger.close()
    with psycopg.connect(database_url) as conn:
        legacy = conn.execute("SELECT to_regclass('public.ledger_identity_index')").fetchone()
    assert legacy == (None,)


def test_the_binary_array_wrappers_round_trip_through_postgresql(postgres_url: str) -> None:
    texts = ["", "a", "é\U0001f600", "x" * 300]
    blobs = [b"", b"\x00\xff", b"{}"]
    ints: list[int | None] = [0, -1, 2**62, None, 7]
    with psycopg.connect(postgres_url) as conn:
        pgarrays.register(conn.adapters)
        row = conn.execute(
            "SELECT %b::text[], %b::bytea[], %b::bigint[], %b::bigint[], %b::text[]",
            (
                pgarrays.TextArray(texts),
                pgarrays.ByteaArray(blobs),
                pgarrays.Int8Array(ints),
                pgarrays.Int8Array([1, 2]),
                pgarrays.TextArray([]),
            ),
        ).fetchone()
    assert row == (texts, blobs, ints, [1, 2], [])


def test_processes_starting_together_on_a_new_postgres_database_all_make_or_find_its_tables(
    postgres_url: str,
) -> None:
    """`ledger serve --workers N` starts its workers at once: without the schema lock one of
    them failed with "tuple concurrently updated" (a catalog race) and took the server down."""
    starters = 6
    barrier = threading.Barrier(starters)
    failures: list[BaseException] = []
    ledgers: list[Ledger] = []

    def start() -> None:
        barrier.wait()
        try:
            ledgers.append(build_ledger(Settings(database_url=postgres_url)))
        except BaseException as failure:  # reported below, with the others'
            failures.append(failure)

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failures == []
        assert len(ledgers) == starters
        ledgers[0].admit("w", batch("w", event("a")))
        assert ledgers[-1].index.count_identities("w") == {"ADMITTED": 1}
    finally:
        for ledger in ledgers:
            ledger.close()
