"""Alembic environment: the read models' tables, on the database in LEDGER_DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from projections.store import create_read_store
from projections.tables import metadata

config = context.config


def run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


given = config.attributes.get("connection")
if given is not None:
    run(given)
else:
    # Run by `alembic` itself (the ledger passes its connection): the URL from the environment.
    store = create_read_store(
        os.environ.get("LEDGER_DATABASE_URL", "sqlite:///./ledger-data/ledger.db")
    )
    try:
        with store.writer.connect() as connection:
            run(connection)
    finally:
        store.dispose()
