"""Helpers for the read-side tests: table checksums, the real `ledger` command, stored-event edits.

Everything here talks to the database through its own short-lived connections, so it sees what a
separate process would see.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, Table, create_engine, inspect, select, text

from ledger.domain import window_uuid
from projections.store import sqlalchemy_url

ROOT = Path(__file__).resolve().parents[2]

# Every read model a projection owns (rm_window_names and rm_tracking are bookkeeping).
READ_MODEL_TABLES = ("rm_receipts", "rm_receipt_sources", "rm_admitted", "rm_quarantine")
PROJECTIONS = ("receipts", "admitted", "quarantine")


# --- looking at the database from outside ------------------------------------------------


@contextlib.contextmanager
def engine_for(database_url: str) -> Iterator[Engine]:
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        yield engine
    finally:
        engine.dispose()


def table_rows(engine: Engine, name: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Every column of the table as it is in the database now, rows ordered by primary key."""
    table = Table(name, MetaData(), autoload_with=engine)
    columns = [c.name for c in table.columns]
    primary_key = [c for c in table.primary_key.columns]
    assert primary_key, f"{name} has no primary key"
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(select(table).order_by(*primary_key))]
    return columns, rows


def table_checksum(engine: Engine, name: str) -> str:
    columns, rows = table_rows(engine, name)
    digest = hashlib.sha256()
    digest.update(json.dumps(columns).encode())
    for row in rows:
        digest.update(b"\n" + json.dumps(list(row), sort_keys=True, default=str).encode())
    return f"{len(rows)} rows sha256:{digest.hexdigest()}"


def checksums(database_url: str, tables: Sequence[str] = READ_MODEL_TABLES) -> dict[str, str]:
    """A checksum of every read-model table (every column, rows in primary-key order)."""
    with engine_for(database_url) as engine:
        return {name: table_checksum(engine, name) for name in tables}


def table_names(database_url: str) -> set[str]:
    with engine_for(database_url) as engine:
        return set(inspect(engine).get_table_names())


def tracking_positions(database_url: str) -> dict[str, int]:
    with engine_for(database_url) as engine, engine.connect() as conn:
        rows = conn.execute(text("SELECT name, position FROM rm_tracking"))
        return {name: int(position) for name, position in rows}


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until `condition()` holds; fail naming `what` after `timeout` seconds (a bound on a
    liveness wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(0.02)


# --- the real command line -------------------------------------------------------------


def cli_env(database_url: str) -> dict[str, str]:
    return {**os.environ, "LEDGER_DATABASE_URL": database_url, "LEDGER_PUBLISHER": "embedded"}


def run_cli(
    database_url: str, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`ledger ARGS...` as a subprocess on the given database; returns when it exits."""
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        capture_output=True,
        text=True,
        env=cli_env(database_url),
        cwd=ROOT,
        timeout=timeout,
    )


def start_cli(database_url: str, *args: str, stderr_path: Path) -> subprocess.Popen[bytes]:
    """`ledger ARGS...` started in the background; its stderr goes to a file (never a pipe that
    could fill up). Always pair with `stop_process` in a finally."""
    with open(stderr_path, "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=cli_env(database_url),
            cwd=ROOT,
        )


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> int:
    """Send `sig` if it still runs, then reap it (SIGKILL if it does not exit in time)."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            return process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait(timeout=60)


# --- editing stored history behind the ledger's back ----------------------------------------


def tamper_stored_event(
    database_url: str, window_id: str, version: int, old: bytes, new: bytes
) -> None:
    """Replace bytes inside one stored event's state, as an attacker with database access could."""
    uuid = window_uuid(window_id)
    if database_url.startswith("sqlite"):
        import sqlite3

        path = database_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn, conn:
            (state,) = conn.execute(
                "SELECT state FROM stored_events"
                " WHERE originator_id = ? AND originator_version = ?",
                (uuid.hex, version),
            ).fetchone()
            state = bytes(state)
            assert old in state, state
            conn.execute(
                "UPDATE stored_events SET state = ?"
                " WHERE originator_id = ? AND originator_version = ?",
                (state.replace(old, new), uuid.hex, version),
            )
    else:
        import psycopg

        with psycopg.connect(database_url) as conn:
            (state,) = conn.execute(
                "SELECT state FROM ledger_events"
                " WHERE originator_id = %s AND originator_version = %s",
                (uuid, version),
            ).fetchone()
            state = bytes(state)
            assert old in state, state
            conn.execute(
                "UPDATE ledger_events SET state = %s"
                " WHERE originator_id = %s AND originator_version = %s",
                (state.replace(old, new), uuid, version),
            )
