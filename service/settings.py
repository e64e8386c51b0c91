"""Settings read from the environment (contract s.7). Nothing connects here."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

DEFAULT_DATABASE_URL = "sqlite:///./ledger-data/ledger.db"
APPLICATION_NAME = "ledger"  # Postgres table names derive from it: keep it fixed.


class SettingsError(ValueError):
    pass


def _seconds(text: str | None, default: float) -> float:
    value = default if not text else float(text)
    if value < 0 or value != value:
        raise ValueError(f"{text!r} is not a number of seconds >= 0")
    return value


def _positive(text: str | None, default: float) -> float:
    value = _seconds(text, default)
    if value == 0 or value == float("inf"):
        raise ValueError(f"{text!r} is not a number > 0")
    return value


def _count(text: str | None, default: int) -> int:
    value = default if not text else int(text)
    if value < 0:
        raise ValueError(f"{text!r} is not a count >= 0")
    return value


FOLLOWERS = ("thread", "process")


def _follower(text: str | None) -> str:
    value = text or "thread"
    if value not in FOLLOWERS:
        raise SettingsError(f"LEDGER_FOLLOWER must be one of {', '.join(FOLLOWERS)}: {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    publisher: str = "embedded"
    api_tokens: str = ""
    aggregate_cache_size: int = 1000
    # NATS JetStream details beyond the contract's one URL (optional, with defaults).
    nats_stream: str = "LEDGER"
    nats_subject_prefix: str = "ledger.windows"
    nats_duplicate_window_seconds: float = 24 * 3600.0
    nats_publish_timeout_seconds: float = 2.0
    # Evidence (contract s.9): the receipt signing key, and how often closed windows are scrubbed.
    signing_key: str = ""  # path to a PEM private key; "" = generated under the data directory
    scrub_interval_seconds: float = 3600.0  # 0 turns the background scrub off
    # A window's snapshot is written with the events that carry it past each multiple of this
    # many events (ADR 0017); 0 turns snapshots off.
    snapshot_interval: int = 500
    # Group commit (ADR 0019): concurrent admission requests wait up to this long, or until this
    # many events are gathered, to be written in one transaction.
    group_commit_ms: float = 2.0
    group_commit_events: int = 1000
    # Where the leader applies the log to the read models (ADR 0020): "thread" (in the process)
    # or "process" (a child process: its own core and interpreter lock; `ledger serve`'s default).
    follower: str = "thread"
    # Every request answers within this (ADR 0027): a queued admission still waiting for its
    # write then answers 503, nothing recorded.
    request_timeout_seconds: float = 10.0
    # Resource bounds and shutdown of `ledger serve` (ADR 0029). Request bodies read or being
    # processed at once, per worker process: beyond it a large request waits up to a second,
    # then answers 503 `busy` before its body is read.
    max_inflight_body_mb: float = 32.0
    # A request's body must have arrived in full within this many seconds of its first read (408).
    body_timeout_seconds: float = 30.0
    # A connection must send a request's headers in full within this many seconds of opening
    # (or of its previous answer), and an idle kept-alive one is closed after keep_alive_seconds.
    header_timeout_seconds: float = 10.0
    keep_alive_seconds: float = 5.0
    # SIGTERM: in-flight requests get this long to finish; a second signal exits at once.
    shutdown_timeout_seconds: float = 15.0
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        try:
            return cls(
                database_url=env.get("LEDGER_DATABASE_URL") or DEFAULT_DATABASE_URL,
                publisher=env.get("LEDGER_PUBLISHER") or "embedded",
                api_tokens=env.get("LEDGER_API_TOKENS") or "",
                nats_stream=env.get("LEDGER_NATS_STREAM") or "LEDGER",
                nats_subject_prefix=env.get("LEDGER_NATS_SUBJECT_PREFIX") or "ledger.windows",
                nats_duplicate_window_seconds=float(
                    env.get("LEDGER_NATS_DUPLICATE_WINDOW_SECONDS") or 24 * 3600.0
                ),
                nats_publish_timeout_seconds=float(
                    env.get("LEDGER_NATS_PUBLISH_TIMEOUT_SECONDS") or 2.0
                ),
                signing_key=env.get("LEDGER_SIGNING_KEY") or "",
                scrub_interval_seconds=_seconds(env.get("LEDGER_SCRUB_INTERVAL_SECONDS"), 3600.0),
                snapshot_interval=_count(env.get("LEDGER_SNAPSHOT_INTERVAL"), 500),
                group_commit_ms=_seconds(env.get("LEDGER_GROUP_COMMIT_MS"), 2.0),
                group_commit_events=_count(env.get("LEDGER_GROUP_COMMIT_EVENTS"), 1000),
                follower=_follower(env.get("LEDGER_FOLLOWER")),
                request_timeout_seconds=_seconds(env.get("LEDGER_REQUEST_TIMEOUT_SECONDS"), 10.0),
                max_inflight_body_mb=_positive(env.get("LEDGER_MAX_INFLIGHT_BODY_MB"), 32.0),
                body_timeout_seconds=_positive(env.get("LEDGER_BODY_TIMEOUT_SECONDS"), 30.0),
                header_timeout_seconds=_positive(env.get("LEDGER_HEADER_TIMEOUT_SECONDS"), 10.0),
                keep_alive_seconds=_positive(env.get("LEDGER_KEEP_ALIVE_SECONDS"), 5.0),
                shutdown_timeout_seconds=_seconds(env.get("LEDGER_SHUTDOWN_TIMEOUT_SECONDS"), 15.0),
            )
        except SettingsError:
            raise
        except ValueError as exc:
            raise SettingsError(f"bad number in the LEDGER_* settings: {exc}") from None

    def describe_publisher(self) -> str:
        if self.publisher == "embedded":
            return "embedded (the ledger is the stream; offsets are per-window sequences)"
        return f"NATS JetStream at {self.publisher}, stream {self.nats_stream}"

    @property
    def data_dir(self) -> Path:
        """Where the service keeps its files: the SQLite file's folder, else ./ledger-data."""
        return self.sqlite_path.parent if self.is_sqlite else Path("ledger-data")

    @property
    def signing_key_path(self) -> Path:
        """LEDGER_SIGNING_KEY, or the key generated on first start under the data directory."""
        return Path(self.signing_key) if self.signing_key else self.data_dir / "signing-key.pem"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")

    @property
    def sqlite_path(self) -> Path:
        if not self.is_sqlite:
            raise SettingsError("not an SQLite URL")
        path = self.database_url.removeprefix("sqlite:///")
        if path == self.database_url or not path:
            raise SettingsError(
                f"SQLite URL must look like sqlite:///path/to/file.db: {self.database_url}"
            )
        return Path(path)

    def describe_database(self) -> str:
        if self.is_sqlite:
            return f"SQLite file {self.sqlite_path.resolve()}"
        parts = urlsplit(self.database_url)
        return f"PostgreSQL {parts.hostname}:{parts.port or 5432}/{parts.path.lstrip('/')}"

    def eventsourcing_env(self) -> dict[str, str]:
        """The eventsourcing library's settings for this database URL."""
        env = {
            # Cache windows without deep copies: commands stay O(batch), not O(history).
            "AGGREGATE_CACHE_MAXSIZE": str(self.aggregate_cache_size),
            "SNAPSHOT_INTERVAL": str(self.snapshot_interval),
            "GROUP_COMMIT_MS": str(self.group_commit_ms),
            # Transient storage errors are retried for at most half the request's deadline.
            "STORAGE_RETRY_SECONDS": str(self.request_timeout_seconds / 2),
            "GROUP_COMMIT_EVENTS": str(self.group_commit_events),
            "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
            # Stored state as plain JSON, mapped without the library's per-event overheads.
            "TRANSCODER_TOPIC": "ledger.infrastructure.transcoder:JSONStateTranscoder",
            "MAPPER_TOPIC": "ledger.infrastructure.transcoder:LedgerMapper",
        }
        if self.is_sqlite:
            path = self.sqlite_path
            path.parent.mkdir(parents=True, exist_ok=True)
            env.update(
                PERSISTENCE_MODULE="eventsourcing.sqlite",
                SQLITE_DBNAME=str(path),
                SQLITE_LOCK_TIMEOUT="30",
                APPLICATION_RECORDER_TOPIC="ledger.infrastructure.sqlite:LedgerSQLiteRecorder",
            )
        elif self.database_url.startswith(("postgresql://", "postgres://")):
            parts = urlsplit(self.database_url)
            if not parts.path.lstrip("/"):
                raise SettingsError("PostgreSQL URL needs a database name")
            env.update(
                PERSISTENCE_MODULE="eventsourcing.postgres",
                POSTGRES_DBNAME=unquote(parts.path.lstrip("/")),
                POSTGRES_HOST=parts.hostname or "127.0.0.1",
                POSTGRES_PORT=str(parts.port or 5432),
                POSTGRES_USER=unquote(parts.username or "postgres"),
                POSTGRES_PASSWORD=unquote(parts.password or ""),
                POSTGRES_POOL_SIZE="4",
                POSTGRES_MAX_OVERFLOW="8",
                # A writer waits for the event store's lock well within the request's
                # deadline, then retries within the rest of it (ADR 0027).
                POSTGRES_LOCK_TIMEOUT=str(max(1, int(self.request_timeout_seconds * 0.4))),
                # How long a command waits for a pooled connection (and libpq for a connect).
                POSTGRES_CONNECT_TIMEOUT=str(max(1, int(self.request_timeout_seconds * 0.3))),
                # A session stuck in its transaction (its client gone quiet) would hold the
                # event store's lock for ever: the server ends it (ADR 0026).
                POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT="15",
                APPLICATION_RECORDER_TOPIC="ledger.infrastructure.postgres:LedgerPostgresRecorder",
            )
        else:
            raise SettingsError(
                "LEDGER_DATABASE_URL must be sqlite:///path/to/file.db or "
                f"postgresql://user:password@host:port/dbname, not {self.database_url!r}"
            )
        env.update(self.extra_env)
        return env
