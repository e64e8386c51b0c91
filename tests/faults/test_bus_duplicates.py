"""A bus duplicate window that ends before reconcile (issue 11, finding 3; ADR 0028).

With a short `duplicate_window_seconds` (or an outage longer than it), reconcile's re-publish
of an UNKNOWN identity is stored again: the bus holds two messages for one identity and close
is refused with `bus_ledger_mismatch`, rightly. Reconcile names the extra message; an operator
accepts it (CLI or HTTP), which records a `BusDuplicateAccepted` with the evidence; close then
passes. An extra message with another payload is refused, and close stays refused.

Each test runs on a nats-server of its own whose stream deduplicates for one second, once per
backend (SQLite and PostgreSQL through `database_url`/`migrated`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from api.errors import status_of
from ledger.errors import BusLedgerMismatch, WindowClosed
from ledger.infrastructure.nats import JetStreamPublisher, NatsSettings
from ledger.receipts import BUS_DUPLICATES_LABEL
from service.cli import main
from service.composition import Services
from service.settings import Settings
from tests.support.builders import batch, event
from tests.support.http import in_process
from tests.support.nats import publish_raw, release_event_loop, with_jetstream
from tests.support.natsledger import (
    PUBLISH_TIMEOUT,
    Bus,
    admission_body,
    events_of,
    history_types,
    phash,
    verdicts,
)
from tests.support.services import wait_until

DEDUP = 1.0  # the stream's duplicate window, in seconds
PAST_DEDUP = 2 * DEDUP + 0.5  # the server purges expired message ids on a timer


def short_window_publisher(bus: Bus) -> JetStreamPublisher:
    return JetStreamPublisher(
        NatsSettings(
            url=bus.url,
            stream=bus.stream,
            subject_prefix=bus.prefix,
            duplicate_window_seconds=DEDUP,
            publish_timeout_seconds=PUBLISH_TIMEOUT,
        )
    )


def stream_duplicate_window(bus: Bus) -> float:
    async def work(js: Any) -> float:
        info = await js.stream_info(bus.stream)
        return float(info.config.duplicate_window)

    return with_jetstream(bus.url, work)


def extra_on_the_bus(bus: Bus, window: str, event_id: str, payload: dict[str, Any]) -> int:
    """Publish another message for an identity, its id already past the duplicate window."""
    identity, body = admission_body(window, event_id, payload)
    ack = publish_raw(bus.url, bus.stream, bus.subject(window), body, identity)
    assert not ack.duplicate, "the stream still deduplicated the id: its window has not ended"
    return int(ack.seq)


def test_an_outage_longer_than_the_duplicate_window_is_settled_by_an_operator_on_the_cli(
    make_nats_services: Callable[..., Services],
    bus: Bus,
    migrated: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bus.server.require_control()
    services = make_nats_services(short_window_publisher(bus))
    ledger, window = services.ledger, "w.outage"
    assert verdicts(ledger.admit(window, batch(window, event("a1"), event("a2")))) == [
        "ADMITTED",
        "ADMITTED",
    ]
    assert stream_duplicate_window(bus) == pytest.approx(DEDUP)

    bus.server.stop()
    (unknown,) = ledger.admit(window, batch(window, event("u1")))
    assert unknown.verdict.value == "PUBLISH_UNKNOWN"
    bus.server.cont()
    # The timed-out message was stored after all, and its id then outlives the window.
    wait_until(lambda: bus.count(window) == 3, 10, "the resumed server stored the message")
    time.sleep(PAST_DEDUP)

    outcome = services.reconcile(window)
    assert outcome["reconciled"] == [unknown.identity]
    assert bus.count(window) == 4, "the re-publish was not deduplicated"
    (admitted_at,) = [
        e["offset"] for e in events_of(ledger, window, "PublishReconciled") if e["offset"]
    ]
    (first,) = [m for m in outcome["unadoptable"] if m["identity"] == unknown.identity]
    assert first["offset"] != admitted_at
    assert f"second message for an identity admitted at {admitted_at}" in first["reason"]
    assert "duplicate window (1 s) may have ended" in first["reason"]
    (late,) = outcome["past_duplicate_window"]
    assert late["identity"] == unknown.identity
    assert "duplicate window (1 s)" in late["reason"]

    with pytest.raises(BusLedgerMismatch) as refused:
        services.close_window(window)
    assert status_of(refused.value) == 409
    assert (refused.value.extra["bus"], refused.value.extra["ledger"]) == (4, 3)
    assert "--accept-bus-duplicates" in refused.value.detail

    for name, value in {
        "LEDGER_DATABASE_URL": migrated.database_url,
        "LEDGER_SIGNING_KEY": migrated.signing_key,
        "LEDGER_PUBLISHER": bus.url,
        "LEDGER_NATS_STREAM": bus.stream,
        "LEDGER_NATS_SUBJECT_PREFIX": bus.prefix,
        "LEDGER_NATS_DUPLICATE_WINDOW_SECONDS": str(DEDUP),
    }.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    argv = ["reconcile", "--accept-bus-duplicates", window, "--by", "ops-alice"]
    assert main([*argv, "--reason", "nats outage of 2 s, window 1 s"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer == {
        "window_id": window,
        "accepted": [
            {
                "sequence": first["offset"],
                "identity": unknown.identity,
                "offset": admitted_at,
                "payload_hash": phash({"id": "u1"}),
            }
        ],
        "refused": [],
        "already_accepted": 0,
    }
    # Accepting again records nothing new.
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["accepted"], again["refused"], again["already_accepted"]) == ([], [], 1)

    assert main(["close", window]) == 0
    closed = json.loads(capsys.readouterr().out)
    assert closed["gate"] == "PASS"
    assert closed["counts"]["admitted"] == 3
    assert main(["receipt", window, "--format", "md"]) == 0
    assert f"| {BUS_DUPLICATES_LABEL} | 1 |" in capsys.readouterr().out
    assert main(["verify", window]) == 0

    fresh = make_nats_services(short_window_publisher(bus))  # nothing cached from before
    assert events_of(fresh.ledger, window, "BusDuplicateAccepted") == [
        {
            "identity": unknown.identity,
            "sequence": first["offset"],
            "offset": admitted_at,
            "payload_hash": phash({"id": "u1"}),
            "accepted_by": "ops-alice",
            "reason": "nats outage of 2 s, window 1 s",
        }
    ]
    assert history_types(fresh.ledger, window)[-2:] == ["BusDuplicateAccepted", "WindowClosed"]
    assert fresh.ledger.history(window)[-1]["fields"]["summary"]["bus_duplicates_accepted"] == 1
    assert fresh.gate(window)["status"] == "PASS"
    assert fresh.verify(window)[0].ok
    with pytest.raises(WindowClosed):
        fresh.accept_bus_duplicates(window, accepted_by="ops-alice", reason="again")


def test_an_extra_message_with_another_payload_is_refused_and_close_stays_refused(
    make_nats_services: Callable[..., Services], bus: Bus
) -> None:
    services = make_nats_services(short_window_publisher(bus))
    ledger, window = services.ledger, "w.drift"
    admitted = ledger.admit(window, batch(window, event("a1"), event("a2")))
    time.sleep(PAST_DEDUP)
    same = extra_on_the_bus(bus, window, "a1", {"id": "a1"})
    other = extra_on_the_bus(bus, window, "a2", {"id": "a2", "amount": 99})

    result = services.accept_bus_duplicates(window, accepted_by="ops-carol", reason="checked")
    assert result["accepted"] == [
        {
            "sequence": same,
            "identity": admitted[0].identity,
            "offset": admitted[0].offset,
            "payload_hash": phash({"id": "a1"}),
        }
    ]
    (refused,) = result["refused"]
    assert (refused["sequence"], refused["identity"], refused["offset"]) == (
        other,
        admitted[1].identity,
        admitted[1].offset,
    )
    assert phash({"id": "a2", "amount": 99}) in refused["reason"]
    assert "never accepted" in refused["reason"]
    assert [e["sequence"] for e in events_of(ledger, window, "BusDuplicateAccepted")] == [same]

    # Fail-closed: the extra with another payload still stands between the window and close.
    with pytest.raises(BusLedgerMismatch) as mismatch:
        services.close_window(window)
    assert (mismatch.value.extra["bus"], mismatch.value.extra["ledger"]) == (4, 3)
    assert services.gate(window)["status"] == "OPEN"
    again = services.accept_bus_duplicates(window, accepted_by="ops-carol", reason="checked")
    assert (again["accepted"], again["already_accepted"]) == ([], 1)
    assert [r["sequence"] for r in again["refused"]] == [other]
    assert history_types(ledger, window).count("BusDuplicateAccepted") == 1


def test_an_operator_accepts_over_http_with_the_operate_scope_and_the_gate_passes(
    migrated: Settings, bus: Bus
) -> None:
    settings = dataclasses.replace(
        migrated,
        publisher=bus.url,
        nats_stream=bus.stream,
        nats_subject_prefix=bus.prefix,
        nats_duplicate_window_seconds=DEDUP,
        nats_publish_timeout_seconds=PUBLISH_TIMEOUT,
        api_tokens="ops-token=operate+read,reader-token=read,admitter=admit",
    )
    window = "w.http"
    ops = {"Authorization": "Bearer ops-token"}
    accept = f"/v1/windows/{window}/bus-duplicates/accept"
    with in_process(settings) as api:
        try:
            answer = api.post(
                f"/v1/windows/{window}/admissions",
                json={"events": [event("a1")]},
                headers={"Authorization": "Bearer admitter"},
            )
            assert answer.status_code == 200, answer.text
            (admitted,) = answer.json()["results"]
            time.sleep(PAST_DEDUP)
            extra = extra_on_the_bus(bus, window, "a1", {"id": "a1"})

            reconciled = api.post(f"/v1/windows/{window}/reconcile", headers=ops).json()
            (named,) = reconciled["unadoptable"]
            assert named["offset"] == extra
            assert "duplicate window (1 s) may have ended" in named["reason"]
            refused = api.post(f"/v1/windows/{window}/close", headers=ops)
            assert (refused.status_code, refused.json()["error"]) == (409, "bus_ledger_mismatch")

            reader = {"Authorization": "Bearer reader-token"}
            assert api.post(accept, headers=reader).status_code == 403
            body = {"by": "ops-bob", "reason": "stream window was 1 s"}
            first = api.post(accept, json=body, headers=ops)
            assert first.status_code == 200, first.text
            assert first.json() == {
                "window_id": window,
                "accepted": [
                    {
                        "sequence": extra,
                        "identity": admitted["identity"],
                        "offset": admitted["offset"],
                        "payload_hash": admitted["payload_hash"],
                    }
                ],
                "refused": [],
                "already_accepted": 0,
            }
            second = api.post(accept, headers=ops)  # no body: the defaults
            assert second.status_code == 200, second.text
            assert (second.json()["accepted"], second.json()["already_accepted"]) == ([], 1)

            history = api.get(f"/v1/windows/{window}/history", headers=reader).json()["items"]
            (recorded,) = [h for h in history if h["type"] == "BusDuplicateAccepted"]
            assert recorded["fields"] == {
                "identity": admitted["identity"],
                "sequence": extra,
                "offset": admitted["offset"],
                "payload_hash": admitted["payload_hash"],
                "accepted_by": "ops-bob (a bearer token with scopes operate+read)",
                "reason": "stream window was 1 s",
            }

            closed = api.post(f"/v1/windows/{window}/close", headers=ops)
            assert closed.status_code == 200, closed.text
            assert closed.json()["gate"] == "PASS"
            gate = api.get(f"/v1/windows/{window}/gate", headers=reader).json()
            assert gate["status"] == "PASS", gate
            verified = api.get(f"/v1/windows/{window}/verify", headers=reader).json()
            assert verified["ok"] and verified["events"] == len(history) + 1
            markdown = api.get(
                f"/v1/windows/{window}/receipt",
                headers={**reader, "Accept": "text/markdown"},
            ).text
            assert f"| {BUS_DUPLICATES_LABEL} | 1 |" in markdown

            after = api.post(accept, headers=ops)
            assert (after.status_code, after.json()["error"]) == (409, "window_closed")
        finally:
            services = api.app.state.services
    release_event_loop(services)
