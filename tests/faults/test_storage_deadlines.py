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
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from ledger.errors import StorageUnavailable
from service.composition import Services, build_ledger, build_services
from service.settings import Settings
from tests.support.builders import batch, event
from tests.support.http import in_process
from tests.support.server import running_server
from tests.support.services import HOST

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


def test_a_queued_admission_whose_client_leaves_is_never_written(
    postgres_url: str,
) -> None:
    """Behind a stuck writer, a client gives up and closes its connection: its request, still
    queued, is withdrawn then, not written once the writer is free (ADR 0027)."""
    env = {"LEDGER_REQUEST_TIMEOUT_SECONDS": "8"}
    with (
        running_server(postgres_url, extra_env=env) as server,
        httpx.Client(base_url=server.url, timeout=30.0) as client,
    ):
        warm = client.post("/v1/windows/w.warm/admissions", json={"events": [event("e0")]})
        assert warm.status_code == 200, warm.text
        first: dict[str, httpx.Response] = {}
        with psycopg.connect(postgres_url) as lock:
            lock.execute("LOCK TABLE ledger_events IN EXCLUSIVE MODE")
            writing = threading.Thread(
                target=lambda: first.update(
                    answer=client.post(
                        "/v1/windows/w.first/admissions", json={"events": [event("a")]}
                    )
                )
            )
            writing.start()
            time.sleep(0.3)  # the writer has taken it and waits for the lock
            body = json.dumps({"events": [event("gone")]}).encode()
            port = int(server.url.rsplit(":", 1)[1])
            with socket.create_connection((HOST, port)) as leaving:
                leaving.sendall(
                    b"POST /v1/windows/w.gone/admissions HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                time.sleep(0.5)  # queued behind the first; then its client leaves
            time.sleep(0.5)
            lock.rollback()  # the writer is free again
        writing.join(30)
        assert first["answer"].status_code == 200, first["answer"].text
        time.sleep(1.0)  # long enough for the writer to have written it, had it stayed
    reader = build_ledger(Settings(database_url=postgres_url))
    try:
        assert reader.has_window("w.first")
        assert not reader.has_window("w.gone")  # withdrawn when its client left
    finally:
        reader.close()
