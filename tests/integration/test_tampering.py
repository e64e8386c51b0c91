"""A closed window tampered with behind the service's back (contract s.9, issue 12) ends with
its gate FAIL and a reason: through verify (HTTP), at start, and through the background scrub
within the interval the test sets; `admitted` answers 409; no answer is a 500. An untampered
closed window stays PASS through all of it. On each backend.

The six tamperings and the sealed window they work on are `tests.support.tamper`'s.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from ledger.errors import LedgerError
from service.composition import Services, build_services
from service.settings import Settings
from tests.support.builders import batch, event
from tests.support.http import assert_error, barrier, in_process
from tests.support.services import wait_until
from tests.support.tamper import (
    EDITED_AMOUNT,
    HISTORY_TAMPERINGS,
    READ_MODEL_TAMPERING,
    REWRITTEN_AMOUNT,
    SEALED_ADMISSIONS,
    SEALED_EVENTS,
    TAMPERINGS,
    Tampering,
    stored_states,
)

WINDOW = "w-sealed"
SCRUB_INTERVAL = 0.2
# A bound on a liveness wait (many scrub intervals), not a timing assertion.
SCRUB_WAIT = 50 * SCRUB_INTERVAL
CHECK_WAIT = 20.0


@pytest.fixture
def make_scrubbing(migrated: Settings) -> Iterator[Callable[[float], Services]]:
    """`make(interval)`: services whose scrub runs every `interval` seconds once following
    (0: at start only); all closed at teardown (closing twice is harmless)."""
    with ExitStack() as made:

        def make(interval: float) -> Services:
            settings = dataclasses.replace(migrated, scrub_interval_seconds=interval)
            built = build_services(settings)
            made.callback(built.close)
            return built

        yield make


def seal(services: Services) -> dict[str, Any]:
    services.admit(WINDOW, batch(WINDOW, *SEALED_ADMISSIONS))
    receipt = services.close_window(WINDOW)
    assert receipt["gate"] == "PASS", receipt
    assert receipt["events"] == SEALED_EVENTS, receipt
    return receipt


def latest_check(services: Services) -> dict[str, Any] | None:
    return services.evidence.store.latest(WINDOW)


def checked_by(services: Services, *sources: str) -> bool:
    check = latest_check(services)
    return check is not None and check["source"] in sources


def assert_fail_naming(gate: dict[str, Any], tampering: Tampering) -> None:
    assert gate["status"] == "FAIL", gate
    assert gate["reasons"], gate
    assert any(tampering.reason in reason for reason in gate["reasons"]), gate


def amounts(body: Any) -> list[int]:
    """Every "amount" anywhere in a JSON answer."""
    if isinstance(body, dict):
        found = [body["amount"]] if isinstance(body.get("amount"), int) else []
        return found + [a for value in body.values() for a in amounts(value)]
    if isinstance(body, list):
        return [a for value in body for a in amounts(value)]
    return []


# --- through verify -------------------------------------------------------------------------


@pytest.mark.parametrize("tampering", TAMPERINGS, ids=str)
def test_after_each_tampering_get_verify_turns_the_gate_fail_with_a_reason_and_admitted_is_409(
    make_scrubbing: Callable[[float], Services], tampering: Tampering, database_url: str
) -> None:
    services = make_scrubbing(0)  # the scrub runs once, at start
    seal(services)
    with in_process(services.settings, services) as api:
        # The check at start has seen the window whole; from here on only verify looks.
        wait_until(lambda: checked_by(services, "start"), CHECK_WAIT, "the check at start")
        assert latest_check(services)["ok"] is True  # type: ignore[index]
        tampering.apply(database_url, WINDOW)

        verify = api.get(f"/v1/windows/{WINDOW}/verify")
        assert verify.status_code == 200, verify.text
        assert verify.json()["ok"] is (not tampering.in_history), verify.json()
        assert verify.json()["first_bad_version"] == tampering.first_bad_version

        admitted = api.get(f"/v1/windows/{WINDOW}/admitted")
        body = assert_error(admitted, 409)
        assert body["error"] in {"chain_broken", "gate_not_passed"}, body
        assert EDITED_AMOUNT not in amounts(body) and REWRITTEN_AMOUNT not in amounts(body)

        gate = api.get(f"/v1/windows/{WINDOW}/gate")
        assert gate.status_code == 200, gate.text
        assert_fail_naming(gate.json(), tampering)
        receipt = api.get(f"/v1/windows/{WINDOW}/receipt")
        assert receipt.status_code == 200 and receipt.json()["gate"] == "FAIL", receipt.text
        markdown = api.get(f"/v1/windows/{WINDOW}/receipt", headers={"Accept": "text/markdown"})
        assert "- **Gate:** FAIL" in markdown.text, markdown.text
        assert tampering.reason in markdown.text, markdown.text
        listed = api.get("/v1/windows").json()["items"]
        assert [w["gate"] for w in listed if w["window_id"] == WINDOW] == ["FAIL"]


def test_verify_of_an_untampered_closed_window_says_ok_and_the_gate_stays_pass(
    make_scrubbing: Callable[[float], Services],
) -> None:
    services = make_scrubbing(0)
    receipt = seal(services)
    with in_process(services.settings, services) as api:
        wait_until(lambda: checked_by(services, "start"), CHECK_WAIT, "the check at start")
        verify = api.get(f"/v1/windows/{WINDOW}/verify").json()
        assert verify == {
            "ok": True,
            "events": SEALED_EVENTS,
            "head": receipt["chain_head"],
            "first_bad_version": None,
        }
        assert api.get(f"/v1/windows/{WINDOW}/gate").json()["status"] == "PASS"
        admitted = api.get(f"/v1/windows/{WINDOW}/admitted")
        assert admitted.status_code == 200, admitted.text
        assert [item["payload"] for item in admitted.json()["items"]] == [
            {"amount": 2500},
            {"amount": 100},
            {"amount": 7},
        ]


# --- no 500, and nothing recorded into a sealed window, after a restart ----------------------


@pytest.mark.parametrize("tampering", TAMPERINGS, ids=str)
def test_after_each_tampering_and_a_restart_no_answer_is_a_500_and_nothing_reopens_the_window(
    services: Services,
    make_scrubbing: Callable[[float], Services],
    tampering: Tampering,
    database_url: str,
) -> None:
    seal(services)
    tampering.apply(database_url, WINDOW)
    versions = sorted(stored_states(database_url, WINDOW))
    restarted = make_scrubbing(3600)  # as after a restart: nothing of the window is cached
    path = f"/v1/windows/{WINDOW}"
    with in_process(restarted.settings, restarted) as api:
        wait_until(lambda: checked_by(restarted, "start"), CHECK_WAIT, "the check at start")
        answers = {
            "admitted": api.get(f"{path}/admitted"),
            "admit a new event": api.post(f"{path}/admissions", json={"events": [event("new")]}),
            "admit a duplicate": api.post(
                f"{path}/admissions", json={"events": [SEALED_ADMISSIONS[0]]}
            ),
            "close": api.post(f"{path}/close"),
            "reconcile": api.post(f"{path}/reconcile"),
            "summary": api.get(path),
            "receipt": api.get(f"{path}/receipt"),
            "receipt md": api.get(f"{path}/receipt", headers={"Accept": "text/markdown"}),
            "gate": api.get(f"{path}/gate"),
            "history": api.get(f"{path}/history"),
            "verify": api.get(f"{path}/verify"),
            "windows": api.get("/v1/windows"),
            "quarantine": api.get("/v1/quarantine", params={"window_id": WINDOW}),
            "windows page": api.get("/"),
            "failed windows page": api.get("/", params={"gate": "FAIL"}),
            "window page": api.get(f"/windows/{WINDOW}"),
            "quarantine page": api.get(f"/windows/{WINDOW}/quarantine"),
            "history page": api.get(f"/windows/{WINDOW}/history"),
            "verify page": api.get(f"/windows/{WINDOW}/verify"),
            "markdown receipt page": api.get(f"/windows/{WINDOW}/receipt.md"),
        }
        failed = {name: (r.status_code, r.text[:300]) for name, r in answers.items()}
        assert {name: a for name, a in failed.items() if a[0] >= 500} == {}
        # A sealed window takes no new event, and close does not seal it again.
        assert_error(answers["admit a new event"], 409, context="admit")
        close = answers["close"]
        assert close.status_code == 409 or close.json()["gate"] == "FAIL", close.text
        assert sorted(stored_states(database_url, WINDOW)) == versions, "something was recorded"
        gate = api.get(f"{path}/gate").json()
        assert_fail_naming(gate, tampering)
        assert_error(api.get(f"{path}/admitted"), 409, context="admitted after verify")
        # Other windows still work, and the read side still follows the log.
        assert "w-after" in barrier(api, "w-after")


# --- through the background scrub and at start -------------------------------------------------


@pytest.mark.parametrize("tampering", HISTORY_TAMPERINGS, ids=str)
def test_the_background_scrub_turns_the_gate_fail_with_a_reason_after_each_history_tampering(
    make_scrubbing: Callable[[float], Services], tampering: Tampering, database_url: str
) -> None:
    services = make_scrubbing(SCRUB_INTERVAL)
    services.start_following()
    seal(services)
    wait_until(lambda: checked_by(services, "scrub"), SCRUB_WAIT, "a scrub of the closed window")
    assert latest_check(services)["ok"] is True  # type: ignore[index]

    tampering.apply(database_url, WINDOW)
    wait_until(
        lambda: services.gate(WINDOW)["status"] == "FAIL",
        SCRUB_WAIT,
        f"the scrub noticing the {tampering}",
    )
    assert_fail_naming(services.gate(WINDOW), tampering)
    check = latest_check(services)
    assert check is not None and check["source"] == "scrub" and check["ok"] is False, check
    assert services.receipt(WINDOW)["gate"] == "FAIL"
    with pytest.raises(LedgerError) as refused:
        services.admitted(WINDOW, None, None)
    assert refused.value.code in {"chain_broken", "gate_not_passed"}
    # The next passes find the same: the FAIL stays.
    first = check["checked_at"]
    wait_until(
        lambda: latest_check(services)["checked_at"] != first,  # type: ignore[index]
        SCRUB_WAIT,
        "another scrub pass",
    )
    assert_fail_naming(services.gate(WINDOW), tampering)


def test_the_background_scrub_alone_turns_the_gate_fail_after_the_read_model_payload_is_edited(
    make_scrubbing: Callable[[float], Services], database_url: str
) -> None:
    # Issue 12's acceptance: each tampering, this one included, ends in gate FAIL with a reason
    # within the scrub interval the test sets, before anyone reads the edited page.
    services = make_scrubbing(SCRUB_INTERVAL)
    services.start_following()
    seal(services)
    wait_until(lambda: checked_by(services, "scrub"), SCRUB_WAIT, "a scrub of the closed window")
    READ_MODEL_TAMPERING.apply(database_url, WINDOW)
    wait_until(
        lambda: services.gate(WINDOW)["status"] == "FAIL",
        SCRUB_WAIT,
        "the scrub noticing the edited read-model payload",
    )
    assert services.gate(WINDOW)["reasons"], services.gate(WINDOW)


@pytest.mark.parametrize("tampering", HISTORY_TAMPERINGS, ids=str)
def test_a_history_tampered_while_the_service_was_down_is_found_by_the_check_at_start(
    services: Services,
    make_scrubbing: Callable[[float], Services],
    tampering: Tampering,
    database_url: str,
) -> None:
    seal(services)
    tampering.apply(database_url, WINDOW)
    started = make_scrubbing(0)  # no background scrub: only the check at start
    started.start_following()
    wait_until(lambda: checked_by(started, "start"), CHECK_WAIT, "the check at start")
    check = latest_check(started)
    assert check is not None and check["ok"] is False, check
    assert_fail_naming(started.gate(WINDOW), tampering)
    with pytest.raises(LedgerError) as refused:
        started.admitted(WINDOW, None, None)
    assert refused.value.code in {"chain_broken", "gate_not_passed"}


def test_the_read_model_edit_is_found_by_the_first_admitted_read_and_the_fail_survives_scrubs(
    make_scrubbing: Callable[[float], Services], database_url: str
) -> None:
    services = make_scrubbing(SCRUB_INTERVAL)
    seal(services)
    READ_MODEL_TAMPERING.apply(database_url, WINDOW)
    with pytest.raises(LedgerError) as refused:
        services.admitted(WINDOW, None, None)
    assert refused.value.code == "chain_broken"
    assert READ_MODEL_TAMPERING.reason in refused.value.detail
    assert_fail_naming(services.gate(WINDOW), READ_MODEL_TAMPERING)
    services.start_following()  # the scrub starts after the read (see the last test)
    first = latest_check(services)["checked_at"]  # type: ignore[index]
    wait_until(
        lambda: latest_check(services)["checked_at"] != first,  # type: ignore[index]
        SCRUB_WAIT,
        "a scrub pass after the admitted read",
    )
    assert_fail_naming(services.gate(WINDOW), READ_MODEL_TAMPERING)
    # The chain itself is intact (verify's `ok` is about the chain); the reasons keep the find.
    verification, reasons = services.verify(WINDOW)
    assert verification.ok is True
    assert any(READ_MODEL_TAMPERING.reason in reason for reason in reasons), reasons
    assert_fail_naming(services.gate(WINDOW), READ_MODEL_TAMPERING)


def test_an_untampered_closed_window_stays_pass_through_verify_and_many_scrub_passes(
    make_scrubbing: Callable[[float], Services],
) -> None:
    services = make_scrubbing(SCRUB_INTERVAL)
    services.start_following()
    receipt = seal(services)
    seen: set[str] = set()

    def passes() -> bool:
        check = latest_check(services)
        if check is not None and check["source"] == "scrub":
            assert check["ok"] is True, check
            seen.add(check["checked_at"])
        return len(seen) >= 3

    wait_until(passes, SCRUB_WAIT, "three scrub passes over the closed window")
    verification, reasons = services.verify(WINDOW)
    assert (verification.ok, verification.events, reasons) == (True, SEALED_EVENTS, [])
    assert verification.head == receipt["chain_head"]
    assert services.gate(WINDOW) == {"window_id": WINDOW, "status": "PASS", "reasons": []}
    items, _ = services.admitted(WINDOW, None, None)
    assert [item["payload"]["amount"] for item in items] == [2500, 100, 7]


# --- what the check at start and a concurrent read must not lose ------------------------------


def restart_holding_the_check_at_start(
    make_scrubbing: Callable[[float], Services],
) -> tuple[Services, threading.Event, threading.Event]:
    """Services whose check at start waits for `release` (and sets `done` when it ends)."""
    restarted = make_scrubbing(0)
    release, done = threading.Event(), threading.Event()
    scrub = restarted.evidence.scrub

    def slow_scrub(source: str = "scrub") -> int:
        release.wait(CHECK_WAIT)
        try:
            return scrub(source)
        finally:
            done.set()

    restarted.evidence.scrub = slow_scrub  # type: ignore[method-assign]
    return restarted, release, done


@pytest.mark.parametrize("tampering", TAMPERINGS, ids=str)
def test_right_after_a_restart_while_the_check_at_start_runs_admitted_answers_409(
    services: Services,
    make_scrubbing: Callable[[float], Services],
    tampering: Tampering,
    database_url: str,
) -> None:
    # On a big store the check at start takes a while (see benchmarks/scrub.py); it is held
    # here until the first read is answered, so the read meets the store as it is at start.
    seal(services)
    tampering.apply(database_url, WINDOW)
    restarted, release, done = restart_holding_the_check_at_start(make_scrubbing)
    try:
        with in_process(restarted.settings, restarted) as api:
            admitted = api.get(f"/v1/windows/{WINDOW}/admitted")
            release.set()
            assert admitted.status_code == 409, (
                f"served before the check at start: {admitted.status_code} {admitted.text[:300]}"
            )
            assert done.wait(CHECK_WAIT), "the check at start never ended"
            assert_fail_naming(api.get(f"/v1/windows/{WINDOW}/gate").json(), tampering)
    finally:
        release.set()


def test_a_tail_rewritten_and_rebuilt_while_down_is_not_served_before_the_check_at_start(
    services: Services, make_scrubbing: Callable[[float], Services], database_url: str
) -> None:
    # Issue 12's first finding, with the digests recomputed: after a rebuild the read model
    # holds the rewritten payload, and every stored event's own digest recomputes.
    seal(services)
    rewritten = TAMPERINGS[1]
    assert rewritten.name == "rewritten-tail"
    rewritten.apply(database_url, WINDOW)
    services.runner.rebuild()
    restarted, release, done = restart_holding_the_check_at_start(make_scrubbing)
    try:
        with in_process(restarted.settings, restarted) as api:
            admitted = api.get(f"/v1/windows/{WINDOW}/admitted")
            release.set()
            assert REWRITTEN_AMOUNT not in amounts(admitted.json()), admitted.text
            assert admitted.status_code == 409, admitted.text
            assert done.wait(CHECK_WAIT), "the check at start never ended"
    finally:
        release.set()


FOLLOWER_NOTE = (
    "the read side saw version 4 after version 2: stored events were removed from the log it "
    "follows"
)


def test_a_note_the_follower_recorded_survives_later_scrubs_of_a_whole_looking_window(
    services: Services,
) -> None:
    # What the follower saw cannot be seen again in the store (a replaced event): it stays.
    seal(services)
    services.evidence.store.record(WINDOW, ok=False, reasons=[FOLLOWER_NOTE], source="follower")
    assert services.evidence.scrub() == 1
    gate = services.gate(WINDOW)
    assert gate["status"] == "FAIL" and FOLLOWER_NOTE in gate["reasons"], gate


def test_a_note_the_follower_records_while_a_scrub_checks_the_window_is_not_lost(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The interleaving the scrub thread and the follower thread can take: the scrub reads the
    # window's latest check, the follower records its note, the scrub writes its own check.
    seal(services)
    store = services.evidence.store
    latest = store.latest

    def read_then_the_follower_notes(window_id: str) -> dict[str, Any] | None:
        earlier = latest(window_id)
        monkeypatch.setattr(store, "latest", latest)
        store.record(WINDOW, ok=False, reasons=[FOLLOWER_NOTE], source="follower")
        return earlier

    monkeypatch.setattr(store, "latest", read_then_the_follower_notes)
    assert services.evidence.scrub() == 1
    gate = services.gate(WINDOW)
    assert gate["status"] == "FAIL" and FOLLOWER_NOTE in gate["reasons"], gate
