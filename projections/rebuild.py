"""Blue/green rebuild of read models: build beside the live tables, then switch in one
transaction; reads never stop (ADR 0007)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import MetaData, Table, delete, insert, select, text, update

from projections.base import Projection
from projections.tables import tracking

if TYPE_CHECKING:
    from projections.follower import ProjectionRunner

REBUILD_COMMIT_SECONDS = 0.25
NEXT = "__next"


def rebuild(
    runner: ProjectionRunner,
    name: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Rebuild beside the live tables, then switch in one transaction; reads never stop.

    Several projections are rebuilt in one pass over the log (read and decoded once)."""
    targets = [p for p in runner.projections if name is None or p.name == name]
    if not targets:
        raise ValueError(f"no projection named {name!r}")
    runner.ensure_tracking([p.name for p in targets])
    shadows = {p.name: _create_shadow(runner, p) for p in targets}
    position = 0
    while True:
        # A rebuild restarts from nothing if it dies, so committing every page buys
        # nothing; commit every REBUILD_COMMIT_SECONDS so the ledger's writers get turns.
        with runner.store.writer.begin() as conn:
            start, started = position, time.monotonic()
            while time.monotonic() - started < REBUILD_COMMIT_SECONDS:
                notifications = runner.read_page(position)
                if not notifications:
                    break
                events = runner.decoder.decode(conn, notifications)
                for projection in targets:
                    projection.apply(conn, events, shadows[projection.name])
                position = events[-1].position
                if progress:
                    progress(len(events))
            if position == start:
                break
            for projection in targets:
                runner.claim(conn, projection.name + NEXT, start, position)
    for projection in targets:
        _switch(runner, projection, shadows[projection.name], position, progress)


def _create_shadow(runner: ProjectionRunner, projection: Projection) -> dict[str, Table]:
    shadow_meta = MetaData()
    shadow = {t.name: t.to_metadata(shadow_meta, name=t.name + NEXT) for t in projection.tables()}
    for table in shadow.values():
        table.indexes.clear()  # bulk-load without secondary indexes; made at the switch
    next_name = projection.name + NEXT
    with runner.store.writer.begin() as conn:
        shadow_meta.drop_all(conn)
        shadow_meta.create_all(conn)
        conn.execute(delete(tracking).where(tracking.c.name == next_name))
        conn.execute(insert(tracking).values(name=next_name, position=0))
    return shadow


def _switch(
    runner: ProjectionRunner,
    projection: Projection,
    shadow: dict[str, Table],
    position: int,
    progress: Callable[[int], None] | None,
) -> None:
    with runner.store.writer.begin() as conn:
        # Lock the live row first (runners claim it first too): a follower's next claim
        # waits for the switch, then finds the position moved and re-reads.
        conn.execute(
            select(tracking.c.position).where(tracking.c.name == projection.name).with_for_update()
        )
        while notifications := runner.read_page(position):
            events = runner.decoder.decode(conn, notifications)
            projection.apply(conn, events, shadow)
            position = events[-1].position
            if progress:
                progress(len(events))
        for table in projection.tables():
            conn.execute(text(f'DROP TABLE IF EXISTS "{table.name}"'))
            conn.execute(text(f'ALTER TABLE "{table.name}{NEXT}" RENAME TO "{table.name}"'))
            if conn.dialect.name == "postgresql":
                conn.execute(
                    text(
                        f'ALTER TABLE "{table.name}" RENAME CONSTRAINT '
                        f'"{table.name}{NEXT}_pkey" TO "{table.name}_pkey"'
                    )
                )
            for index in table.indexes:
                index.create(conn)
        conn.execute(
            update(tracking).where(tracking.c.name == projection.name).values(position=position)
        )
        conn.execute(delete(tracking).where(tracking.c.name == projection.name + NEXT))
