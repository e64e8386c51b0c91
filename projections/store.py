"""SQLAlchemy engines for the read models, on the same database as the events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, event


def sqlalchemy_url(database_url: str) -> str:
    """SQLAlchemy's URL for LEDGER_DATABASE_URL (psycopg 3 as the PostgreSQL driver)."""
    if database_url.startswith("sqlite:"):
        return database_url
    rest = database_url.split("://", 1)[1]
    return f"postgresql+psycopg://{rest}"


@dataclass
class ReadStore:
    """`writer` serializes writes (on SQLite: BEGIN IMMEDIATE); `reader` never blocks writers."""

    writer: Engine
    reader: Engine

    @property
    def dialect(self) -> str:
        return self.writer.dialect.name

    def dispose(self) -> None:
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event issue BEGIN itself (pysqlite's own is too late).
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def create_read_store(database_url: str) -> ReadStore:
    """Engines for the read models on the database of LEDGER_DATABASE_URL."""
    url = sqlalchemy_url(database_url)
    if database_url.startswith("sqlite:"):
        return ReadStore(_sqlite_engine(url, immediate=True), _sqlite_engine(url, immediate=False))
    engine = create_engine(url, pool_size=4, max_overflow=8, pool_pre_ping=True)
    return ReadStore(engine, engine)
