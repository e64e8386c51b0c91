"""The app as `ledger serve` starts it (`api.app:serve_app`, ADR 0031): a process of its own,
whose start-up objects are frozen out of the cycle collector while it serves, and that serves
the contract exactly as the app the other tests drive."""

from __future__ import annotations

import gc

import pytest
from litestar.testing import TestClient

from api.app import serve_app
from service.settings import Settings
from tests.support.builders import event
from tests.support.http import admit


@pytest.fixture
def unfrozen() -> None:
    # A test that failed half-way must not leave the rest of the run frozen.
    assert gc.get_freeze_count() == 0, "a test left objects frozen"


def test_the_served_app_freezes_what_start_up_made_and_unfreezes_it_at_stop(
    migrated: Settings, monkeypatch: pytest.MonkeyPatch, unfrozen: None
) -> None:
    monkeypatch.setenv("LEDGER_DATABASE_URL", migrated.database_url)
    monkeypatch.setenv("LEDGER_SIGNING_KEY", migrated.signing_key)
    app = serve_app()
    try:
        with TestClient(app, raise_server_exceptions=False, timeout=60.0) as client:
            frozen = gc.get_freeze_count()
            # The modules, the app and the services: tens of thousands of objects.
            assert frozen > 10_000
            answer = admit(client, "w", event("a"), event("a"), event("b"))
            verdicts = [r["verdict"] for r in answer["results"]]
            assert verdicts == ["ADMITTED", "DUPLICATE", "ADMITTED"]
            # What requests make stays collectable: nothing is frozen after start-up (frozen
            # objects freed by reference counting leave the count).
            assert gc.get_freeze_count() <= frozen
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


def test_an_app_made_for_tests_freezes_nothing(migrated: Settings, unfrozen: None) -> None:
    from api.app import create_app

    with TestClient(create_app(migrated), raise_server_exceptions=False) as client:
        assert admit(client, "w", event("a"))["results"][0]["verdict"] == "ADMITTED"
        assert gc.get_freeze_count() == 0
