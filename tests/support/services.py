"""Finding the real services tests need. Under CI=true a missing service fails, never skips."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

ADMIN_URL = os.environ.get(
    "LEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing_service(reason: str) -> None:
    if in_ci():
        pytest.fail(f"CI=true and {reason}: PostgreSQL/NATS tests must run in CI")
    pytest.skip(f"SKIPPED LOUDLY: {reason}")


def _admin_connect() -> psycopg.Connection:
    return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)


def postgres_available() -> str | None:
    try:
        with _admin_connect():
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {ADMIN_URL} is unreachable ({exc})"


@contextmanager
def throwaway_database() -> Iterator[str]:
    """A fresh database of our own on the local server, dropped afterwards."""
    name = f"ledger_t_{uuid.uuid4().hex[:16]}"
    with _admin_connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(ADMIN_URL)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with _admin_connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
