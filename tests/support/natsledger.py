"""The ledger on a nats-server of the test's own: the `bus` (the server and a stream of the
test's own), services built by the composition root that publish to it, and helpers to check
what the bus and the history hold. Used by the NATS integration tests and the fault suite."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ledger.admissions import Admission
from ledger.application import AdmissionResult, Ledger
from ledger.errors import PublishRefused
from ledger.infrastructure.nats import JetStreamPublisher
from ledger.jcs import canonicalize, sha256_hex
from service.composition import Services, build_services
from service.settings import Settings
from tests.support.builders import TYPE
from tests.support.builders import identity as ident
from tests.support.nats import (
    AnyNats,
    delete_stream,
    get_message,
    release_event_loop,
    subject_count,
    subject_messages,
    unique_stream,
)
from tests.support.services import wait_until

PUBLISH_TIMEOUT = 0.5


# --- fixtures -----------------------------------------------------------------------------


@dataclasses.dataclass
class Bus:
    """The test's server and the stream the ledger under test publishes to."""

    server: AnyNats
    stream: str
    prefix: str

    @property
    def url(self) -> str:
        return self.server.url

    def subject(self, window_id: str) -> str:
        return f"{self.prefix}.{window_id.replace('.', '~')}"

    def count(self, window_id: str) -> int:
        return subject_count(self.url, self.stream, self.subject(window_id))

    def msg_ids(self, window_id: str) -> list[str | None]:
        return [m.msg_id for m in subject_messages(self.url, self.stream, self.subject(window_id))]


@pytest.fixture
def bus(nats_server: AnyNats) -> Iterator[Bus]:
    stream, prefix = unique_stream()
    yield Bus(nats_server, stream, prefix)
    if nats_server.external:  # leave nothing behind on the system NATS
        delete_stream(nats_server.url, stream)


@pytest.fixture
def make_nats_services(migrated: Settings, bus: Bus) -> Iterator[Callable[..., Services]]:
    """Services built by the composition root with LEDGER_PUBLISHER=nats://127.0.0.1:PORT
    (or around a JetStreamPublisher the test configured itself)."""
    made: list[Services] = []

    def make(publisher: JetStreamPublisher | None = None) -> Services:
        services = build_services(
            dataclasses.replace(
                migrated,
                publisher=bus.url,
                nats_publish_timeout_seconds=PUBLISH_TIMEOUT,
                nats_stream=bus.stream,
                nats_subject_prefix=bus.prefix,
            ),
            publisher,
        )
        made.append(services)
        assert isinstance(services.ledger.publisher, JetStreamPublisher)
        return services

    yield make
    bus.server.cont()  # a stopped server would make every close wait for its timeout
    for services in made:
        services.close()
        release_event_loop(services)


@pytest.fixture
def nats_services(make_nats_services: Callable[..., Services]) -> Services:
    return make_nats_services()


# --- helpers ------------------------------------------------------------------------------


def phash(payload: dict[str, Any]) -> str:
    return sha256_hex(canonicalize(payload))


def verdicts(results: list[AdmissionResult]) -> list[str]:
    return [r.verdict.value for r in results]


def offsets(results: list[AdmissionResult]) -> dict[str, int | None]:
    return {r.identity: r.offset for r in results}


def history_types(ledger: Ledger, window_id: str) -> list[str]:
    return [h["type"] for h in ledger.history(window_id)]


def events_of(ledger: Ledger, window_id: str, type_name: str) -> list[dict[str, Any]]:
    return [h["fields"] for h in ledger.history(window_id) if h["type"] == type_name]


def admission_body(
    window_id: str, event_id: str, payload: dict[str, Any], **override: Any
) -> tuple[str, bytes]:
    """An admission message in the publisher's own JSON shape (ADR 0009), built independently."""
    identity = ident(window_id, event_id)
    body = {
        "window_id": window_id,
        "identity": identity,
        "event_type": TYPE,
        "event_id": event_id,
        "payload": payload,
        "payload_hash": phash(payload),
        **override,
    }
    return identity, json.dumps(body).encode()


def assert_offsets_hold_their_identities(
    bus: Bus, window_id: str, by_identity: dict[str, Any]
) -> None:
    """Each admitted identity's offset is a stream sequence holding that identity's message."""
    for identity, offset in by_identity.items():
        assert isinstance(offset, int), (identity, offset)
        stored = get_message(bus.url, bus.stream, offset)
        assert stored.msg_id == identity
        assert stored.subject == bus.subject(window_id)
        assert json.loads(stored.data)["identity"] == identity


def ensure_stream(services: Services) -> None:
    """Let the publisher connect, which creates the stream (as any earlier ledger run would)."""
    assert services.ledger.publisher.count("w.unused") == 0  # type: ignore[attr-defined]


def wait_disconnected(services: Services) -> None:
    """Until the publisher's client has noticed the dead server (it then refuses, not buffers)."""
    publisher = services.ledger.publisher
    assert isinstance(publisher, JetStreamPublisher)
    wait_until(
        lambda: publisher._nc is not None and not publisher._nc.is_connected,
        10,
        "the publisher's NATS client sees the server gone",
    )


def admit_retrying_refusals(
    ledger: Ledger, window_id: str, admissions: list[Admission], timeout: float = 20
) -> tuple[list[AdmissionResult], int]:
    """A client's retry loop: a 503 PublishRefused is safe to retry (contract s.6)."""
    refusals = 0
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ledger.admit(window_id, admissions), refusals
        except PublishRefused:
            refusals += 1
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
