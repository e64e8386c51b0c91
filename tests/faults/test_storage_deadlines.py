"""While storage is stuck, requests answer 503 within their deadline and record nothing
(issue 11, finding 4; ADR 0027).

Another session holding `LOCK TABLE ledger_events IN EXCLUSIVE MODE` stands in for every way
the event store stops taking writes while its connections stay up (a stuck writer, a
database that hangs): admissions used to wait for it for ever or up to the lock timeout (30 s)
times the retries. Now the writer gives up within the request's deadline, requests still
queued are withdrawn at it, and each answers 503 `storage_unavailable` with `Retry-After`.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from ledger.errors import StorageUnavailable
from service.composition import Services, build_services
from service.settings import Settings
from tests.support.builders import batch, event
from tests.support.http import in_process

DEADLINE = 2.0
CLIENTS = 4


@pytest.fixture
def stuck_settings(postgres_url: str, signing_key: str) -> Settings:
    return Settings(
        database_url=postgres_url, signing_key=signing_key, request_timeout_seconds=DEADLINE
    )


@pytest.fixture
def services(stuck_settings: Settings) -> Iterator[Services]:
    built = build_services(stuck_settings)
    yield built
    built.close()


@pytest.fixture
def table_lock(postgres_url: str, services: Services) -> Iterator[psycopg.Connection]:
    """Another session holding the event store's lock until the test lets go."""
    services.ledger.admit("w.before", batch("w.before", event("e0")))  # the tables exist
    with psycopg.connect(postgres_url) as conn:
        conn.execute("LOCK TABLE ledger_events IN EXCLUSIVE MODE")
        yield conn
        conn.rollback()


def test_admissions_behind_a_stuck_writer_answer_503_within_the_deadline_and_record_nothing(
    services: Services, table_lock: psycopg.Connection
) -> None:
    answers: dict[int, BaseException | object] = {}
    took: dict[int, float] = {}

    def admit(i: int) -> None:
        window = f"w.stuck-{i}"
        started = time.monotonic()
        try:
            answers[i] = services.admit(window, batch(window, event(f"e{i}")))
        except BaseException as exc:  # asserted below
            answers[i] = exc
        took[i] = time.monotonic() - started

    clients = [threading.Thread(target=admit, args=(i,)) for i in range(CLIENTS)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(DEADLINE * 5)

    assert all(isinstance(a, StorageUnavailable) for a in answers.values()), answers
    assert len(answers) == CLIENTS
    assert max(took.values()) < DEADLINE + 1, took
    table_lock.rollback()  # the database takes writes again
    for i in range(CLIENTS):
        assert not services.ledger.has_window(f"w.stuck-{i}")  # nothing was recorded
    window = "w.stuck-0"
    assert services.admit(window, batch(window, event("e0")))[0].verdict.value == "ADMITTED"


def test_the_api_answers_503_storage_unavailable_with_retry_after_while_the_writer_is_stuck(
    stuck_settings: Settings, services: Services, table_lock: psycopg.Connection
) -> None:
    with in_process(dataclasses.replace(stuck_settings), services) as client:
        started = time.monotonic()
        answer = client.post(
            "/v1/windows/w.api-stuck/admissions",
            json={"events": [event("e1")]},
        )
        took = time.monotonic() - started
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "storage_unavailable"
        assert "nothing was recorded" in answer.json()["detail"]
        assert answer.headers["Retry-After"] == "1"
        assert took < DEADLINE + 1
        table_lock.rollback()
        again = client.post("/v1/windows/w.api-stuck/admissions", json={"events": [event("e1")]})
        assert again.status_code == 200, again.text
        assert again.json()["results"][0]["verdict"] == "ADMITTED"


def test_a_write_side_session_is_bounded_by_idle_and_statement_timeouts(
    services: Services,
) -> None:
    """A session stuck in its transaction or in one statement cannot hold the event store's
    lock for ever: the server ends it (ADR 0026)."""
    window = "w.bounded-session"
    services.admit(window, batch(window, event("e1")))
    recorder = services.ledger.recorder
    with recorder._connection() as conn:  # type: ignore[attr-defined]
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()[name]
            for name in ("idle_in_transaction_session_timeout", "statement_timeout")
        }
    assert settings == {"idle_in_transaction_session_timeout": "15s", "statement_timeout": "2min"}
