"""Making the PostgreSQL event tables when several processes start at once."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from psycopg.errors import DuplicateObject, UniqueViolation
from psycopg.sql import SQL, Composed, Literal

# Held (transaction-scoped) while the tables are made: processes starting together on one
# database (`ledger serve --workers N`, several servers) otherwise race on the catalog and one
# fails with "tuple concurrently updated" or a duplicate type. A fixed 64-bit key.
SCHEMA_LOCK_KEY = 0x6C65_6467_6572_0001


class SerializedSchema:
    """Mixed into a `PostgresRecorder`: its `create_table` (composite types each in a
    transaction of their own, then every table, index and function in one, as the library
    does), each transaction serialized against other processes' by an advisory lock."""

    # The recorder's own (annotations only: nothing here shadows `PostgresRecorder`'s).
    datastore: Any
    sql_create_statements: list[Composed]
    _create_table: Callable[[Any], None]

    _schema_lock = SQL("SELECT pg_advisory_xact_lock({})").format(Literal(SCHEMA_LOCK_KEY))

    def create_table(self) -> None:
        for statement in self.sql_create_statements:
            if "CREATE TYPE" in statement.as_string():
                with (
                    self.datastore.transaction(commit=True) as curs,
                    contextlib.suppress(DuplicateObject, UniqueViolation),
                ):
                    curs.execute(self._schema_lock, prepare=False)
                    curs.execute(statement, prepare=False)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._schema_lock, prepare=False)
            self._create_table(curs)
        self.datastore.register_type_adapters()
