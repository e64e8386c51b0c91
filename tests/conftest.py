"""Fixtures every level shares: the storage a test runs on (once per backend), its settings, the
read-model schema, a PostgreSQL-only database and a nats-server of the test's own.

Helpers are not here but in tests/support/ (tests never import a conftest or a test module)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.infrastructure.signing import Ed25519Signer
from projections.migrate import upgrade
from projections.store import create_read_store
from service.settings import Settings
from tests.support.nats import nats_server  # noqa: F401  (the fixture, for every level)
from tests.support.natsledger import bus, make_nats_services, nats_services  # noqa: F401
from tests.support.pgcluster import own_postgres  # noqa: F401  (a cluster of the test's own)
from tests.support.services import postgres_database

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test runs once per backend, on storage of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    with postgres_database() as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL database, for a test about PostgreSQL alone."""
    with postgres_database() as url:
        yield url


@pytest.fixture
def backend(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgres"


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One receipt signing key for the run, outside the checkout (the service would otherwise
    make one under its data directory, ./ledger-data for PostgreSQL)."""
    path = tmp_path_factory.mktemp("keys") / "signing-key.pem"
    Ed25519Signer.load_or_create(path)
    return str(path)


@pytest.fixture
def settings(database_url: str, signing_key: str) -> Settings:
    return Settings(database_url=database_url, signing_key=signing_key)


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    """The database with the read-model schema at head (what `ledger db upgrade` does)."""
    store = create_read_store(settings.database_url)
    try:
        upgrade(store)
    finally:
        store.dispose()
    return settings
