"""Which failures answer 503 (ADR 0027): the storage's, recognised through any wrapping."""

from __future__ import annotations

import sqlite3

from eventsourcing.persistence import IntegrityError, OperationalError

from ledger.application.storage import as_storage_failure
from ledger.errors import StorageFull, StorageUnavailable


class DriverError(Exception):
    """An error as psycopg raises it: its SQLSTATE in `sqlstate`."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def wrapped(inner: BaseException, outer: BaseException) -> BaseException:
    try:
        raise outer from inner
    except BaseException as exc:
        return exc


def test_a_lost_connection_wrapped_by_the_library_is_storage_unavailable() -> None:
    failure = as_storage_failure(
        wrapped(DriverError("server closed the connection", "08006"), OperationalError("x"))
    )
    assert type(failure) is StorageUnavailable
    assert "nothing was recorded" in str(failure)


def test_sqlstate_53100_and_sqlites_disk_full_are_storage_full() -> None:
    assert isinstance(as_storage_failure(DriverError("could not write", "53100")), StorageFull)
    full = sqlite3.OperationalError("database or disk is full")
    assert isinstance(as_storage_failure(wrapped(full, RuntimeError("write"))), StorageFull)


def test_a_read_only_database_and_a_lock_timeout_are_storage_unavailable() -> None:
    for state in ("25006", "55P03"):
        assert type(as_storage_failure(DriverError("no", state))) is StorageUnavailable
    read_only = sqlite3.OperationalError("attempt to write a readonly database")
    assert type(as_storage_failure(read_only)) is StorageUnavailable


def test_bugs_and_integrity_errors_are_not_storage_failures() -> None:
    assert as_storage_failure(ValueError("a bug")) is None
    assert as_storage_failure(IntegrityError("duplicate key")) is None
    assert as_storage_failure(DriverError("unique violation", "23505")) is None
