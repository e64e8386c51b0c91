"""Running the Alembic migrations of the read models (`ledger db upgrade`).

Alembic is imported only to migrate: checking the schema is one query against HEAD, which a
test keeps equal to the migration scripts' head.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from projections.store import ReadStore

if TYPE_CHECKING:
    from alembic.config import Config


def _migrations() -> Path:
    """The Alembic scripts: inside this package when installed from a wheel (shipped as
    `projections.migrations`), the top-level `migrations/` folder in a checkout."""
    here = Path(__file__).resolve().parent
    for folder in (here / "migrations", here.parent / "migrations"):
        if (folder / "env.py").is_file():
            return folder
    raise FileNotFoundError(f"no Alembic migrations beside {here}")


MIGRATIONS = _migrations()
HEAD = "0004"
MIGRATION_LOCK = 0x4C45444745520001  # an advisory lock key of the ledger's own ("LEDGER" + 1)


class SchemaNotCurrent(RuntimeError):
    pass


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _run(store: ReadStore, action: str, revision: str) -> None:
    # Alembic narrates every plugin and step at INFO (some at import); callers report the
    # outcome themselves.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from alembic import command

    config = alembic_config()
    with store.writer.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Processes started together on a new database would each create the schema
            # (a unique violation on alembic_version): one migrates, the others then find it
            # at head. Held to the end of this transaction.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = conn
        getattr(command, action)(config, revision)


def upgrade(store: ReadStore, revision: str = "head") -> None:
    _run(store, "upgrade", revision)


def downgrade(store: ReadStore, revision: str) -> None:
    _run(store, "downgrade", revision)


def current_revision(store: ReadStore) -> str | None:
    try:
        with store.reader.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:
        return None  # no version table yet


def ensure_schema(store: ReadStore, *, upgrade_older: bool) -> None:
    """Bring the schema to HEAD: an empty database always (nothing to protect there); one at an
    older revision only when `upgrade_older`, else refuse with the command that migrates it."""
    current = current_revision(store)
    if current == HEAD:
        return
    if current is not None and current > HEAD:  # revisions are zero-padded numbers
        raise SchemaNotCurrent(
            f"read-model schema is at revision {current!r}, newer than this code's {HEAD!r}: "
            "run the ledger version that migrated it (a newer one), not this one"
        )
    if current is not None and not upgrade_older:
        raise SchemaNotCurrent(
            f"read-model schema is at revision {current!r}, this code needs {HEAD!r}: "
            "run `ledger db upgrade` (with the same LEDGER_DATABASE_URL), then start again"
        )
    _run(store, "upgrade", "head")
