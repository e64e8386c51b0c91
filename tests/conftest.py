from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ledger.admissions import Admission, AdmissionIn, prepare
from ledger.application import Ledger
from ledger.ports import Publisher
from projections.migrate import upgrade
from projections.store import create_read_store
from service.composition import Services, build_ledger, build_services
from service.settings import Settings
from tests.support.services import missing_service, postgres_available, throwaway_database

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test runs once per backend, on storage of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    reason = postgres_available()
    if reason:
        missing_service(reason)
    with throwaway_database() as url:
        yield url


@pytest.fixture
def backend(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgres"


@pytest.fixture
def make_ledger(database_url: str) -> Iterator[Callable[..., Ledger]]:
    made: list[Ledger] = []

    def make(publisher: Publisher | None = None) -> Ledger:
        app = build_ledger(Settings(database_url=database_url), publisher)
        made.append(app)
        return app

    yield make
    for app in made:
        app.close()


@pytest.fixture
def ledger(make_ledger: Callable[..., Ledger]) -> Ledger:
    return make_ledger()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url)


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    """The database with the read-model schema at head (what `ledger db upgrade` does)."""
    store = create_read_store(settings.database_url)
    try:
        upgrade(store)
    finally:
        store.dispose()
    return settings


@pytest.fixture
def make_services(migrated: Settings) -> Iterator[Callable[..., Services]]:
    """Write side + read side + runner, built by the same composition root as the CLI/API.
    The runner does not follow unless a test calls `start_following()`; `catch_up()` applies."""
    made: list[Services] = []

    def make(publisher: Publisher | None = None) -> Services:
        services = build_services(migrated, publisher)
        made.append(services)
        return services

    yield make
    for services in made:
        services.close()


@pytest.fixture
def services(make_services: Callable[..., Services]) -> Services:
    return make_services()


def batch(window_id: str, *items: dict[str, Any]) -> list[Admission]:
    """Admissions from plain dicts, validated the way every entry point validates them."""
    return prepare(window_id, [msgspec.convert(item, AdmissionIn) for item in items])


def event(event_id: str, payload: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body = payload if payload is not None else {"id": event_id}
    return {"event_type": "order.created", "event_id": event_id, "payload": body, **extra}
