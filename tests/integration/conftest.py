"""The write side and the read side built by the composition root, on the test's database; all
closed at teardown, whatever the test did."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from ledger.application import Ledger
from ledger.ports import Publisher
from service.composition import Services, build_ledger, build_services
from service.settings import Settings


def closed_at_teardown(build: Callable[[Publisher | None], Any]) -> Iterator[Callable[..., Any]]:
    """A factory fixture's body: `make(publisher=None)` builds one more; teardown closes all."""
    with ExitStack() as made:

        def make(publisher: Publisher | None = None) -> Any:
            built = build(publisher)
            made.callback(built.close)
            return built

        yield make


@pytest.fixture
def make_ledger(database_url: str) -> Iterator[Callable[..., Ledger]]:
    settings = Settings(database_url=database_url)
    yield from closed_at_teardown(lambda publisher: build_ledger(settings, publisher))


@pytest.fixture
def ledger(make_ledger: Callable[..., Ledger]) -> Ledger:
    return make_ledger()


@pytest.fixture
def make_services(migrated: Settings) -> Iterator[Callable[..., Services]]:
    """Write side + read side + runner, built by the same composition root as the CLI/API.
    The runner does not follow unless a test calls `start_following()`; `catch_up()` applies."""
    yield from closed_at_teardown(lambda publisher: build_services(migrated, publisher))


@pytest.fixture
def services(make_services: Callable[..., Services]) -> Services:
    return make_services()
