"""The write path's statements sent straight through libpq (ADR 0049).

A group commit's two round trips (its windows' newer events and identities; then its
transaction) are about ten statements. Through psycopg's pipeline each cost ~50 µs of the
writer's CPU: a cursor, the query's conversion and its parameters' adaptation, result
bookkeeping and loaders set up for every result, a row maker. Measured on this machine, the
same five reads cost 300 µs of client CPU through psycopg's pipeline and 58 µs sent here.

`Wire` drives one pipeline on the libpq connection (`pgconn`) of a connection checked out of
the pool, so the pool keeps its checks, reconnection and error mapping. Parameters are sent in
binary with their types, results are asked for in binary; statements are prepared once per
connection under names of their own. psycopg deallocates every prepared statement of a
connection after some of its own commands (a ROLLBACK it runs while it holds prepared
statements): an execution that then meets a missing statement (SQLSTATE 26000) forgets what
this connection had prepared, and its caller runs again.
"""

from __future__ import annotations

import itertools
import re
import select
import weakref
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Protocol
from uuid import UUID

from psycopg import Connection
from psycopg import errors as pg_errors
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg.pq.abc import PGresult

from ledger.infrastructure import pgarrays
from ledger.infrastructure.pgarrays import ByteaArray, Int8Array, TextArray

_TEXT, _BYTEA, _INT8, _UUID = 25, 17, 20, 2950
_BINARY = 1
_SYNC = ExecStatus.PIPELINE_SYNC
FLUSH_FROM_BYTES = 16 * 1024
_FATAL = ExecStatus.FATAL_ERROR

# What each connection has prepared: (statement, parameter types) -> name.
_prepared: weakref.WeakKeyDictionary[Connection[Any], dict[tuple[bytes, tuple[int, ...]], bytes]]
_prepared = weakref.WeakKeyDictionary()
_names = itertools.count(1)
_numbered: dict[bytes, bytes] = {}
_PLACEHOLDER = re.compile(rb"%[bs]|%%")


class Executes(Protocol):
    """What the write path's statements are sent with: a `Wire`, or a psycopg cursor (the
    library's own save, whose caller reads the cursor's rows)."""

    def execute(
        self, query: bytes, params: Sequence[Any] = ..., *, prepare: bool | None = ...
    ) -> object: ...


def numbered(query: bytes) -> bytes:
    """The statement with psycopg's `%b`/`%s` placeholders as libpq's `$1`, `$2`, ..."""
    found = _numbered.get(query)
    if found is None:
        count = itertools.count(1)

        def number(match: re.Match[bytes]) -> bytes:
            return b"%" if match.group() == b"%%" else b"$%d" % next(count)

        found = _numbered[query] = _PLACEHOLDER.sub(number, query)
    return found


def parameter(value: object) -> tuple[int, bytes | None]:
    """A parameter's type and binary value."""
    if value is None:
        return 0, None
    if isinstance(value, str):
        return _TEXT, value.encode()
    if isinstance(value, int):
        return _INT8, value.to_bytes(8, "big", signed=True)
    if isinstance(value, bytes):
        return _BYTEA, value
    if isinstance(value, UUID):
        return _UUID, value.bytes
    if isinstance(value, TextArray):
        return pgarrays.TEXT_ARRAY, pgarrays.text_array(value.items)
    if isinstance(value, ByteaArray):
        return pgarrays.BYTEA_ARRAY, pgarrays.bytea_array(value.items)
    if isinstance(value, Int8Array):
        return pgarrays.INT8_ARRAY, pgarrays.int8_array(value.items)
    raise TypeError(f"no binary form here for a {type(value).__name__} parameter")


def int8(value: bytes | None) -> int | None:
    return None if value is None else int.from_bytes(value, "big", signed=True)


