"""Pages of the notification log bounded by stored bytes as well as by events (ADR 0037): the
read side steps through the log in pages of up to 4,000 events, and a page of events of up to
1 MiB each must not be 4 GB. One statement: the first `limit` events after `after`, then as
many of them as fit in `max_bytes` by a running sum of their stored sizes (always at least
one). The sizes come from the rows' headers (`octet_length`, `length` of a blob), so events
past the bound are neither fetched whole nor sent.

On PostgreSQL the page's originator ids are text (the library's `Notification` allows it): the
read side keys windows by that text, and parsing thousands of UUIDs a step only to print them
again cost a micro-second an event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventsourcing.persistence import Notification
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from ledger.infrastructure.frozen import made_frozen


def notification(
    id: int, originator_id: Any, originator_version: int, topic: str, state: bytes
) -> Notification:
    """A `Notification` made without its frozen dataclass's `__init__` (`made_frozen`)."""
    return made_frozen(
        Notification,
        id=id,
        originator_id=originator_id,
        originator_version=originator_version,
        topic=topic,
        state=bytes(state),
    )


class PostgresLogPages:
    datastore: Any
    events_table_name: str

    def select_notifications_within(
        self, after: int, limit: int, max_bytes: int
    ) -> list[Notification]:
        statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM ("
            "SELECT *, sum(octet_length(state)) OVER (ORDER BY notification_id) AS running "
            "FROM (SELECT notification_id, originator_id::text AS originator_id, "
            "originator_version, topic, state "
            "FROM {schema}.{table} WHERE notification_id > %s ORDER BY notification_id "
            "LIMIT %s) AS firsts) AS page "
            "WHERE running - octet_length(state) < %s ORDER BY notification_id"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))
        # Rows as tuples, not the pool's dictionaries: the follower reads thousands a step.
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(statement, (after, limit, max_bytes), prepare=True)
            return [notification(*row) for row in curs.fetchall()]


class SQLiteLogPages:
    datastore: Any
    events_table_name: str

    convert_originator_id: Callable[[Any], Any]  # the library recorder's (annotation only)

    def select_notifications_within(
        self, after: int, limit: int, max_bytes: int
    ) -> list[Notification]:
        statement = (
            "SELECT id, originator_id, originator_version, topic, state FROM ("
            "SELECT *, sum(length(state)) OVER (ORDER BY id) AS running FROM ("
            "SELECT rowid AS id, originator_id, originator_version, topic, state "
            f"FROM {self.events_table_name} WHERE rowid > ? ORDER BY rowid LIMIT ?)) "
            "WHERE running - length(state) < ? ORDER BY id"
        )
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, (after, limit, max_bytes))
            return [
                Notification(
                    id=row["id"],
                    originator_id=self.convert_originator_id(row["originator_id"]),
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=row["state"],
                )
                for row in c.fetchall()
            ]
