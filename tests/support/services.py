"""Finding the real services tests need, and the small waits and ports they share.

Under CI=true a missing service fails, never skips (`missing_service`). PostgreSQL is reached at
ADMIN_URL (LEDGER_TEST_POSTGRES_URL overrides it); `throwaway_database()` makes a database of the
test's own there and drops it afterwards. Only 127.0.0.1 is ever bound or contacted.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, LiteralString
from urllib.parse import urlsplit, urlunsplit

import psycopg

HOST = "127.0.0.1"
ADMIN_URL = os.environ.get(
    "LEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing_service(reason: str) -> None:
    import pytest  # here, so the benchmarks can use these helpers without loading pytest

    if in_ci():
        pytest.fail(f"CI=true and {reason}: PostgreSQL/NATS tests must run in CI")
    pytest.skip(f"SKIPPED LOUDLY: {reason}")


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until `predicate()` holds; fail naming `what` after `timeout` seconds (a bound on a
    liveness wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g}s waiting for: {what}")
        time.sleep(0.02)


def _admin_connect(admin_url: str = ADMIN_URL) -> psycopg.Connection:
    return psycopg.connect(admin_url, autocommit=True, connect_timeout=5)


def postgres_available() -> str | None:
    """None when PostgreSQL answers at ADMIN_URL, else why not."""
    try:
        with _admin_connect():
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {ADMIN_URL} is unreachable ({exc})"


@contextmanager
def throwaway_database(admin_url: str = ADMIN_URL) -> Iterator[str]:
    """A fresh database of our own on the server of `admin_url` (its postgresql:// URL),
    dropped afterwards."""
    name = f"ledger_t_{uuid.uuid4().hex[:16]}"
    with _admin_connect(admin_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin_url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with _admin_connect(admin_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def postgres_database() -> Iterator[str]:
    """A throwaway PostgreSQL database, or the loud skip (a failure under CI) when there is no
    server: what a PostgreSQL-only test asks for."""
    reason = postgres_available()
    if reason:
        missing_service(reason)
    with throwaway_database() as url:
        yield url


def one_row(url: str, query: LiteralString) -> tuple[Any, ...]:
    """The one row a query returns, read on a connection of its own (autocommit)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None, query
    return tuple(row)
