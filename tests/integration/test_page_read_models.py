"""The read models behind the reviewer's pages, on both backends: arrivals by verdict per
minute, pending unknown identities, and the windows list filtered by gate (as served) and by a
part of the window id."""

from __future__ import annotations

from sqlalchemy import text

from service.composition import Services
from tests.support.builders import batch, event, identity
from tests.support.bus import ScriptedBus
from tests.support.readside import checksums, engine_for
from tests.support.tamper import SEALED_ADMISSIONS, edit_admitted_payload_in_place


def _verdict_totals(services: Services, window_id: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for row in services.read.activity(window_id):
        assert len(row["minute"]) == len("2026-11-29T10:00")
        totals[row["verdict"]] = totals.get(row["verdict"], 0) + row["n"]
    return totals


def test_arrivals_per_minute_add_up_to_the_receipts_counts_and_survive_a_rebuild(
    make_services, database_url
) -> None:
    services = make_services()
    services.ledger.admit("w", batch("w", *(event(str(i), {"n": i}) for i in range(30))))
    services.ledger.admit("w", batch("w", event("1", {"n": 1}), event("2", {"n": 99})))
    services.ledger.admit("other", batch("other", event("1")))
    services.catch_up()

    assert _verdict_totals(services, "w") == {"ADMITTED": 30, "DUPLICATE": 1, "QUARANTINED": 1}
    assert _verdict_totals(services, "other") == {"ADMITTED": 1}
    receipt = services.receipt("w")
    assert (receipt["counts"]["admitted"], receipt["counts"]["duplicates"]) == (30, 1)

    before = checksums(database_url, ["rm_activity", "rm_pending"])
    services.runner.rebuild("activity")
    services.runner.rebuild("pending")
    assert checksums(database_url, ["rm_activity", "rm_pending"]) == before


def test_a_pending_identity_is_listed_with_its_time_until_reconcile_resolves_it(
    make_services,
) -> None:
    bus = ScriptedBus()
    services = make_services(publisher=bus)
    stuck = [identity("w", "2"), identity("w", "3")]
    bus.time_out_and_store.update(stuck)
    services.ledger.admit("w", batch("w", event("1"), event("2"), event("3")))
    services.catch_up()

    pending, total = services.read.pending("w", 50)
    assert total == 2
    assert sorted(p["identity"] for p in pending) == sorted(stuck)
    assert {p["event_id"] for p in pending} == {"2", "3"}
    assert all(p["since"].endswith("Z") and p["reason"] for p in pending)
    assert services.read.pending("w", 1)[1] == 2 and len(services.read.pending("w", 1)[0]) == 1
    assert _verdict_totals(services, "w") == {"ADMITTED": 1, "PUBLISH_UNKNOWN": 2}

    bus.time_out_and_store.clear()
    services.reconcile("w")
    assert services.read.pending("w", 50) == ([], 0)


def test_the_windows_list_filters_by_the_gate_as_served_and_by_part_of_the_id(
    make_services, database_url
) -> None:
    services = make_services()
    services.ledger.admit("orders-a", batch("orders-a", *SEALED_ADMISSIONS))
    services.close_window("orders-a")
    services.ledger.admit("orders-b", batch("orders-b", *SEALED_ADMISSIONS))
    services.close_window("orders-b")
    services.ledger.admit("pay_1", batch("pay_1", event("1")))
    services.ledger.admit("payx1", batch("payx1", event("1")))
    services.catch_up()

    def ids(**filters: str) -> list[str]:
        return [w["window_id"] for w in services.windows(None, 50, **filters)[0]]

    assert ids(gate="PASS") == ["orders-a", "orders-b"]
    assert ids(gate="OPEN") == ["pay_1", "payx1"]
    assert ids(search="orders") == ["orders-a", "orders-b"]
    # LIKE's wildcard is the text it is: "_" matches only "_".
    assert ids(search="y_") == ["pay_1"]
    assert ids(search="yx") == ["payx1"]
    assert ids(gate="PASS", search="-b") == ["orders-b"]
    assert ids(gate="FAIL") == []

    # A sealed window whose stored history was changed behind the service's back: once a check
    # finds it, the list filters it as FAIL although its read-model row still says PASS.
    edit_admitted_payload_in_place(database_url, "orders-a")
    services.verify("orders-a")
    assert ids(gate="FAIL") == ["orders-a"]
    assert ids(gate="PASS") == ["orders-b"]
    with engine_for(database_url) as engine, engine.connect() as conn:
        stored = conn.execute(
            text("SELECT gate FROM rm_receipts WHERE window_id = 'orders-a'")
        ).scalar()
    assert stored == "PASS"

    page, cursor = services.windows(None, 2)
    assert [w["window_id"] for w in page] == ["orders-a", "orders-b"] and cursor == "orders-b"
    assert all(w["opened_at"] for w in page) and all(w["closed_at"] for w in page)
