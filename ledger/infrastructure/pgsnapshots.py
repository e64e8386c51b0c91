"""The PostgreSQL recorder's window snapshots (ADR 0017): one row a window, its latest, written
in the transaction of the events it follows, never replaced by an older one."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any
from uuid import UUID

from psycopg import Connection
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composable, Identifier

from ledger.infrastructure.pgrender import statement
from ledger.infrastructure.pgwire import Executes
from ledger.ports import WindowSnapshot


class PostgresSnapshots:
    """Mixed into `LedgerPostgresRecorder`, which makes the connections and the schema."""

    _connection: Callable[[], AbstractContextManager[Connection[DictRow]]]
    sql_create_statements: list[Any]
    check_identifier_length: Callable[[str], None]

    def _define_snapshots(self, schema: Identifier, prefix: str) -> None:
        self.snapshot_table = f"{prefix}_window_snapshots"
        self.check_identifier_length(self.snapshot_table)
        snapshots: Composable = SQL("{}.{}").format(schema, Identifier(self.snapshot_table))
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {snapshots} (originator_id uuid PRIMARY KEY, "
                "originator_version bigint NOT NULL, state bytea NOT NULL)"
            ).format(snapshots=snapshots)
        )
        self._put_snapshot = statement(
            "INSERT INTO {snapshots} (originator_id, originator_version, state) "
            "VALUES (%b, %b, %b) ON CONFLICT (originator_id) DO UPDATE SET "
            "originator_version = EXCLUDED.originator_version, state = EXCLUDED.state "
            "WHERE {snapshots}.originator_version < EXCLUDED.originator_version",
            snapshots=snapshots,
        )
        self._get_snapshot = statement(
            "SELECT originator_version, state FROM {snapshots} WHERE originator_id = %s",
            snapshots=snapshots,
        )
        self._drop_snapshot = statement(
            "DELETE FROM {snapshots} WHERE originator_id = %s AND originator_version = %s",
            snapshots=snapshots,
        )

    def _write_snapshot(self, curs: Executes, snapshot: WindowSnapshot | None) -> None:
        if snapshot is not None:
            curs.execute(
                self._put_snapshot,
                (snapshot.originator_id, snapshot.version, snapshot.state),
                prepare=True,
            )

    def latest_snapshot(self, originator_id: UUID) -> WindowSnapshot | None:
        with self._connection() as conn, conn.cursor() as curs:
            curs.execute(self._get_snapshot, (originator_id,))
            row = curs.fetchone()
        if row is None:
            return None
        return WindowSnapshot(originator_id, row["originator_version"], bytes(row["state"]))

    def discard_snapshot(self, originator_id: UUID, version: int) -> None:
        with self._connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute(self._drop_snapshot, (originator_id, version))
