"""Window snapshots (ADR 0017), on each backend: a snapshot is a cache of the history. Loading
a window reads its latest snapshot and the events after it, and equals replaying the whole
history; a snapshot that disagrees with its events is discarded, never trusted; a window's
load reads at most one interval of events, however long its history."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, closing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from ledger.application import Ledger
from ledger.application.unit_of_work import replay
from ledger.domain import Window, window_uuid
from ledger.errors import LedgerError
from ledger.ports import Chunk
from service.composition import build_ledger
from service.settings import Settings
from tests.support.builders import batch, event, identity
from tests.support.bus import ScriptedBus
from tests.support.readside import engine_for

INTERVAL = 4


def build(database_url: str, publisher: Any = None, interval: int = INTERVAL) -> Ledger:
    return build_ledger(Settings(database_url=database_url, snapshot_interval=interval), publisher)


@pytest.fixture
def ledgers(database_url: str) -> Iterator[Any]:
    """`make(publisher=None, interval=INTERVAL)`: a fresh ledger (an empty cache, as after a
    restart) on the test's database; all closed at teardown."""
    with ExitStack() as made:

        def make(publisher: Any = None, interval: int = INTERVAL) -> Ledger:
            built = build(database_url, publisher, interval)
            made.callback(built.close)
            return built

        yield make


def state_of(window: Window | None) -> dict[str, Any]:
    assert window is not None
    return {k: v for k, v in vars(window).items() if k != "_pending_events"}


def full_replay(ledger: Ledger, window_id: str) -> Window | None:
    events = ledger.recorder.select_events(window_uuid(window_id))
    return replay(window_id, None, (ledger.mapper.to_domain_event(s) for s in events))


def snapshot_row(database_url: str, window_id: str) -> tuple[int, bytes] | None:
    sqlite = database_url.startswith("sqlite")
    table = "window_snapshots" if sqlite else "ledger_window_snapshots"
    key = window_uuid(window_id).hex if sqlite else str(window_uuid(window_id))
    with engine_for(database_url) as engine, engine.connect() as conn:
        row = conn.execute(
            text(f"SELECT originator_version, state FROM {table} WHERE originator_id = :k"),
            {"k": key},
        ).first()
    return None if row is None else (int(row[0]), bytes(row[1]))


def write_snapshot_state(database_url: str, window_id: str, state: bytes) -> None:
    sqlite = database_url.startswith("sqlite")
    table = "window_snapshots" if sqlite else "ledger_window_snapshots"
    key = window_uuid(window_id).hex if sqlite else str(window_uuid(window_id))
    with engine_for(database_url) as engine, engine.begin() as conn:
        conn.execute(
            text(f"UPDATE {table} SET state = :s WHERE originator_id = :k"),
            {"s": state, "k": key},
        )


# --- a random history: admissions, repeats, changed payloads, unknown outcomes, reconciles ----

ids = st.sampled_from([str(i) for i in range(8)])
payloads = st.sampled_from([{"v": 1}, {"v": 2}])
steps = st.lists(
    st.one_of(
        st.tuples(st.just("admit"), st.lists(st.tuples(ids, payloads), min_size=1, max_size=6)),
        st.tuples(st.just("stall"), ids),  # this identity's next publish times out
        st.tuples(st.just("reconcile"), st.none()),
        st.tuples(st.just("close"), st.none()),
    ),
    min_size=1,
    max_size=12,
)


def run_history(ledger: Ledger, bus: ScriptedBus, window_id: str, history: list[Any]) -> None:
    for step, arg in history:
        try:
            if step == "admit":
                ledger.admit(window_id, batch(window_id, *(event(i, p) for i, p in arg)))
            elif step == "stall":
                bus.time_out_and_store.add(identity(window_id, arg))
            elif step == "reconcile":
                bus.heal()
                ledger.reconcile(window_id)
            elif step == "close":
                ledger.close_window(window_id)
        except LedgerError:
            pass  # closed, pending unknowns, no window yet: the history goes on


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=steps)
def test_a_window_loaded_from_its_snapshot_and_tail_equals_the_replay_of_its_whole_history(
    database_url: str, history: list[Any]
) -> None:
    bus = ScriptedBus()
    window_id = f"w-{uuid.uuid4().hex[:12]}"
    with ExitStack() as example:  # each example's ledgers closed with it (connections)
        writer = example.enter_context(closing(build(database_url, bus)))
        run_history(writer, bus, window_id, history)
        reader = example.enter_context(closing(build(database_url, bus)))  # nothing cached
        loaded = reader.loader.load(window_id)
        replayed = full_replay(reader, window_id)
    if replayed is None:
        assert loaded is None
        return
    assert state_of(loaded) == state_of(replayed)
    # The latest snapshot is the one written by the command that crossed the last multiple of
    # INTERVAL: at or after that multiple, never after the window's version. (At most eight
    # identities are ever pending: too few to stretch the interval, ADR 0045.)
    row = snapshot_row(database_url, window_id)
    last_multiple = replayed.version // INTERVAL * INTERVAL
    if last_multiple == 0:
        assert row is None
    else:
        assert row is not None and last_multiple <= row[0] <= replayed.version


