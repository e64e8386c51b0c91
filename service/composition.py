"""The composition root: everything the service runs, built from settings.

The only code that knows both sides: the write side (ledger, publisher, recorders chosen by
topic), the read side (store, runner, read models) and the facade the HTTP app and the command
line use. Nothing connects at import.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ledger.admissions import Admission
from ledger.application import AdmissionResult, Ledger, Verification
from ledger.application.reconciliation import Progress
from ledger.errors import GateNotPassed, WindowNotFound
from ledger.infrastructure import fastjson
from ledger.infrastructure.embedded import EmbeddedPublisher
from ledger.infrastructure.signing import Ed25519Signer
from ledger.ports import CheckableBus, Publisher
from ledger.receipts import render_markdown
from projections.evidence import EvidenceStore
from projections.follower import ProjectionRunner
from projections.migrate import ensure_schema
from projections.queries import ReadModels
from projections.store import ReadStore, create_read_store
from service.evidence import Evidence
from service.following import FollowerProcess
from service.health import HealthProbe, PostgresPing, sqlite_ping
from service.leadership import Leadership, lock_for
from service.settings import Settings, SettingsError

CLOSE_WAIT_SECONDS = 10.0


def build_publisher(settings: Settings) -> Publisher:
    if settings.publisher == "embedded":
        return EmbeddedPublisher()
    if settings.publisher.startswith("nats://"):
        from ledger.infrastructure.nats import JetStreamPublisher, NatsSettings

        return JetStreamPublisher(
            NatsSettings(
                url=settings.publisher,
                stream=settings.nats_stream,
                subject_prefix=settings.nats_subject_prefix,
                duplicate_window_seconds=settings.nats_duplicate_window_seconds,
                publish_timeout_seconds=settings.nats_publish_timeout_seconds,
            )
        )
    raise SettingsError(
        f"LEDGER_PUBLISHER must be 'embedded' or nats://host:port, not {settings.publisher!r}"
    )


def build_ledger(settings: Settings, publisher: Publisher | None = None) -> Ledger:
    # The JCS fast path (a port of the stdlib-only `ledger.jcs`): installed before any hashing.
    fastjson.install()
    return Ledger(settings.eventsourcing_env(), publisher or build_publisher(settings))


def build_read_store(settings: Settings) -> ReadStore:
    if settings.is_sqlite:
        settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    return create_read_store(settings.database_url)


@dataclass
class Services:
    """The write side, the read side and the runner between them."""

    settings: Settings
    ledger: Ledger
    store: ReadStore
    runner: ProjectionRunner
    read: ReadModels
    evidence: Evidence
    following: bool = False
    leadership: Leadership | None = None
    follower_process: FollowerProcess | None = None
    probe: HealthProbe | None = None
    # How long a command waits for the read side to apply what it wrote (following).
    read_wait_seconds: float = CLOSE_WAIT_SECONDS

    def __post_init__(self) -> None:
        # Admissions wake the read side once per committed group, from the writer thread:
        # a wake of the follower's process costs a pipe write and a context switch, ~30 us
        # of the event loop's time when every request made its own (ADR 0044).
        self.ledger.committer.on_commit = self.wake_follower

    def wake_follower(self, urgent: bool = False) -> None:
        """New events were recorded: the follower (thread or child process) applies them."""
        if self.follower_process is not None:
            self.follower_process.wake(urgent)
        else:
            self.runner.wake(urgent)

    def _stop_follower(self) -> None:
        if self.follower_process is not None:
            self.follower_process.stop()
        else:
            self.runner.stop()

    def start_following(self) -> None:
        """The running service: the follower, and the scrub (at start, then every interval),
        in the one process per database that holds the leader lock (`service.leadership`).
        Every process waits for the read side the same way: by the tracking positions, which
        the leader moves (`ProjectionRunner.wait_for`)."""
        scrubbing: list[bool] = []
        if self.settings.follower == "process":
            self.follower_process = FollowerProcess(self.settings)

        def elected() -> None:
            if self.follower_process is not None:
                self.follower_process.start()
            else:
                self.runner.start()
            if not scrubbing:  # once per process: the scrub has no restart
                scrubbing.append(True)
                self.evidence.start(self.settings.scrub_interval_seconds)

        sqlite = self.settings.sqlite_path if self.settings.is_sqlite else None
        self.leadership = Leadership(
            lock_for(self.settings.database_url, sqlite),
            elected,
            self._stop_follower,
            say=lambda line: print(line, file=sys.stderr, flush=True),
        )
        self.following = True
        self.evidence.sealed()  # loaded now, not by the first admission on the event loop
        self.leadership.start()

    # --- commands (each refused for a sealed window whose history no longer ends closed) --

    def admit(self, window_id: str, admissions: Sequence[Admission]) -> list[AdmissionResult]:
        """One request's admissions, written with the concurrent requests' (group commit)."""
        self.evidence.guard(window_id)
        return self.ledger.admit_with_others(
            window_id, admissions, self.settings.request_timeout_seconds
        )

    def submit_admission(
        self, window_id: str, admissions: Sequence[Admission]
    ) -> Future[list[AdmissionResult]] | None:
        """`admit` without blocking: a future done once the group holding the request has
        committed; None when the window was sealed (its guard may read the history: call
        `admit` in a thread instead)."""
        if self.evidence.is_sealed(window_id):
            return None
        return self.ledger.submit_with_others(window_id, admissions)

    def reconcile(self, window_id: str, progress: Progress | None = None) -> dict[str, Any]:
        self.evidence.guard(window_id)
        result = self.ledger.reconcile(window_id, progress)
        self.catch_up()
        return result

    def accept_bus_duplicates(
        self, window_id: str, *, accepted_by: str, reason: str
    ) -> dict[str, Any]:
        """Record an operator's acceptance of the window's extra bus messages (ADR 0028)."""
        self.evidence.guard(window_id)
        result = self.ledger.accept_bus_duplicates(
            window_id, accepted_by=accepted_by, reason=reason
        )
        self.catch_up()
        return result

    def catch_up(self) -> None:
        """Bring the read side up to the log's head (used where no runner follows)."""
        if self.following:
            self.wake_follower(urgent=True)
            self.runner.wait_for(self.runner.head(), self.read_wait_seconds)
        else:
            self.runner.run_until_caught_up()

    def close_window(self, window_id: str) -> dict[str, Any]:
        """Close and sign, then wait (bounded) for the read side, so the gate reads PASS right
        after. Read your write: a read side that has not applied the close by then is not
        answered; the signed receipt is, with the write side's gate (ADR 0024)."""
        self.evidence.guard(window_id)
        at_close = self.ledger.close_window(window_id)
        signed = self.evidence.seal(window_id, at_close)
        self.catch_up()
        projected = self.read.receipt(window_id)
        if (
            projected is None
            or projected["status"] != "CLOSED"
            or projected["events"] < signed["events"]
        ):
            receipt = {**signed, "gate": at_close["gate"]}
            self.evidence.overrule([receipt])
            return receipt
        return self._served(projected)

    # --- reads (the gate fails closed on what the checks found) ---------------------------

    def receipt(self, window_id: str) -> dict[str, Any]:
        return self._served(self._projected(window_id, self.read.receipt))

    def receipt_markdown(self, window_id: str) -> str:
        """The receipt for a reviewer, with the gate's reasons and the extra bus messages an
        operator accepted (the write side's count: not one of the receipt's counts)."""
        receipt = self.receipt(window_id)
        reasons = self.gate(window_id)["reasons"]
        accepted = self.ledger.get_window(window_id).bus_duplicates_accepted
        return render_markdown(receipt, reasons, accepted)

    def _served(self, receipt: dict[str, Any]) -> dict[str, Any]:
        """A projected receipt as served: with its signature, and its gate held to the checks."""
        signed = self.evidence.store.signed(receipt["window_id"])
        if signed is not None:
            receipt["signature"] = signed["signature"]
        self.evidence.overrule([receipt])
        return receipt

    def gate(self, window_id: str) -> dict[str, Any]:
        gate = self._projected(window_id, self.read.gate)
        self.evidence.overrule([gate], key="status")
        return gate

    def windows(
        self,
        after: str | None,
        limit: int | None,
        *,
        gate: str | None = None,
        search: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of windows (optionally only those whose gate is `gate`, or whose id holds
        `search`), each with its gate as served."""
        items, next_cursor = self.read.windows(after, limit, gate=gate, search=search)
        self.evidence.overrule(items)
        return items, next_cursor

    def admitted(
        self, window_id: str, after: int | None, limit: int | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """No PASS, no read; and no payload that differs from the stored chain."""
        gate = self.gate(window_id)
        if gate["status"] != "PASS":
            raise GateNotPassed(
                f"window {window_id!r} has gate {gate['status']}: no PASS, no read", gate=gate
            )
        items, next_cursor = self.read.admitted_events(window_id, after, limit)
        self.evidence.check_page(window_id, items)
        return items, next_cursor

    def _projected(
        self, window_id: str, read: Callable[[str], dict[str, Any] | None]
    ) -> dict[str, Any]:
        """Read your writes: a window the ledger has but the read side has not applied yet is
        waited for (bounded), not answered with 404."""
        found = read(window_id)
        if found is None and self.ledger.has_window(window_id):
            self.catch_up()
            found = read(window_id)
        if found is None:
            raise WindowNotFound(f"no window {window_id!r}")
        return found

    def verify(self, window_id: str) -> tuple[Verification, list[str]]:
        """Recompute the chain and hold it to the close and the signed receipt (recorded: the
        gate follows what this finds); the reasons say what does not stand."""
        return self.evidence.verify(window_id)

    def keys(self) -> list[dict[str, str]]:
        return self.evidence.keys()

    def health(self) -> dict[str, Any]:
        """The status, the storage and the bus, in bounded time (`service.health`)."""
        if self.probe is None:  # built without one (build_services makes it)
            self.probe = build_probe(self.settings, self.ledger.publisher)
        return self.probe.report()

    def close(self) -> None:
        def stop_leading() -> None:
            self.evidence.stop()
            self._stop_follower()

        if self.leadership is not None:
            # The follower stops before the lock goes: the next leader never overlaps it.
            self.leadership.stop(before_release=stop_leading)
        else:
            self.evidence.stop()
        if self.probe is not None:
            self.probe.close()
        self.ledger.close()
        self.ledger.publisher.close()
        self.store.dispose()


def prepare_schema(settings: Settings, store: ReadStore | None = None) -> None:
    """An empty database gets the schema (nothing to protect there) and the embedded default
    migrates itself; a shared PostgreSQL at an older revision is migrated on purpose, so this
    refuses it (SchemaNotCurrent names `ledger db upgrade`)."""
    own = store is None
    store = store or build_read_store(settings)
    try:
        ensure_schema(store, upgrade_older=settings.is_sqlite)
    finally:
        if own:
            store.dispose()


def build_signer(settings: Settings) -> Ed25519Signer:
    """The receipt signing key: LEDGER_SIGNING_KEY, or generated under the data directory."""
    if settings.signing_key and not settings.signing_key_path.is_file():
        raise SettingsError(f"LEDGER_SIGNING_KEY names {settings.signing_key!r}: no such file")
    return Ed25519Signer.load_or_create(settings.signing_key_path)


def build_probe(settings: Settings, publisher: Publisher) -> HealthProbe:
    """Checks of the storage and the bus, by kind, outside the writers' pools (ADR 0024)."""
    close: Callable[[], None] = lambda: None  # noqa: E731
    storage: Callable[[], None]
    if settings.is_sqlite:
        storage_kind, storage = "sqlite", sqlite_ping(settings.sqlite_path)
    else:
        ping = PostgresPing(settings.database_url)
        storage_kind, storage, close = "postgresql", ping, ping.close
    bus_kind = str(getattr(publisher, "name", "other"))
    if isinstance(publisher, EmbeddedPublisher):
        return HealthProbe(storage_kind, storage, bus_kind, None, close=close)

    def bus(timeout: float) -> None:
        if not isinstance(publisher, CheckableBus):
            raise NotImplementedError("this bus cannot be checked")
        publisher.ping(timeout)

    return HealthProbe(storage_kind, storage, bus_kind, bus, close=close)


def build_services(settings: Settings, publisher: Publisher | None = None) -> Services:
    store = build_read_store(settings)
    prepare_schema(settings, store)
    ledger = build_ledger(settings, publisher)
    runner = ProjectionRunner(ledger.recorder, ledger.mapper.transcoder, store)
    read = ReadModels(store)
    evidence = Evidence(ledger, EvidenceStore(store), read, build_signer(settings))
    probe = build_probe(settings, ledger.publisher)
    return Services(settings, ledger, store, runner, read, evidence, probe=probe)
