"""The composition root: everything the service runs, built from settings.

The only code that knows both sides: the write side (ledger, publisher, recorders chosen by
topic), the read side (store, runner, read models) and the facade the HTTP app and the command
line use. Nothing connects at import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ledger.application import Ledger, Verification
from ledger.errors import StorageUnavailable, WindowNotFound
from ledger.infrastructure import fastjson
from ledger.infrastructure.embedded import EmbeddedPublisher
from ledger.ports import Publisher
from projections.follower import ProjectionRunner
from projections.migrate import ensure_schema
from projections.queries import ReadModels
from projections.store import ReadStore, create_read_store
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
    following: bool = False

    def start_following(self) -> None:
        self.runner.start()
        self.following = True

    def catch_up(self) -> None:
        """Bring the read side up to the log's head (used where no runner follows)."""
        if self.following:
            self.runner.wait_for(self.runner.head(), CLOSE_WAIT_SECONDS)
        else:
            self.runner.run_until_caught_up()

    def close_window(self, window_id: str) -> dict[str, Any]:
        """Close, then wait (bounded) for the read side, so the gate reads PASS right after."""
        self.ledger.close_window(window_id)
        self.catch_up()
        return self.receipt(window_id)

    def receipt(self, window_id: str) -> dict[str, Any]:
        return self._projected(window_id, self.read.receipt)

    def gate(self, window_id: str) -> dict[str, Any]:
        return self._projected(window_id, self.read.gate)

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

    def verify(self, window_id: str) -> Verification:
        return self.ledger.verify(window_id)

    def health(self) -> None:
        """Raise StorageUnavailable unless both the read models and the events answer."""
        try:
            self.read.ping()
            self.ledger.recorder.max_notification_id()
        except Exception as exc:
            raise StorageUnavailable(f"storage is unreachable: {type(exc).__name__}") from None

    def close(self) -> None:
        if self.following:
            self.runner.stop()
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


def build_services(settings: Settings, publisher: Publisher | None = None) -> Services:
    store = build_read_store(settings)
    prepare_schema(settings, store)
    ledger = build_ledger(settings, publisher)
    runner = ProjectionRunner(ledger.recorder, ledger.mapper.transcoder, store)
    return Services(settings, ledger, store, runner, ReadModels(store))
