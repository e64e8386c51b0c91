"""Rebuilding read models from the history: deterministic, blue/green (reads never stop), and the
way a new column gets filled after a migration. On SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import inspect, text

from projections.migrate import HEAD, current_revision, downgrade, upgrade
from projections.store import create_read_store
from tests.support.builders import batch, event, identity
from tests.support.bus import ScriptedBus
from tests.support.cli import run_cli
from tests.support.readside import (
    PROJECTIONS,
    READ_MODEL_TABLES,
    checksums,
    engine_for,
    table_names,
    table_rows,
    tracking_positions,
)
from tests.support.services import wait_until

WINDOWS = ("closed-plain", "closed-quarantine", "reconciled", "open-quarantine", "blocked")


def populate(services, bus: ScriptedBus) -> None:
    """Windows of every kind, projected incrementally (several runner pages), so a rebuild has
    something to disagree with."""
    w = "closed-plain"
    services.ledger.admit(
        w,
        batch(
            w,
            *[
                event(str(n), source={"partition": f"p{n % 2}", "offset": 100 - n})
                for n in range(30)
            ],
        ),
    )
    services.catch_up()
    services.ledger.admit(w, batch(w, *[event(str(n)) for n in range(0, 30, 3)]))
    services.ledger.close_window(w)
    services.catch_up()

    w = "closed-quarantine"
    services.ledger.admit(w, batch(w, *[event(str(n), {"n": n}) for n in range(10)]))
    services.ledger.admit(w, batch(w, event("1", {"n": "x"}), event("1", {"n": "x"})))
    services.catch_up()
    services.ledger.admit(w, batch(w, event("1", {"n": "x"}), event("2", {"n": "y"})))
    services.catch_up()
    services.ledger.admit(w, batch(w, event("1", {"n": "z"})))
    services.ledger.close_window(w)

    w = "reconciled"
    bus.time_out_and_store.update({identity(w, "3"), identity(w, "4")})
    services.ledger.admit(w, batch(w, *[event(str(n)) for n in range(8)]))
    services.ledger.admit(w, batch(w, event("3", {"other": True})))  # quarantined while UNKNOWN
    services.catch_up()
    bus.heal()
    services.ledger.reconcile(w)
    services.ledger.close_window(w)

    w = "open-quarantine"
    services.ledger.admit(w, batch(w, *[event(str(n)) for n in range(12)]))
    services.catch_up()
    services.ledger.admit(w, batch(w, event("5", {"other": 1}), event("6", {"other": 2})))

    w = "blocked"
    bus.time_out_and_store.add(identity(w, "1"))
    services.ledger.admit(w, batch(w, event("0"), event("1"), event("2")))
    services.catch_up()


def populated(make_services) -> Any:
    bus = ScriptedBus()
    services = make_services(publisher=bus)
    populate(services, bus)
    gates = {w: services.gate(w)["status"] for w in WINDOWS}
    assert gates == {
        "closed-plain": "PASS",
        "closed-quarantine": "PASS",
        "reconciled": "PASS",
        "open-quarantine": "OPEN",
        "blocked": "BLOCKED",
    }
    return services


def _status_rows(stdout: str) -> dict[str, dict[str, int]]:
    rows = {}
    for line in stdout.splitlines()[1:]:
        name, position, head, lag = line.split()
        rows[name] = {"position": int(position), "head": int(head), "lag": int(lag)}
    return rows


def test_rebuilding_with_the_command_line_reproduces_every_read_model_table_exactly(
    make_services, database_url
):
    services = populated(make_services)
    before = checksums(database_url)
    with engine_for(database_url) as engine:
        assert len(table_rows(engine, "rm_quarantine")[1]) >= 5
        assert len(table_rows(engine, "rm_receipt_sources")[1]) >= 2

    rebuilt = run_cli(database_url, "projections", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert checksums(database_url) == before
    assert not [t for t in table_names(database_url) if t.endswith("__next")]
    head = services.runner.head()
    assert _status_rows(rebuilt.stdout) == {
        name: {"position": head, "head": head, "lag": 0} for name in PROJECTIONS
    }

    # One projection at a time, from the command line and in process.
    one = run_cli(database_url, "projections", "rebuild", "admitted")
    assert one.returncode == 0, one.stderr
    assert checksums(database_url) == before
    services.runner.rebuild("quarantine")
    assert checksums(database_url) == before
    services.runner.rebuild("receipts")
    assert checksums(database_url) == before

    # The service keeps reading and following on the switched tables.
    assert services.gate("closed-plain")["status"] == "PASS"
    services.ledger.admit("open-quarantine", batch("open-quarantine", event("new")))
    services.catch_up()
    assert services.receipt("open-quarantine")["counts"]["admitted"] == 13
    items, _ = services.read.quarantine_queue("closed-quarantine", None, None)
    assert sorted(i["occurrences"] for i in items) == [1, 1, 3]


def test_reads_keep_answering_from_the_live_tables_while_a_rebuild_fills_the_next_ones(
    make_services, database_url
):
    services = populated(make_services)
    before = {w: services.read.receipt(w) for w in WINDOWS}
    admitted_before = services.read.admitted_events("closed-plain", None, None)
    quarantine_before = services.read.quarantine_queue(None, None, None)
    services.runner.page = 5  # many pages, so progress is reported many times mid-rebuild
    seen: list[set[str]] = []

    def progress(n: int) -> None:
        # Called between the rebuild's pages (and inside its final switch transaction).
        seen.append({t for t in table_names(database_url) if t.endswith("__next")})
        assert {w: services.read.receipt(w) for w in WINDOWS} == before
        assert services.read.gate("closed-plain")["status"] == "PASS"
        assert services.read.admitted_events("closed-plain", None, None) == admitted_before
        assert services.read.quarantine_queue(None, None, None) == quarantine_before

    services.runner.rebuild(progress=progress)

    assert len(seen) > 3
    # The reads above happened while shadow tables were being filled, for every projection.
    shadows = set().union(*seen)
    assert {
        "rm_receipts__next",
        "rm_receipt_sources__next",
        "rm_admitted__next",
        "rm_quarantine__next",
    } <= shadows
    assert not [t for t in table_names(database_url) if t.endswith("__next")]
    assert {w: services.read.receipt(w) for w in WINDOWS} == before


def test_a_rebuild_while_the_follower_runs_and_admissions_continue_matches_a_clean_rebuild(
    make_services, database_url
):
    services = populated(make_services)
    services.start_following()
    services.runner.page = 5
    # Admissions keep arriving from another thread while the rebuild replays and switches.
    stop = threading.Event()
    failures: list[BaseException] = []

    def admit_meanwhile() -> None:
        try:
            k = 0
            while not stop.is_set() and k < 200:
                services.ledger.admit("during", batch("during", event(f"t{k}")))
                k += 1
        except BaseException as exc:
            failures.append(exc)

    writer = threading.Thread(target=admit_meanwhile)
    writer.start()
    try:
        services.runner.rebuild()
    finally:
        stop.set()
        writer.join(timeout=120)
    assert not writer.is_alive()
    if failures:
        raise failures[0]

    head = services.runner.head()
    wait_until(
        lambda: min(services.runner.positions().values()) >= head,
        60,
        "the follower to apply what was admitted during the rebuild",
    )
    during = services.receipt("during")
    assert during["counts"]["admitted"] == during["events"] - 1
    after_follow = checksums(database_url)
    services.runner.stop()
    services.following = False
    services.runner.rebuild()
    assert checksums(database_url) == after_follow


def test_after_downgrading_and_upgrading_the_schema_a_receipts_rebuild_fills_the_new_column(
    make_services, database_url
):
    services = populated(make_services)
    before = checksums(database_url)
    with engine_for(database_url) as engine, engine.connect() as conn:
        filled = conn.execute(text("SELECT window_id, last_event_at FROM rm_receipts")).all()
    assert len(filled) == len(WINDOWS)
    assert all(at is not None for _, at in filled)
    # last_event_at is when the window last recorded anything.
    for window_id, at in filled:
        assert at == services.ledger.history(window_id)[-1]["recorded_at"]

    store = create_read_store(database_url)
    try:
        downgrade(store, "0001")
        assert current_revision(store) == "0001"
        with engine_for(database_url) as engine:
            columns, _ = table_rows(engine, "rm_receipts")
        assert "last_event_at" not in columns
        upgrade(store)
        assert current_revision(store) == HEAD
    finally:
        store.dispose()

    with engine_for(database_url) as engine, engine.connect() as conn:
        nulls = conn.execute(text("SELECT last_event_at FROM rm_receipts")).scalars().all()
    assert nulls == [None] * len(WINDOWS)
    after_migration = checksums(database_url)
    assert after_migration["rm_receipts"] != before["rm_receipts"]
    # 0003 makes these two anew and 0004 adds two: all replayed from the start by the follower.
    replayed = {"rm_admitted", "rm_quarantine", "rm_activity", "rm_pending"}
    assert all(after_migration[t].startswith("0 rows") for t in replayed)
    kept = [t for t in READ_MODEL_TABLES if t != "rm_receipts" and t not in replayed]
    assert {t: after_migration[t] for t in kept} == {t: before[t] for t in kept}

    rebuilt = run_cli(database_url, "projections", "rebuild", "receipts")
    assert rebuilt.returncode == 0, rebuilt.stderr
    services.catch_up()
    assert checksums(database_url) == before
    assert services.gate("closed-plain")["status"] == "PASS"


def test_projection_status_shows_the_lag_and_then_zero_after_catch_up(services, database_url):
    services.ledger.admit("w", batch("w", *[event(str(n)) for n in range(20)]))
    head = services.runner.head()
    behind = run_cli(database_url, "projections", "status")
    assert behind.returncode == 0, behind.stderr
    assert behind.stdout.splitlines()[0].split() == ["projection", "position", "head", "lag"]
    assert _status_rows(behind.stdout) == {
        name: {"position": 0, "head": head, "lag": head} for name in PROJECTIONS
    }

    services.catch_up()
    caught_up = run_cli(database_url, "projections", "status")
    assert caught_up.returncode == 0, caught_up.stderr
    assert _status_rows(caught_up.stdout) == {
        name: {"position": head, "head": head, "lag": 0} for name in PROJECTIONS
    }


def _schema(database_url: str) -> dict[str, Any]:
    """Primary keys and secondary indexes of the read-model tables, as the database has them."""
    with engine_for(database_url) as engine:
        inspector = inspect(engine)
        return {
            name: {
                "primary_key": inspector.get_pk_constraint(name),
                "indexes": sorted(
                    (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                    for i in inspector.get_indexes(name)
                ),
            }
            for name in READ_MODEL_TABLES
        }


def test_a_rebuild_keeps_every_tables_primary_key_and_secondary_indexes(
    make_services, database_url
):
    services = populated(make_services)
    before = _schema(database_url)
    assert ("rm_admitted_by_offset", ("window_id", "bus_offset"), False) in before["rm_admitted"][
        "indexes"
    ]
    assert ("rm_quarantine_by_position", ("first_position",), False) in before["rm_quarantine"][
        "indexes"
    ]
    services.runner.rebuild()
    assert _schema(database_url) == before
    services.runner.rebuild()  # and again: the switch leaves nothing that a second one trips on
    assert _schema(database_url) == before


class Interrupted(Exception):
    pass


def test_a_rebuild_that_dies_midway_leaves_the_live_tables_serving_and_a_rerun_completes(
    make_services, database_url
):
    services = populated(make_services)
    before = checksums(database_url)
    receipts_before = {w: services.read.receipt(w) for w in WINDOWS}
    services.runner.page = 5
    calls = []

    def die_after_a_few_pages(n: int) -> None:
        calls.append(n)
        if len(calls) == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        services.runner.rebuild("receipts", die_after_a_few_pages)
    assert "rm_receipts__next" in table_names(database_url)  # half-built, left behind
    assert checksums(database_url) == before
    assert {w: services.read.receipt(w) for w in WINDOWS} == receipts_before

    # The live follower is not disturbed by the leftover, and a new rebuild starts over.
    services.ledger.admit("open-quarantine", batch("open-quarantine", event("after")))
    services.catch_up()
    assert services.receipt("open-quarantine")["counts"]["admitted"] == 13
    after_catch_up = checksums(database_url)
    services.runner.rebuild("receipts")
    assert checksums(database_url) == after_catch_up
    assert not [t for t in table_names(database_url) if t.endswith("__next")]
    assert tracking_positions(database_url) == {
        name: services.runner.head() for name in PROJECTIONS
    }
