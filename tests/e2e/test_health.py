"""`/health` and `/metrics` (issue 11; ADR 0024), through the app `ledger serve` serves.

With LEDGER_API_TOKENS set, `/metrics` needs the `read` scope and `/health` tells an anonymous
caller its status alone; a `read` token gets the storage and the bus, by kind, never where
they are. `/health` answers in bounded time while writers queue on the event store's table lock
and holds every pooled connection, and answers 503 when the storage does not answer.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from litestar.testing import TestClient

from service.composition import build_services
from service.settings import Settings
from tests.support.builders import event
from tests.support.http import TOKENS, UNKNOWN_TOKEN, admit, as_token, assert_error, in_process
from tests.support.nats import AnyNats, release_event_loop, unique_stream
from tests.support.services import ADMIN_URL, one_row, wait_until

# A liveness bound, not a benchmark: the checks give up after 0.8 s.
ANSWER_WITHIN_SECONDS = 2.0
# More writers than the event store's pool has connections (4 + 8 overflow), and than the
# threads the sync handlers run in (the event loop's executor: 5 to 32, by cores).
QUEUED_WRITERS = 16
# Queued on the lock, at least: every sync handler thread busy on a machine of one core.
SURELY_QUEUED = 4


@pytest.fixture
def secured(migrated: Settings) -> Iterator[TestClient]:
    with in_process(dataclasses.replace(migrated, api_tokens=TOKENS)) as client:
        yield client


def where_it_lives(settings: Settings) -> list[str]:
    """Every text that would say where the storage and the bus are."""
    if settings.is_sqlite:
        path = settings.sqlite_path.resolve()
        texts = [str(path), path.name, "sqlite:///"]
    else:
        parts = urlsplit(settings.database_url)
        texts = [parts.hostname or "", parts.path.lstrip("/"), f":{parts.port or 5432}"]
        texts.append("postgresql://")
    return [*texts, "nats://", "host", "127.0.0.1", "localhost"]


def assert_tells_nothing_of_where(text: str, settings: Settings) -> None:
    for told in where_it_lives(settings):
        assert told not in text, (told, text)


def storage_kind(settings: Settings) -> str:
    return "sqlite" if settings.is_sqlite else "postgresql"


# --- who sees what --------------------------------------------------------------------------


def test_with_tokens_set_metrics_need_the_read_scope(secured):
    with as_token(secured, None) as anonymous:
        assert_error(anonymous.get("/metrics"), 401, "unauthorized")
    with as_token(secured, UNKNOWN_TOKEN) as unknown:
        assert_error(unknown.get("/metrics"), 401, "unauthorized")
    with as_token(secured, "admitter") as admitter:
        assert_error(admitter.get("/metrics"), 403, "forbidden")
    with as_token(secured, "reader-token") as reader:
        response = reader.get("/metrics")
        assert response.status_code == 200
        assert "ledger_admissions_total" in response.text


def test_with_tokens_set_an_anonymous_caller_learns_only_the_status(secured, migrated):
    for token in (None, UNKNOWN_TOKEN, "admitter"):
        with as_token(secured, token) as caller:
            response = caller.get("/health")
            assert response.status_code == 200, response.text
            assert response.json() == {"status": "ok"}
            assert_tells_nothing_of_where(response.text, migrated)


def test_a_read_token_gets_the_storage_and_the_bus_by_kind_and_never_where_they_are(
    secured, migrated
):
    with as_token(secured, "reader-token") as reader:
        response = reader.get("/health")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ok",
        "storage": {"ok": True, "kind": storage_kind(migrated)},
        "bus": {"ok": True, "kind": "embedded"},
    }
    assert_tells_nothing_of_where(response.text, migrated)


def test_without_tokens_everyone_gets_the_parts_and_never_where_they_are(migrated):
    with in_process(migrated) as api:
        response = api.get("/health")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "ok"
        assert body["storage"] == {"ok": True, "kind": storage_kind(migrated)}
        assert body["bus"] == {"ok": True, "kind": "embedded"}
        assert_tells_nothing_of_where(response.text, migrated)
        assert api.get("/metrics").status_code == 200


# --- bounded while writers wait on the table lock -------------------------------------------


def writers_waiting_on_a_lock(url: str) -> int:
    (waiting,) = one_row(
        url,
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    return int(waiting)


def test_health_answers_in_bounded_time_while_writers_queue_on_the_event_store_table_lock(
    postgres_url: str, signing_key: str
):
    settings = Settings(database_url=postgres_url, signing_key=signing_key, api_tokens=TOKENS)
    windows = [f"w{i}" for i in range(QUEUED_WRITERS)]
    with in_process(settings) as client, as_token(client, "admin-token") as admin:
        for window in windows:
            admit(admin, window, event("a"))
        closed: list[int] = []
        holder = psycopg.connect(postgres_url)
        try:
            holder.execute("LOCK TABLE ledger_events IN EXCLUSIVE MODE")
            closing = [
                threading.Thread(
                    target=lambda w=w: closed.append(
                        admin.post(f"/v1/windows/{w}/close").status_code
                    ),
                    daemon=True,
                )
                for w in windows
            ]
            for thread in closing:
                thread.start()
            # The handler threads, or the pooled connections of the event store, all wait on the
            # lock now (the first of the two ran out on the machine where this hung 87 s).
            wait_until(
                lambda: writers_waiting_on_a_lock(postgres_url) >= SURELY_QUEUED,
                30,
                "the closes to queue on the table lock",
            )
            answers: list[tuple[float, Any]] = []

            def ask() -> None:
                started = time.monotonic()
                with as_token(client, "reader-token") as reader:
                    response = reader.get("/health")
                answers.append((time.monotonic() - started, response))

            asking = threading.Thread(target=ask, daemon=True)
            asking.start()
            asking.join(timeout=10 * ANSWER_WITHIN_SECONDS)
            assert answers, "/health did not answer while the table lock was held"
            assert writers_waiting_on_a_lock(postgres_url) >= SURELY_QUEUED
        finally:
            holder.rollback()
            holder.close()
        for thread in closing:
            thread.join(timeout=60)
        elapsed, response = answers[0]
        assert elapsed < ANSWER_WITHIN_SECONDS, f"/health answered after {elapsed:.1f} s"
        # Its own connection, outside the writers' pool, with no table lock: the storage answers.
        assert response.status_code == 200, response.text
        assert response.json()["storage"] == {"ok": True, "kind": "postgresql"}
        assert closed == [200] * QUEUED_WRITERS


# --- storage down: 503 ----------------------------------------------------------------------


@contextmanager
def database_refusing_connections(database_url: str) -> Iterator[None]:
    """The database takes no new connection, and the health check's own one is ended, for the
    block (the service's pooled connections stay)."""
    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = 'ledger-health'",
                (name,),
            )
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def test_health_answers_503_unavailable_when_the_storage_does_not_answer(
    postgres_url: str, signing_key: str
):
    settings = Settings(database_url=postgres_url, signing_key=signing_key, api_tokens=TOKENS)
    with in_process(settings) as client, as_token(client, "reader-token") as reader:
        assert reader.get("/health").status_code == 200  # the check's connection is made
        with database_refusing_connections(postgres_url):
            detailed = reader.get("/health")
            with as_token(client, None) as anonymous:
                plain = anonymous.get("/health")
        assert plain.status_code == 503, plain.text
        assert plain.json() == {"status": "unavailable"}
        assert detailed.status_code == 503, detailed.text
        body = detailed.json()
        assert body["status"] == "unavailable"
        assert body["storage"]["ok"] is False
        assert body["storage"]["kind"] == "postgresql"
        assert body["bus"]["ok"] is False  # the embedded bus is the storage
        assert_tells_nothing_of_where(detailed.text, settings)
        assert reader.get("/health").json()["status"] == "ok"  # and back