class Wire:
    """One pipeline on a pooled connection's libpq connection: `execute` sends a statement at
    once (the server starts on it while Python makes the next), `sync` waits for every answer
    since the last sync and raises the first statement's error, if one failed."""

    def __init__(self, conn: Connection[Any]) -> None:
        self.conn = conn
        self.pg = conn.pgconn
        self.names = _prepared.setdefault(conn, {})
        self._sent = 0  # results to collect at the next sync
        self._kept: list[int] = []  # which of them are statements' (not preparations')
        self._new: list[tuple[bytes, tuple[int, ...]]] = []  # prepared since the last sync
        self._poll = select.poll()
        self._poll.register(self.pg.socket, select.POLLIN)
        self._entered = False

    def __enter__(self) -> Wire:
        self.pg.enter_pipeline_mode()
        self._entered = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(rollback=exc_type is not None)

    def execute(
        self, query: bytes, params: Sequence[object] = (), *, prepare: bool | None = None
    ) -> int:
        """Send one statement; its position in what the next `sync` returns. `prepare=False`
        sends it unnamed (planned on each execution); otherwise it is prepared once."""
        sql = numbered(query)
        types: tuple[int, ...] = ()
        values: list[bytes | None] = []
        size = 0
        for value in params:
            oid, data = parameter(value)
            types += (oid,)
            values.append(data)
            size += len(data) if data is not None else 0
        formats = [_BINARY] * len(values)
        if prepare is False:
            self.pg.send_query_params(sql, values, types, formats, _BINARY)
        else:
            key = (sql, types)
            name = self.names.get(key)
            if name is None:
                name = b"ledger_%d" % next(_names)
                self.pg.send_prepare(name, sql, types)
                self.names[key] = name
                self._new.append(key)
                self._sent += 1
            self.pg.send_query_prepared(name, values, formats, _BINARY)
        self._kept.append(self._sent)
        self._sent += 1
        if size >= FLUSH_FROM_BYTES:
            # A large statement (a batch's chunk) goes now: the server writes it while Python
            # makes the next (ADR 0011). Small ones wait for the next flush or the sync: one
            # `send` for all of them (libpq also sends by itself past 64 KiB).
            self._flush()
        return len(self._kept) - 1

    def sync(self) -> list[PGresult]:
        """Every statement's result since the last sync, in the order they were sent."""
        self.pg.pipeline_sync()
        self._flush()
        results = self._collect()
        kept, self._kept, self._sent = self._kept, [], 0
        failed = next((r for r in results if r.status == _FATAL), None)
        new, self._new = self._new, []
        if failed is not None:
            for key in new:  # what the failure may have kept from being prepared
                self.names.pop(key, None)
            error = pg_errors.error_from_result(failed, encoding="utf-8")
            if isinstance(error, pg_errors.InvalidSqlStatementName):
                self.names.clear()  # deallocated behind our back: prepare again
            raise error
        return [results[i] for i in kept]

    def close(self, *, rollback: bool) -> None:
        """Leave pipeline mode (collecting what is still owed) and, after a failure, roll back
        the transaction left open, so the pool gets the connection back idle."""
        if not self._entered:
            return
        self._entered = False
        try:
            if self._sent:
                self.pg.pipeline_sync()
                self._flush()
                self._collect()
                self._sent, self._kept, self._new = 0, [], []
            self.pg.exit_pipeline_mode()
            if rollback and self.pg.transaction_status != TransactionStatus.IDLE:
                self.pg.exec_(b"ROLLBACK")
        except Exception:
            # Whatever state it is in, the pool must not get it back: it discards it closed.
            self.conn.close()
            raise

    def _collect(self) -> list[PGresult]:
        results: list[PGresult] = []
        while True:
            while self.pg.is_busy():
                self._wait(select.POLLIN)
                self.pg.consume_input()
            result = self.pg.get_result()
            if result is None:  # the end of one statement's results
                continue
            if result.status == _SYNC:
                return results
            results.append(result)

    def flush(self) -> None:
        """Send what is queued now (before Python work the answers need not wait for)."""
        self._flush()

    def _flush(self) -> None:
        # Non-blocking: while libpq cannot send everything, read what the server answers
        # meanwhile (it stops reading when its own output is not read).
        while self.pg.flush():
            if self._wait(select.POLLIN | select.POLLOUT) & select.POLLIN:
                self.pg.consume_input()

    def _wait(self, events: int) -> int:
        self._poll.modify(self.pg.socket, events)
        while True:
            ready = self._poll.poll()
            if ready:
                return ready[0][1]
