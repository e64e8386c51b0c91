"""Which failures are the storage's (down, unreachable, full, read-only) rather than a bug:
those answer 503 with nothing recorded and a retry is safe (ADR 0027).

Recognised without importing a driver: eventsourcing's own persistence errors, SQLite's, and
any error carrying a SQLSTATE (psycopg's, also when SQLAlchemy or the library wrapped it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from eventsourcing.persistence import InterfaceError, OperationalError

from ledger.errors import StorageFull, StorageUnavailable

# SQLSTATE classes and codes that mean "the database cannot take this now".
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")  # connection, resources, operator, system
_UNAVAILABLE_CODES = {"25006", "40001", "40P01", "55P03", "HV000"}  # read-only, lock waits
_FULL_CODES = {"53100"}
_FULL_TEXT = ("database or disk is full", "no space left on device", "could not extend file")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_storage_error(e: BaseException, state: object) -> bool:
    if isinstance(state, str):
        return state[:2] in _UNAVAILABLE_CLASSES or state in _UNAVAILABLE_CODES
    if isinstance(e, (OperationalError, InterfaceError, sqlite3.OperationalError)):
        return True
    return type(e).__name__ in ("PoolTimeout", "TooManyRequests")  # psycopg_pool


def as_storage_failure(exc: BaseException) -> StorageUnavailable | None:
    """The 503 to answer for `exc`, or None when it is not a storage failure."""
    storage = False
    for e in _chain(exc):
        if isinstance(e, StorageUnavailable):
            return e
        text = str(e).lower()
        state = getattr(e, "sqlstate", None)
        if state in _FULL_CODES or any(t in text for t in _FULL_TEXT):
            return StorageFull(
                "the database has no space left for this write; nothing was recorded, "
                "retry once space is freed"
            )
        storage = storage or _is_storage_error(e, state)
    if not storage:
        return None
    return StorageUnavailable(
        f"the database did not take the request ({type(exc).__name__}); nothing was recorded, retry"
    )


__all__ = ["as_storage_failure"]
