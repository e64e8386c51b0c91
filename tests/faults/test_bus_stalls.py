"""A stalled bus never turns into a 500 (issue 11, finding 2; ADR 0025).

A batch larger than the NATS client's pending buffer (2 MiB) sent while the server is stopped
(SIGSTOP: it holds its sockets and reads nothing) used to hang in the client's forced flush
until the request failed with "nothing was recorded, retry", although every message left once
the server read again, and a new window did not exist at all. Now whatever was handed to the
client is PUBLISH_UNKNOWN, so the window exists, close is refused until reconcile settles
each message at its stored sequence, and the bus ends with each identity once.
"""

from __future__ import annotations

import time
from collections import Counter

from ledger.application import Ledger
from ledger.errors import PublishRefused
from service.composition import Services
from tests.support.builders import batch, event
from tests.support.invariants import window_problems
from tests.support.natsledger import PUBLISH_TIMEOUT, Bus, ensure_stream, events_of, verdicts
from tests.support.services import wait_until

EVENTS = 300
PAYLOAD_BYTES = 14_000  # 300 x 14 KB: twice the client's pending buffer


def big_batch(window: str) -> list[dict[str, object]]:
    return [event(f"big-{i}", {"id": i, "blob": "x" * PAYLOAD_BYTES}) for i in range(EVENTS)]


def test_a_batch_larger_than_the_client_buffer_while_the_bus_is_stopped_is_publish_unknown(
    nats_services: Services, bus: Bus
) -> None:
    bus.server.require_control()
    ledger, window = nats_services.ledger, "w.stalled-big"
    items = batch(window, *big_batch(window))
    ensure_stream(nats_services)  # connected, as a running service is
    bus.server.stop()

    started = time.monotonic()
    results = ledger.admit(window, items)
    elapsed = time.monotonic() - started

    assert verdicts(results) == ["PUBLISH_UNKNOWN"] * EVENTS
    # The sending deadline and the ack deadline, each PUBLISH_TIMEOUT, plus the writes.
    assert elapsed < 4 * PUBLISH_TIMEOUT + 5, f"answered after {elapsed:.1f} s"
    history = ledger.history(window, limit=EVENTS + 10)
    assert [h["type"] for h in history] == ["WindowOpened"] + ["PublishUnknown"] * EVENTS
    unknowns = events_of(ledger, window, "PublishUnknown")
    reasons = Counter(e["reason"].split(":")[0] for e in unknowns)
    assert set(reasons) <= {"TimeoutError", "not sent"}, reasons
    assert reasons["not sent"] > 0, "the batch never filled the client's buffer"

    bus.server.cont()
    # What the client held leaves once the server reads again: the ambiguity is real.
    wait_until(lambda: bus.count(window) > 0, 10, "the buffered messages reached the bus")

    outcome = ledger.reconcile(window)
    assert outcome["still_unknown"] == []
    assert len(outcome["reconciled"]) + len(outcome["adopted"]) == EVENTS
    assert bus.count(window) == EVENTS
    assert Counter(bus.msg_ids(window)) == Counter(r.identity for r in results)

    receipt = nats_services.close_window(window)
    assert receipt["status"] == "CLOSED"
    assert receipt["counts"]["admitted"] == EVENTS
    assert receipt["counts"]["pending_unknown"] == 0
    assert nats_services.gate(window)["status"] == "PASS"
    assert window_problems(nats_services, window, bus_identities=bus.msg_ids(window)) == []


def test_a_large_batch_racing_a_killed_bus_is_refused_or_unknown_and_never_lost_or_doubled(
    nats_services: Services, bus: Bus
) -> None:
    """SIGKILL just before the batch: depending on whether the client noticed, the batch is
    refused whole (503, nothing recorded: retry) or taken as PUBLISH_UNKNOWN; never a 500.
    After a restart the retry or reconcile settles it, each identity once on bus and ledger."""
    bus.server.require_control()
    ledger, window = nats_services.ledger, "w.killed-big"
    items = batch(window, *big_batch(window))
    ensure_stream(nats_services)
    bus.server.kill()

    try:
        results = ledger.admit(window, items)
    except PublishRefused:
        assert not ledger.has_window(window)  # refused whole: nothing recorded
    else:
        assert set(verdicts(results)) == {"PUBLISH_UNKNOWN"}

    bus.server.restart()
    wait_until(lambda: not _refuses(ledger, window), 15, "the publisher reconnected")
    results = ledger.admit(window, items)
    assert set(verdicts(results)) <= {"ADMITTED", "DUPLICATE"}
    ledger.reconcile(window)
    assert nats_services.close_window(window)["counts"]["admitted"] == EVENTS
    assert window_problems(nats_services, window, bus_identities=bus.msg_ids(window)) == []


def _refuses(ledger: Ledger, window: str) -> bool:
    """Whether the bus still refuses: a probe admission to a window of its own."""
    probe = f"{window}.probe"
    try:
        ledger.admit(probe, batch(probe, event("probe")))
    except PublishRefused:
        return True
    return False