# --- the bus: NATS --------------------------------------------------------------------------


@pytest.fixture
def secured_over_nats(
    migrated: Settings, nats_server: AnyNats
) -> Iterator[tuple[TestClient, AnyNats, Settings]]:
    nats_server.require_control()
    stream, prefix = unique_stream()
    settings = dataclasses.replace(
        migrated,
        api_tokens=TOKENS,
        publisher=nats_server.url,
        nats_stream=stream,
        nats_subject_prefix=prefix,
        nats_publish_timeout_seconds=0.5,
    )
    services = build_services(settings)
    try:
        with in_process(settings, services) as client:
            try:
                yield client, nats_server, settings
            finally:
                nats_server.cont()
    finally:
        release_event_loop(services)


def health_of(client: Any) -> tuple[int, dict[str, Any], str]:
    with as_token(client, "reader-token") as reader:
        response = reader.get("/health")
    return response.status_code, response.json(), response.text


def test_a_bus_that_does_not_answer_makes_health_degraded_not_unavailable(secured_over_nats):
    client, bus, settings = secured_over_nats
    deadline = time.monotonic() + 20
    code, body, _text = health_of(client)
    while body.get("bus", {}).get("ok") is not True and time.monotonic() < deadline:
        time.sleep(0.1)  # the first check connects, as the first publish would
        code, body, _text = health_of(client)
    assert (code, body["status"], body["bus"]) == (200, "ok", {"ok": True, "kind": "nats"})

    bus.stop()  # SIGSTOP: connected, but nothing answers
    started = time.monotonic()
    code, body, text = health_of(client)
    assert time.monotonic() - started < ANSWER_WITHIN_SECONDS
    assert code == 200, text
    assert body["status"] == "degraded"
    assert body["storage"]["ok"] is True
    assert body["bus"]["ok"] is False and body["bus"]["kind"] == "nats"
    assert_tells_nothing_of_where(text, settings)
    assert str(urlsplit(settings.publisher).port) not in text
    with as_token(client, None) as anonymous:
        plain = anonymous.get("/health")
    assert (plain.status_code, plain.json()) == (200, {"status": "degraded"})