def test_a_long_windows_snapshot_is_taken_in_the_commands_transaction_at_each_interval(
    ledgers: Any, database_url: str
) -> None:
    ledger = ledgers()
    ledger.admit("w", batch("w", *(event(str(i)) for i in range(10))))  # versions 1..11
    assert snapshot_row(database_url, "w") is not None
    version, state = snapshot_row(database_url, "w")  # type: ignore[misc]
    assert version == 11 and json.loads(state)["admitted"] == 10
    ledger.admit("w", batch("w", event("10")))  # version 12: crosses 12, a multiple of 4
    assert snapshot_row(database_url, "w")[0] == 12  # type: ignore[index]
    ledger.admit("w", batch("w", event("11")))  # version 13: no crossing, the row stays
    assert snapshot_row(database_url, "w")[0] == 12  # type: ignore[index]


def test_loading_a_long_window_reads_its_snapshot_and_at_most_one_interval_of_events(
    ledgers: Any,
) -> None:
    writer = ledgers(interval=100)
    for start in range(0, 1000, 250):
        writer.admit("long", batch("long", *(event(str(i)) for i in range(start, start + 250))))
    reader = ledgers(interval=100)
    window = reader.loader.load("long")
    assert window is not None and window.version == 1001 and window.admitted == 1000
    # The snapshot at version 1001 and the stored event at its version, nothing else.
    assert reader.loader.events_read <= 1 + 100
    assert state_of(window) == state_of(full_replay(reader, "long"))
    # And the next command on it, in a fresh process, answers from there.
    (result,) = reader.admit("long", batch("long", event("999")))
    assert result.verdict.value == "DUPLICATE"
    assert reader.loader.events_read <= 1 + 100


def test_a_window_holding_many_pending_identities_is_snapshotted_at_a_stretched_interval(
    ledgers: Any, database_url: str
) -> None:
    """A snapshot holds every identity whose publish outcome is unknown: past four of them an
    event of the interval, the interval stretches by a multiple for each such lot (ADR 0045),
    so a long outage does not make every interval's snapshot rewrite all of them; a load
    still reads one snapshot and at most one (stretched) interval of events."""
    bus = ScriptedBus()
    writer = ledgers(bus, interval=10)  # stretched once 40 are pending
    unknown = [event(f"u{i}") for i in range(100)]
    bus.time_out_and_drop.update(identity("p", e["event_id"]) for e in unknown)
    writer.admit("p", batch("p", *unknown))  # versions 2..101: 100 pending
    assert len(writer.get_window("p").pending) == 100
    assert writer.loader.interval_for(writer.get_window("p")) == 10 * (1 + 100 // 40)  # 30
    assert snapshot_row(database_url, "p")[0] == 101  # type: ignore[index]
    for n in range(18):  # versions 102..119: past multiples of 10, not of 30
        writer.admit("p", batch("p", event(f"a{n}")))
    assert snapshot_row(database_url, "p")[0] == 101  # type: ignore[index]
    writer.admit("p", batch("p", event("a18")))  # version 120, a multiple of 30
    version, state = snapshot_row(database_url, "p")  # type: ignore[misc]
    assert version == 120 and len(json.loads(state)["pending"]) == 100

    reader = ledgers(bus, interval=10)
    for n in range(25):  # versions 121..145: past 130 and 140, not 150
        writer.admit("p", batch("p", event(f"b{n}")))
    assert snapshot_row(database_url, "p")[0] == 120  # type: ignore[index]
    window = reader.loader.load("p")
    assert window is not None and window.version == 145
    assert reader.loader.events_read <= 1 + 30
    assert state_of(window) == state_of(full_replay(reader, "p"))


@pytest.mark.parametrize(
    "corruption",
    ["garbage bytes", "another chain head", "another version", "unknown format"],
)
def test_a_snapshot_that_disagrees_with_its_events_is_discarded_and_the_window_replayed(
    ledgers: Any, database_url: str, corruption: str, caplog: pytest.LogCaptureFixture
) -> None:
    writer = ledgers()
    writer.admit("w", batch("w", *(event(str(i)) for i in range(10))))
    version, state = snapshot_row(database_url, "w")  # type: ignore[misc]
    decoded = json.loads(state)
    if corruption == "garbage bytes":
        bad = b"\x00not json"
    else:
        if corruption == "another chain head":
            decoded["chain_head"] = "0" * 64
            decoded["admitted"] = 999  # what a trusted bad snapshot would make the window say
        elif corruption == "another version":
            decoded["version"] = version - 1
        else:
            decoded["format"] = 99
        bad = json.dumps(decoded).encode()
    write_snapshot_state(database_url, "w", bad)

    reader = ledgers()
    with caplog.at_level(logging.WARNING, logger="ledger.application.loading"):
        window = reader.loader.load("w")
    assert state_of(window) == state_of(full_replay(reader, "w"))
    assert window is not None and window.admitted == 10
    assert any("is discarded" in r.getMessage() for r in caplog.records), caplog.text
    assert snapshot_row(database_url, "w") is None  # removed: the next interval writes anew
    (result,) = reader.admit("w", batch("w", event("3")))
    assert result.verdict.value == "DUPLICATE"


def test_a_snapshot_never_goes_back_to_an_older_version(ledgers: Any, database_url: str) -> None:
    ledger = ledgers()
    ledger.admit("w", batch("w", *(event(str(i)) for i in range(10))))
    newest = snapshot_row(database_url, "w")
    assert newest is not None
    older = Window.open("w")  # version 1, as a late writer with a stale window would send
    recorder: Any = ledger.recorder
    recorder.insert_event_stream([Chunk((), (), ledger.loader.take(older))])
    assert snapshot_row(database_url, "w") == newest
