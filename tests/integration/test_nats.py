"""The NATS JetStream publisher against a real nats-server (contract sections 1, 3 and 4; ADR 0009).

Each test gets a nats-server of its own (tests/support/nats.py: free loopback port, temporary
store, SIGSTOP/SIGCONT/SIGKILL/restart) and runs once per backend (SQLite and PostgreSQL through
`database_url`/`migrated`). What the bus holds is checked with a raw nats-py client of the test's
own, never through the publisher under test.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from api.errors import status_of
from ledger.application import AdmissionResult
from ledger.errors import (
    BusLedgerMismatch,
    LedgerError,
    PublishRefused,
    PublishUnknownPending,
    WindowNotFound,
)
from ledger.infrastructure.nats import JetStreamPublisher, NatsSettings
from service.composition import Services, build_services
from service.settings import Settings
from tests.support.builders import TYPE, batch, event
from tests.support.builders import identity as ident
from tests.support.nats import get_message, publish_raw, release_event_loop, subject_messages
from tests.support.natsledger import (
    PUBLISH_TIMEOUT,
    Bus,
    admission_body,
    admit_retrying_refusals,
    assert_offsets_hold_their_identities,
    ensure_stream,
    events_of,
    history_types,
    offsets,
    phash,
    verdicts,
    wait_disconnected,
)
from tests.support.services import wait_until

# --- lifecycle ---------------------------------------------------------------------------


def test_closing_the_services_closes_the_publishers_event_loop(
    migrated: Settings, bus: Bus
) -> None:
    services = build_services(
        dataclasses.replace(
            migrated, publisher=bus.url, nats_stream=bus.stream, nats_subject_prefix=bus.prefix
        )
    )
    publisher = services.ledger.publisher
    assert isinstance(publisher, JetStreamPublisher)
    try:
        (result,) = services.ledger.admit("w.lifecycle", batch("w.lifecycle", event("l1")))
        assert result.verdict.value == "ADMITTED"
    finally:
        services.close()
        thread_alive, loop_closed = publisher._thread.is_alive(), publisher._loop.is_closed()
        release_event_loop(services)
    assert not thread_alive
    # An unclosed loop (and its self-pipe sockets) is a ResourceWarning at garbage collection,
    # an error under this project's filterwarnings=error.
    assert loop_closed, "JetStreamPublisher.close() stops the loop but never closes it"


# --- normal admissions ---------------------------------------------------------------------


def test_admitted_offsets_are_stream_sequences_whose_messages_carry_the_identity_as_msg_id(
    nats_services: Services, bus: Bus
) -> None:
    ledger = nats_services.ledger
    first, second = "w.nats.first", "w.nats.second"
    assert ledger.publisher.subject(first) == f"{bus.prefix}.w~nats~first"  # type: ignore[attr-defined]

    a = ledger.admit(first, batch(first, *(event(f"e{i}") for i in range(5))))
    b = ledger.admit(second, batch(second, *(event(f"e{i}") for i in range(3))))

    assert verdicts(a) == ["ADMITTED"] * 5
    assert verdicts(b) == ["ADMITTED"] * 3
    # Stream sequences, not per-window counters: the second window continues the stream.
    assert sorted(offsets(a).values()) == [1, 2, 3, 4, 5]  # type: ignore[type-var]
    assert sorted(offsets(b).values()) == [6, 7, 8]  # type: ignore[type-var]
    assert_offsets_hold_their_identities(bus, first, offsets(a))
    assert_offsets_hold_their_identities(bus, second, offsets(b))
    # The ledger's EventAdmitted offsets are the same numbers.
    assert {e["identity"]: e["offset"] for e in events_of(ledger, first, "EventAdmitted")} == (
        offsets(a)
    )
    stored = get_message(bus.url, bus.stream, offsets(a)[ident(first, "e0")])  # type: ignore[arg-type]
    assert json.loads(stored.data) == {
        "window_id": first,
        "identity": ident(first, "e0"),
        "event_type": TYPE,
        "event_id": "e0",
        "payload": {"id": "e0"},
        "payload_hash": phash({"id": "e0"}),
    }

    receipt = nats_services.close_window(first)
    assert receipt["gate"] == "PASS"
    assert receipt["bus_offsets"] == {"first": 1, "last": 5}
    assert nats_services.gate(first)["status"] == "PASS"


def test_a_full_replay_answers_duplicate_with_the_same_offsets_and_the_bus_keeps_one_message_each(
    make_nats_services: Callable[..., Services], bus: Bus
) -> None:
    services = make_nats_services()
    ledger = services.ledger
    window = "w.replay"
    batches = [
        batch(window, *(event(f"a{i}", source={"partition": "p0", "offset": i}) for i in range(4))),
        batch(window, *(event(f"b{i}") for i in range(3))),
    ]
    first_run = [ledger.admit(window, b) for b in batches]
    admitted = {k: v for r in first_run for k, v in offsets(r).items()}
    assert len(admitted) == 7 and len(set(admitted.values())) == 7

    replay = [ledger.admit(window, b) for b in batches]
    for original, again in zip(first_run, replay, strict=True):
        assert verdicts(again) == ["DUPLICATE"] * len(original)
        assert offsets(again) == offsets(original)

    # A second ledger process on the same database and bus answers the same.
    other = make_nats_services()
    for original, b in zip(first_run, batches, strict=True):
        again = other.ledger.admit(window, b)
        assert verdicts(again) == ["DUPLICATE"] * len(original)
        assert offsets(again) == offsets(original)

    assert bus.count(window) == 7
    assert ledger.publisher.count(window) == 7  # type: ignore[attr-defined]
    ids = bus.msg_ids(window)
    assert Counter(ids) == Counter(admitted.keys())  # exactly one message per identity
    assert history_types(ledger, window).count("EventAdmitted") == 7
    assert history_types(ledger, window).count("DuplicateAbsorbed") == 14

    receipt = services.close_window(window)
    assert receipt["gate"] == "PASS"
    assert receipt["counts"]["admitted"] == 7
    assert receipt["counts"]["duplicates"] == 14


# --- the publish ambiguity (SIGSTOP) --------------------------------------------------------


def stop_and_admit_unknowns(services: Services, bus: Bus, window: str) -> dict[str, Any]:
    """Admit two events, stop the server, admit a batch that repeats one and adds three."""
    bus.server.require_control()
    ledger = services.ledger
    first = ledger.admit(window, batch(window, event("a1"), event("a2")))
    assert verdicts(first) == ["ADMITTED", "ADMITTED"]

    bus.server.stop()
    second_batch = batch(window, event("a1"), event("u1"), event("u2"), event("u3"))
    started = time.monotonic()
    second = ledger.admit(window, second_batch)
    elapsed = time.monotonic() - started

    assert verdicts(second) == [
        "DUPLICATE",
        "PUBLISH_UNKNOWN",
        "PUBLISH_UNKNOWN",
        "PUBLISH_UNKNOWN",
    ]
    assert second[0].offset == first[0].offset
    assert [r.offset for r in second[1:]] == [None, None, None]
    assert elapsed < 5 * PUBLISH_TIMEOUT + 2, (
        f"publishes settled in {elapsed:.1f}s, not concurrently"
    )
    pending = sorted(r.identity for r in second[1:])
    unknown_events = events_of(ledger, window, "PublishUnknown")
    assert sorted(e["identity"] for e in unknown_events) == pending
    assert all("Timeout" in e["reason"] for e in unknown_events), unknown_events
    return {
        "first": offsets(first),
        "pending": pending,
        "second_batch": second_batch,
    }


def assert_close_refused_as_pending(services: Services, window: str, pending: list[str]) -> None:
    events_before = len(services.ledger.history(window))
    with pytest.raises(PublishUnknownPending) as refused:
        services.close_window(window)
    assert status_of(refused.value) == 409
    assert refused.value.as_json()["error"] == "publish_unknown_pending"
    assert refused.value.as_json()["pending"] == pending
    assert len(services.ledger.history(window)) == events_before  # nothing recorded
    services.catch_up()
    gate = services.gate(window)
    assert gate["status"] == "BLOCKED", gate
    assert services.receipt(window)["counts"]["pending_unknown"] == len(pending)


def test_timed_out_publishes_are_unknown_block_the_close_and_reconcile_to_their_stored_offsets(
    nats_services: Services, bus: Bus
) -> None:
    ledger, window = nats_services.ledger, "w.ambiguity"
    state = stop_and_admit_unknowns(nats_services, bus, window)
    pending = state["pending"]

    assert_close_refused_as_pending(nats_services, window, pending)

    bus.server.cont()
    # The ambiguity is real: the timed-out messages were stored after all.
    wait_until(
        lambda: bus.count(window) == 5, 10, "the stopped server stored the timed-out messages"
    )
    stored_ids = set(bus.msg_ids(window))
    assert set(pending) <= stored_ids

    outcome = ledger.reconcile(window)
    assert sorted(outcome["reconciled"]) == pending
    assert outcome["still_unknown"] == []
    assert outcome["adopted"] == []
    assert outcome["unadoptable"] == []

    reconciled = events_of(ledger, window, "PublishReconciled")
    assert sorted(e["identity"] for e in reconciled) == pending
    assert all(e["outcome"] == "published" for e in reconciled)
    real = {e["identity"]: e["offset"] for e in reconciled}
    assert_offsets_hold_their_identities(bus, window, real)
    assert set(real.values()).isdisjoint(state["first"].values())
    assert bus.count(window) == 5  # the re-publish was deduplicated by the bus
    assert Counter(bus.msg_ids(window)) == Counter([*state["first"], *pending])
    assert history_types(ledger, window).count("EventAdmitted") == 2  # reconciled, not re-admitted

    # Reconciling again finds nothing to do.
    assert ledger.reconcile(window) == {
        "reconciled": [],
        "still_unknown": [],
        "adopted": [],
        "unadoptable": [],
    }

    receipt = nats_services.close_window(window)
    assert receipt["gate"] == "PASS"
    assert nats_services.gate(window)["status"] == "PASS"
    assert receipt["counts"] == {
        "admitted": 5,
        "duplicates": 1,
        "quarantined": 0,
        "publish_unknown": 3,
        "reconciled": 3,
        "pending_unknown": 0,
    }
    assert receipt["bus_offsets"] == {"first": 1, "last": 5}

    # After the close the same batch is answered from the ledger: duplicates at the real offsets.
    again = ledger.admit(window, state["second_batch"])
    assert verdicts(again) == ["DUPLICATE"] * 4
    assert {r.identity: r.offset for r in again[1:]} == real


def test_retrying_an_unknown_admission_after_the_server_continues_admits_it_at_its_real_offset(
    nats_services: Services, bus: Bus
) -> None:
    ledger, window = nats_services.ledger, "w.retry"
    state = stop_and_admit_unknowns(nats_services, bus, window)
    pending = state["pending"]

    # Still stopped: a retry is still unknown and records nothing new.
    events_before = len(ledger.history(window))
    still = ledger.admit(window, state["second_batch"])
    assert verdicts(still) == ["DUPLICATE", "PUBLISH_UNKNOWN", "PUBLISH_UNKNOWN", "PUBLISH_UNKNOWN"]
    assert history_types(ledger, window)[events_before:] == ["DuplicateAbsorbed"]

    bus.server.cont()
    retried = ledger.admit(window, state["second_batch"])
    assert verdicts(retried) == ["DUPLICATE", "ADMITTED", "ADMITTED", "ADMITTED"]
    real = {r.identity: r.offset for r in retried[1:]}
    assert sorted(real) == pending
    assert_offsets_hold_their_identities(bus, window, real)

    reconciled = events_of(ledger, window, "PublishReconciled")
    assert {e["identity"]: e["offset"] for e in reconciled} == real
    assert all(e["outcome"] == "published" for e in reconciled)
    assert history_types(ledger, window).count("EventAdmitted") == 2
    assert bus.count(window) == 5
    assert Counter(bus.msg_ids(window)) == Counter([*state["first"], *pending])

    receipt = nats_services.close_window(window)
    assert receipt["gate"] == "PASS"
    assert receipt["counts"]["admitted"] == 5
    assert receipt["counts"]["reconciled"] == 3
    assert receipt["counts"]["pending_unknown"] == 0


def test_reconciling_while_the_server_is_still_stopped_lists_every_pending_identity_still_unknown(
    nats_services: Services, bus: Bus
) -> None:
    ledger, window = nats_services.ledger, "w.still-stopped"
    state = stop_and_admit_unknowns(nats_services, bus, window)
    history_before = ledger.history(window)

    # The contract's answer for an outcome the bus still does not give is `still_unknown`
    # (a LedgerError 503 "safe to retry" would be acceptable too); never an unexpected error.
    try:
        outcome = ledger.reconcile(window)
    except LedgerError as refused:
        assert status_of(refused) == 503, refused.as_json()
    except Exception as exc:
        pytest.fail(
            f"reconcile with the server stopped raised {type(exc).__name__}({exc}) instead of "
            "answering still_unknown: the API would answer 500 internal_error"
        )
    else:
        assert sorted(outcome["still_unknown"]) == state["pending"]
        assert outcome["reconciled"] == [] and outcome["adopted"] == []
    assert ledger.history(window) == history_before

    bus.server.cont()
    outcome = ledger.reconcile(window)
    assert sorted(outcome["reconciled"]) == state["pending"]
    assert nats_services.close_window(window)["gate"] == "PASS"


def test_closing_while_the_server_does_not_answer_is_refused_and_records_nothing(
    nats_services: Services, bus: Bus
) -> None:
    bus.server.require_control()
    ledger, window = nats_services.ledger, "w.close-stopped"
    ledger.admit(window, batch(window, event("c1")))
    history_before = ledger.history(window)

    bus.server.stop()
    with pytest.raises(Exception):  # noqa: B017  (fail-closed: the bus count cannot be checked)
        nats_services.close_window(window)
    assert ledger.history(window) == history_before
    assert not ledger.get_window(window).is_closed

    bus.server.cont()
    assert nats_services.close_window(window)["gate"] == "PASS"


# --- a killed server: definite refusal -------------------------------------------------------


def test_a_killed_server_refuses_new_identities_recording_nothing_and_admits_after_restart(
    nats_services: Services, bus: Bus
) -> None:
    bus.server.require_control()
    ledger = nats_services.ledger
    existing, fresh = "w.kill.existing", "w.kill.fresh"
    (k1,) = ledger.admit(existing, batch(existing, event("k1")))
    assert k1.verdict.value == "ADMITTED"
    history_before = ledger.history(existing)
    index_before = ledger.index.count_identities(existing)

    bus.server.kill()
    wait_disconnected(nats_services)

    # A new window: refused whole, no window at all (not even WindowOpened).
    fresh_batch = batch(fresh, event("n1"), event("n2"))
    with pytest.raises(PublishRefused) as refused:
        ledger.admit(fresh, fresh_batch)
    assert status_of(refused.value) == 503
    assert refused.value.as_json()["error"] == "publish_refused"
    with pytest.raises(WindowNotFound):
        ledger.history(fresh)
    assert ledger.index.count_identities(fresh) == {}

    # An existing window: a batch with a duplicate and a new identity is refused whole.
    mixed = batch(existing, event("k1"), event("k2"))
    with pytest.raises(PublishRefused):
        ledger.admit(existing, mixed)
    assert ledger.history(existing) == history_before
    assert ledger.index.count_identities(existing) == index_before

    nats_services.catch_up()
    assert nats_services.read.receipt(fresh) is None
    assert nats_services.receipt(existing)["events"] == len(history_before)

    bus.server.restart()
    results, _ = admit_retrying_refusals(ledger, fresh, fresh_batch)
    assert verdicts(results) == ["ADMITTED", "ADMITTED"]
    # The stream survived the restart: its sequence continues after k1's.
    assert sorted(offsets(results).values()) == [k1.offset + 1, k1.offset + 2]  # type: ignore[operator,type-var]
    assert_offsets_hold_their_identities(bus, fresh, offsets(results))
    assert history_types(ledger, fresh) == ["WindowOpened", "EventAdmitted", "EventAdmitted"]

    again, _ = admit_retrying_refusals(ledger, existing, mixed)
    assert verdicts(again) == ["DUPLICATE", "ADMITTED"]
    assert again[0].offset == k1.offset
    assert again[1].offset == k1.offset + 3  # type: ignore[operator]
    assert history_types(ledger, existing) == [
        "WindowOpened",
        "EventAdmitted",
        "DuplicateAbsorbed",
        "EventAdmitted",
    ]
    assert bus.count(fresh) == 2 and bus.count(existing) == 2

    for window in (existing, fresh):
        assert nats_services.close_window(window)["gate"] == "PASS"


def ledger_connections(bus: Bus) -> list[dict[str, Any]]:
    return [c for c in bus.server.connections() if c.get("name") == "admission-ledger"]


def test_a_server_unreachable_at_first_use_refuses_and_once_it_is_up_admits_over_one_connection(
    make_nats_services: Callable[..., Services], bus: Bus
) -> None:
    bus.server.require_control()
    # The publisher the composition root builds, with a short connect timeout (Settings has
    # no knob for it; the default 2 s makes each refusal take 6 s).
    publisher = JetStreamPublisher(
        NatsSettings(
            url=bus.url,
            stream=bus.stream,
            subject_prefix=bus.prefix,
            publish_timeout_seconds=PUBLISH_TIMEOUT,
            connect_timeout_seconds=0.3,
        )
    )
    services = make_nats_services(publisher)
    ledger, window = services.ledger, "w.first-use"
    bus.server.kill()  # before the publisher ever connected

    admissions = batch(window, event("f1"))
    for _ in range(2):  # a client retrying its 503
        started = time.monotonic()
        with pytest.raises(PublishRefused):
            ledger.admit(window, admissions)
        assert time.monotonic() - started < 5
        with pytest.raises(WindowNotFound):
            ledger.history(window)

    bus.server.restart()
    results, _ = admit_retrying_refusals(ledger, window, admissions)
    assert verdicts(results) == ["ADMITTED"]
    assert_offsets_hold_their_identities(bus, window, offsets(results))
    assert bus.count(window) == 1
    assert services.close_window(window)["gate"] == "PASS"

    # A refused connect must not live on: one ledger, one connection (the client retries
    # every 0.5 s, so any connect abandoned earlier has connected by now).
    time.sleep(1.2)
    connections = ledger_connections(bus)
    assert len(connections) == 1, (
        f"the ledger holds {len(connections)} connections to the server: each connect abandoned "
        "by a refused admission kept retrying in the background and connected too"
    )


# --- messages on the bus the ledger did not record ------------------------------------------


def test_a_foreign_admission_on_the_window_subject_refuses_the_close_until_reconcile_adopts_it(
    nats_services: Services, bus: Bus
) -> None:
    ledger, window = nats_services.ledger, "w.foreign"
    ours = ledger.admit(window, batch(window, event("o1"), event("o2")))
    assert verdicts(ours) == ["ADMITTED", "ADMITTED"]

    payload = {"id": "x1", "amount": 7, "note": "published, never recorded"}
    identity, body = admission_body(window, "x1", payload)
    subject = ledger.publisher.subject(window)  # type: ignore[attr-defined]
    ack = publish_raw(bus.url, bus.stream, subject, body, identity)
    assert not ack.duplicate

    events_before = len(ledger.history(window))
    with pytest.raises(BusLedgerMismatch) as refused:
        nats_services.close_window(window)
    assert status_of(refused.value) == 409
    as_json = refused.value.as_json()
    assert as_json["error"] == "bus_ledger_mismatch"
    assert (as_json["bus"], as_json["ledger"]) == (3, 2)
    assert "3" in as_json["detail"] and "2" in as_json["detail"]
    assert len(ledger.history(window)) == events_before

    outcome = ledger.reconcile(window)
    assert outcome == {
        "reconciled": [],
        "still_unknown": [],
        "adopted": [identity],
        "unadoptable": [],
    }
    assert ledger.get_window(window).admitted == 3
    adopted = events_of(ledger, window, "EventAdmitted")[-1]
    assert adopted == {
        "identity": identity,
        "event_type": TYPE,
        "event_id": "x1",
        "payload": payload,
        "payload_hash": phash(payload),
        "offset": ack.seq,
        "source": None,
    }
    # The adopted identity is now known: its arrival is a duplicate at the bus's offset.
    (arrival,) = ledger.admit(window, batch(window, event("x1", payload)))
    assert (arrival.verdict.value, arrival.offset) == ("DUPLICATE", ack.seq)
    assert bus.count(window) == 3

    receipt = nats_services.close_window(window)
    assert receipt["gate"] == "PASS"
    assert receipt["counts"]["admitted"] == 3
    assert nats_services.gate(window)["status"] == "PASS"


FOREIGN_JUNK = {
    "not an admission": (b"hello, not JSON", "junk-1", "message body is not a ledger admission"),
    "a payload that does not hash to its hash": (
        None,  # built in the test: a well-formed body with a wrong payload_hash
        None,
        "payload does not hash to its payload_hash",
    ),
    "another window's admission": (None, None, "message names window"),
}


@pytest.mark.parametrize("kind", list(FOREIGN_JUNK))
def test_a_foreign_message_that_cannot_be_adopted_is_unadoptable_and_the_close_stays_refused(
    nats_services: Services, bus: Bus, kind: str
) -> None:
    ledger, window = nats_services.ledger, "w.junk"
    (ours,) = ledger.admit(window, batch(window, event("o1")))
    data, msg_id, reason = FOREIGN_JUNK[kind]
    if kind == "a payload that does not hash to its hash":
        msg_id, data = admission_body(window, "x1", {"id": "x1"}, payload_hash=phash({"id": "x"}))
    elif kind == "another window's admission":
        msg_id, data = admission_body("w.elsewhere", "x1", {"id": "x1"})
    assert data is not None
    ack = publish_raw(bus.url, bus.stream, bus.subject(window), data, msg_id)

    history_before = ledger.history(window)
    outcome = ledger.reconcile(window)
    assert outcome["adopted"] == []
    assert outcome["reconciled"] == [] and outcome["still_unknown"] == []
    (listed,) = outcome["unadoptable"]
    assert listed["offset"] == ack.seq
    assert listed["identity"] == msg_id
    assert reason in listed["reason"]
    assert ledger.history(window) == history_before
    assert ledger.get_window(window).admitted == 1

    with pytest.raises(BusLedgerMismatch) as refused:
        nats_services.close_window(window)
    assert (refused.value.as_json()["bus"], refused.value.as_json()["ledger"]) == (2, 1)
    nats_services.catch_up()
    assert nats_services.gate(window)["status"] == "OPEN"
    assert nats_services.receipt(window)["status"] == "OPEN"
    assert ours.verdict.value == "ADMITTED"


# --- the bus already holds the identity (another process published and crashed) ----------


def test_an_identity_the_bus_holds_with_another_payload_is_quarantined_and_the_bus_payload_admitted(
    nats_services: Services, bus: Bus
) -> None:
    ledger, window = nats_services.ledger, "w.superseded"
    ensure_stream(nats_services)
    payload_a, payload_b = {"id": "x", "v": "A"}, {"id": "x", "v": "B"}
    identity, body = admission_body(window, "x", payload_a)
    ack = publish_raw(bus.url, bus.stream, bus.subject(window), body, identity)

    (result,) = ledger.admit(window, batch(window, event("x", payload_b)))
    assert (result.verdict.value, result.offset) == ("QUARANTINED", None)
    assert result.identity == identity

    assert history_types(ledger, window) == ["WindowOpened", "EventAdmitted", "MismatchQuarantined"]
    (admitted,) = events_of(ledger, window, "EventAdmitted")
    assert admitted["identity"] == identity
    assert admitted["payload"] == payload_a
    assert admitted["payload_hash"] == phash(payload_a)
    assert admitted["offset"] == ack.seq
    (quarantined,) = events_of(ledger, window, "MismatchQuarantined")
    assert quarantined["original_hash"] == phash(payload_a)
    assert quarantined["received_hash"] == phash(payload_b)
    assert quarantined["received_payload"] == payload_b
    assert bus.count(window) == 1  # the bus kept its first message and stored nothing more

    (again,) = ledger.admit(window, batch(window, event("x", payload_a)))
    assert (again.verdict.value, again.offset) == ("DUPLICATE", ack.seq)
    (b_again,) = ledger.admit(window, batch(window, event("x", payload_b)))
    assert b_again.verdict.value == "QUARANTINED"

    receipt = nats_services.close_window(window)
    assert receipt["gate"] == "PASS"
    assert receipt["counts"]["admitted"] == 1
    assert receipt["counts"]["quarantined"] == 2


def test_an_identity_the_bus_holds_with_the_same_payload_is_admitted_at_the_bus_offset_once(
    nats_services: Services, bus: Bus
) -> None:
    ledger, window = nats_services.ledger, "w.crashed-before-record"
    ensure_stream(nats_services)
    payload = {"id": "y", "v": 1}
    identity, body = admission_body(window, "y", payload)
    ack = publish_raw(bus.url, bus.stream, bus.subject(window), body, identity)

    results = ledger.admit(window, batch(window, event("y", payload), event("z")))
    assert verdicts(results) == ["ADMITTED", "ADMITTED"]
    assert results[0].offset == ack.seq
    assert results[1].offset != ack.seq
    assert_offsets_hold_their_identities(bus, window, offsets(results))
    assert bus.count(window) == 2
    assert history_types(ledger, window) == ["WindowOpened", "EventAdmitted", "EventAdmitted"]
    assert nats_services.close_window(window)["gate"] == "PASS"


def test_two_ledger_processes_admitting_the_same_batches_at_once_admit_each_identity_once(
    make_nats_services: Callable[..., Services], bus: Bus
) -> None:
    one, two = make_nats_services(), make_nats_services()
    window = "w.two-processes"
    batches = [batch(window, *(event(f"c{j}-{i}") for i in range(10))) for j in range(3)]
    results: dict[str, list[AdmissionResult]] = {"one": [], "two": []}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(name: str, services: Services) -> None:
        try:
            barrier.wait(timeout=10)
            for b in batches:
                results[name].extend(services.ledger.admit(window, b))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=("one", one)),
        threading.Thread(target=run, args=("two", two)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors

    identities = {a.identity for b in batches for a in b}
    for identity in identities:
        seen = [r for r in results["one"] + results["two"] if r.identity == identity]
        assert sorted(r.verdict.value for r in seen) == ["ADMITTED", "DUPLICATE"], seen
        assert len({r.offset for r in seen}) == 1, seen
    assert bus.count(window) == 30
    assert Counter(bus.msg_ids(window)) == Counter(identities)
    assert history_types(one.ledger, window).count("EventAdmitted") == 30
    receipt = one.close_window(window)
    assert receipt["gate"] == "PASS"
    assert receipt["counts"]["admitted"] == 30


# --- the receipt witness (contract s.9) ----------------------------------------------------


def test_the_signed_receipt_is_published_to_the_bus_at_close_once_under_its_message_id(
    nats_services: Services, bus: Bus
) -> None:
    window = "witnessed.window"
    nats_services.admit(window, batch(window, event("1"), event("2")))
    receipt = nats_services.close_window(window)
    subject = f"{bus.prefix}.receipts.witnessed~window"

    [copy] = subject_messages(bus.url, bus.stream, subject)
    assert copy.msg_id == f"receipt:{window}"
    witnessed = json.loads(copy.data)
    assert witnessed == {k: v for k, v in receipt.items() if k != "gate"}
    assert witnessed["signature"]["key_id"] == nats_services.keys()[0]["key_id"]
    # The window's own subject holds its admissions only; closing again adds no second copy.
    assert bus.count(window) == 2
    nats_services.close_window(window)
    assert len(subject_messages(bus.url, bus.stream, subject)) == 1
