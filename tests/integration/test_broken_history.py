"""A window whose stored history has a hole, or an event that does not decode or apply, is
reported as `chain_broken` (contract s.9) by every command and by the write side's reads that
load it: never a 500, never a re-run. The read side's follower notices a version it did not
expect and records an integrity failure for the window. On each backend.

A hole is made as an operator with database access could: by deleting a stored event. The
ledger that then meets the window is a fresh one (as after a restart), so it loads the window
from storage; one test meets the hole while catching a cached window up instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ledger.application import Ledger
from ledger.errors import ChainBroken
from projections.base import ProjectedEvent
from projections.evidence import EvidenceStore
from projections.receipts import ReceiptsProjection
from service.composition import Services
from service.settings import Settings
from tests.support.builders import batch, event
from tests.support.history import delete_stored_event, event_ids
from tests.support.http import assert_error, in_process
from tests.support.storage import edit_stored_fields, rewrite_stored_event

WINDOW = "w-broken"


def holed_window(make_ledger: Callable[..., Ledger], database_url: str) -> None:
    """WINDOW with versions 1 (opened), 2, 3, 4 (admitted), then version 2 deleted."""
    first = make_ledger()
    first.admit(WINDOW, batch(WINDOW, event("1"), event("2"), event("3")))
    delete_stored_event(database_url, WINDOW, 2)
    assert sorted(event_ids(database_url, WINDOW)) == [1, 3, 4]


def assert_breaks_at(error: ChainBroken, version: int) -> None:
    assert error.code == "chain_broken"
    assert repr(WINDOW) in error.detail, error.detail
    assert f"breaks at version {version}" in error.detail, error.detail
    assert error.extra == {"window_id": WINDOW, "version": version}


COMMANDS: dict[str, Callable[[Ledger], Any]] = {
    "admit": lambda ledger: ledger.admit(WINDOW, batch(WINDOW, event("4"))),
    "close": lambda ledger: ledger.close_window(WINDOW),
    "reconcile": lambda ledger: ledger.reconcile(WINDOW),
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_on_a_window_with_a_deleted_middle_event_is_chain_broken_at_that_version(
    make_ledger: Callable[..., Ledger], database_url: str, command: str
) -> None:
    holed_window(make_ledger, database_url)
    ledger = make_ledger()
    with pytest.raises(ChainBroken) as raised:
        COMMANDS[command](ledger)
    assert_breaks_at(raised.value, 2)
    assert "it is missing (the next stored event is version 3)" in raised.value.detail
    assert sorted(event_ids(database_url, WINDOW)) == [1, 3, 4], "something was recorded"
    # Asked again, the same answer: nothing half-loaded was kept in the cache.
    with pytest.raises(ChainBroken):
        COMMANDS[command](ledger)
    assert ledger.uow.cached(WINDOW) is None


@pytest.mark.parametrize("read", ["get_window", "receipt", "gate"])
def test_the_write_sides_reads_of_a_window_with_a_hole_are_chain_broken(
    make_ledger: Callable[..., Ledger], database_url: str, read: str
) -> None:
    holed_window(make_ledger, database_url)
    ledger = make_ledger()
    with pytest.raises(ChainBroken) as raised:
        getattr(ledger, read)(WINDOW)
    assert_breaks_at(raised.value, 2)


def test_a_broken_history_is_loaded_once_per_command_never_re_run(
    make_ledger: Callable[..., Ledger], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    holed_window(make_ledger, database_url)
    ledger = make_ledger()
    loads: list[str] = []
    find = ledger.uow.find

    def counted(window_id: str) -> Any:
        loads.append(window_id)
        return find(window_id)

    monkeypatch.setattr(ledger.uow, "find", counted)
    for command in COMMANDS.values():
        with pytest.raises(ChainBroken):
            command(ledger)
    assert loads == [WINDOW] * len(COMMANDS)


def test_a_cached_window_catching_up_over_a_hole_is_chain_broken_and_dropped_from_the_cache(
    make_ledger: Callable[..., Ledger], database_url: str
) -> None:
    mine, other = make_ledger(), make_ledger()
    mine.admit(WINDOW, batch(WINDOW, event("1")))  # versions 1, 2
    mine.admit(WINDOW, batch(WINDOW, event("2")))  # version 3; the window is cached now
    other.admit(WINDOW, batch(WINDOW, event("3"), event("4")))  # versions 4, 5
    delete_stored_event(database_url, WINDOW, 4)
    assert mine.uow.cached(WINDOW) is not None
    with pytest.raises(ChainBroken) as raised:
        mine.admit(WINDOW, batch(WINDOW, event("5")))
    assert_breaks_at(raised.value, 4)
    assert "the next stored event is version 5" in raised.value.detail
    assert mine.uow.cached(WINDOW) is None, "the half caught-up window stayed cached"
    with pytest.raises(ChainBroken):  # loaded from storage now: the same hole
        mine.admit(WINDOW, batch(WINDOW, event("5")))
    assert sorted(event_ids(database_url, WINDOW)) == [1, 2, 3, 5]


def _drop_offset(state: dict[str, Any]) -> None:
    del state["offset"]


@pytest.mark.parametrize(
    ("tampering", "why"),
    [
        ("undecodable", "its stored event does not decode"),
        ("unappliable", "its stored event does not apply"),
    ],
)
def test_an_event_that_does_not_decode_or_apply_is_chain_broken_at_its_version(
    make_ledger: Callable[..., Ledger], database_url: str, tampering: str, why: str
) -> None:
    first = make_ledger()
    first.admit(WINDOW, batch(WINDOW, event("1"), event("2")))
    if tampering == "undecodable":
        rewrite_stored_event(database_url, WINDOW, 2, lambda _: b"{not json")
    else:
        edit_stored_fields(database_url, WINDOW, 2, _drop_offset)
    ledger = make_ledger()
    for command in COMMANDS.values():
        with pytest.raises(ChainBroken) as raised:
            command(ledger)
        assert_breaks_at(raised.value, 2)
        assert why in raised.value.detail


def test_over_http_a_window_with_a_hole_answers_409_chain_broken_and_verify_names_the_break(
    make_ledger: Callable[..., Ledger], migrated: Settings, database_url: str
) -> None:
    holed_window(make_ledger, database_url)
    with in_process(migrated) as api:
        calls = {
            "admit": lambda: api.post(
                f"/v1/windows/{WINDOW}/admissions", json={"events": [event("4")]}
            ),
            "close": lambda: api.post(f"/v1/windows/{WINDOW}/close"),
            "reconcile": lambda: api.post(f"/v1/windows/{WINDOW}/reconcile"),
        }
        for name, call in calls.items():
            body = assert_error(call(), 409, "chain_broken", context=name)
            assert "breaks at version 2" in body["detail"], body
            assert repr(WINDOW) in body["detail"], body
        verify = api.get(f"/v1/windows/{WINDOW}/verify")
        assert verify.status_code == 200, verify.text
        # The first stored event that does not follow on: version 3 (version 2 is gone).
        assert verify.json()["ok"] is False
        assert verify.json()["first_bad_version"] == 3
        for path in ("", "/receipt", "/gate", "/history"):
            response = api.get(f"/v1/windows/{WINDOW}{path}")
            assert response.status_code < 500, (path, response.text)
    assert sorted(event_ids(database_url, WINDOW)) == [1, 3, 4], "something was recorded"


def test_the_follower_records_an_integrity_failure_when_a_version_is_missing_from_the_log(
    services: Services, database_url: str
) -> None:
    services.admit(WINDOW, batch(WINDOW, event("1"), event("2"), event("3")))
    delete_stored_event(database_url, WINDOW, 3)  # before the read side saw it
    services.catch_up()
    check = EvidenceStore(services.store).latest(WINDOW)
    assert check is not None, "the follower recorded nothing"
    assert check["ok"] is False
    assert check["source"] == "follower"
    assert check["reasons"] == [
        "the read side saw version 4 after version 2: stored events were removed from the "
        "log it follows"
    ]
    # The event is still applied: the read side counts what it saw.
    receipt = services.read.receipt(WINDOW)
    assert receipt is not None and receipt["events"] == 3


def test_the_receipts_projection_ignores_a_windows_late_arrival_events(
    services: Services,
) -> None:
    def projected(position: int, version: int, type_: str, **fields: Any) -> ProjectedEvent:
        return ProjectedEvent(
            position, WINDOW, version, type_, "2026-01-01T00:00:00.000000Z", fields, f"d{position}"
        )

    source = {"partition": "p", "offset": 1}
    events = [
        projected(1, 1, "WindowOpened", window_id=WINDOW),
        # Another aggregate (the window's late arrivals), named by the same window id.
        projected(2, 1, "LateArrivalsOpened", window_id=WINDOW),
        projected(3, 2, "LateMismatchRecorded", identity="i", received_hash="h"),
        projected(4, 2, "EventAdmitted", offset=1, source=source),
    ]
    projection = ReceiptsProjection()
    with services.store.writer.begin() as conn:
        projection.apply(conn, events, {t.name: t for t in projection.tables()})
    receipt = services.read.receipt(WINDOW)
    assert receipt is not None
    assert receipt["events"] == 2
    assert receipt["chain_head"] == "d4"
    assert EvidenceStore(services.store).latest(WINDOW) is None, "a late event was a gap"
