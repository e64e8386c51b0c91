"""Event ids (the notification ids the read side follows) are never handed out twice.

The library's SQLite events table takes them from SQLite's rowid, which gives the next insert
the id of a deleted newest row: a follower already past that id never sees the new event. The
ledger's SQLite table uses AUTOINCREMENT, and a database made with the library's table is carried
over at start, keeping its rows and their ids. PostgreSQL takes ids from a sequence: the same
check runs there as the control.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ledger.application import Ledger
from projections.evidence import EvidenceStore
from service.composition import Services
from tests.support.builders import batch, event
from tests.support.history import (
    delete_stored_event,
    event_ids,
    make_events_table_reuse_ids,
    newest_event_id,
    next_id_after_deleting_the_newest,
    sqlite_events_table,
)

WINDOW = "w-ids"
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_after_the_newest_event_is_deleted_the_next_event_gets_a_new_id_the_follower_sees(
    make_services: Callable[..., Services], database_url: str
) -> None:
    first = make_services()
    first.admit(WINDOW, batch(WINDOW, event("1")))  # versions 1, 2
    first.catch_up()
    deleted = delete_stored_event(database_url, WINDOW, 2)
    assert deleted == newest_event_id(database_url) + 1

    restarted = make_services()  # loads the window from storage: its version 2 is gone
    restarted.admit(WINDOW, batch(WINDOW, event("2")))
    ids = event_ids(database_url, WINDOW)
    assert sorted(ids) == [1, 2]
    assert ids[2] > deleted, f"the new event took id {ids[2]}, the deleted one had {deleted}"

    restarted.catch_up()
    check = EvidenceStore(restarted.store).latest(WINDOW)
    assert check is not None, "the follower did not notice the replaced event"
    assert check["ok"] is False
    assert check["source"] == "follower"
    assert check["reasons"] == [
        "the read side saw version 2 after version 2: a stored event was removed or replaced"
    ]
    receipt = restarted.read.receipt(WINDOW)
    assert receipt is not None and receipt["events"] == 3, "the new event was skipped"


@SQLITE_ONLY
def test_a_new_sqlite_events_table_never_reuses_the_id_of_a_deleted_newest_row(
    ledger: Ledger, database_url: str
) -> None:
    ledger.admit(WINDOW, batch(WINDOW, event("1"), event("2")))
    sql, rows, remembered = sqlite_events_table(database_url)
    assert "AUTOINCREMENT" in sql.upper()
    assert remembered == rows[-1][0] == 3
    newest, next_id = next_id_after_deleting_the_newest(database_url)
    assert next_id == newest + 1


@SQLITE_ONLY
def test_an_sqlite_database_made_with_the_librarys_events_table_is_carried_over_with_its_ids(
    make_ledger: Callable[..., Ledger], database_url: str
) -> None:
    before = make_ledger()
    before.admit(WINDOW, batch(WINDOW, event("1"), event("2")))
    before.admit("w-other", batch("w-other", event("1")))
    before.admit(WINDOW, batch(WINDOW, event("3")))
    before.close()
    make_events_table_reuse_ids(database_url)
    sql, rows, _ = sqlite_events_table(database_url)
    assert "AUTOINCREMENT" not in sql.upper()
    # As made by the library, the table hands a deleted newest row's id out again.
    newest, next_id = next_id_after_deleting_the_newest(database_url)
    assert next_id == newest == 6

    after = make_ledger()
    carried_sql, carried_rows, remembered = sqlite_events_table(database_url)
    assert "AUTOINCREMENT" in carried_sql.upper()
    assert carried_rows == rows, "rows or their ids changed in the carry-over"
    assert remembered == 6
    assert after.verify(WINDOW).ok and after.verify("w-other").ok
    newest, next_id = next_id_after_deleting_the_newest(database_url)
    assert (newest, next_id) == (6, 7)

    after.admit(WINDOW, batch(WINDOW, event("4")))
    assert event_ids(database_url, WINDOW) == {1: 1, 2: 2, 3: 3, 4: 6, 5: 7}


@SQLITE_ONLY
def test_carrying_the_sqlite_events_table_over_happens_once(
    make_ledger: Callable[..., Ledger], database_url: str
) -> None:
    make_ledger().admit(WINDOW, batch(WINDOW, event("1"), event("2")))
    make_events_table_reuse_ids(database_url)
    make_ledger()
    carried = sqlite_events_table(database_url)
    make_ledger()  # a second start: nothing to carry over
    assert sqlite_events_table(database_url) == carried
