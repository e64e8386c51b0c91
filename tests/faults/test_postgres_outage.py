"""A PostgreSQL outage under load: bounded answers, honest 503s, recovery without a restart
(issue 11, finding 4; ADR 0027). The database is a cluster of the test's own
(tests/support/pgcluster.py), never the shared one.

Producers keep admitting single events while the database is stopped for OUTAGE seconds and
started again. Every request answers within the deadline plus 1 s; what fails is 503
`storage_unavailable`; the first admission succeeds within 5 s of the database's return, with
no restart of the service; afterwards every acknowledged event is in its window's history
exactly once, and each refused one, sent again, is admitted then (it had recorded nothing),
except a request in flight at the moment the database stopped, whose commit may have landed
with its answer lost: its retry answers DUPLICATE.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from ledger.errors import StorageUnavailable
from service.composition import Services, build_services
from service.settings import Settings
from tests.support.builders import batch, event
from tests.support.invariants import window_problems
from tests.support.pgcluster import PostgresCluster, database_url_on

DEADLINE = 4.0
OUTAGE = float(os.environ.get("LEDGER_TEST_OUTAGE_SECONDS", "60"))
PAUSE = float(os.environ.get("LEDGER_TEST_PAUSE_SECONDS", "15"))
PRODUCERS = 4
RECOVERY_BOUND = 5.0


@dataclass
class Producer:
    window: str
    acknowledged: dict[str, int | None] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    refused_at: list[float] = field(default_factory=list)
    other: list[BaseException] = field(default_factory=list)
    slowest: float = 0.0
    slow: int = 0  # answers later than the deadline plus 1 s
    successes_at: list[float] = field(default_factory=list)


@pytest.fixture
def outage_services(own_postgres: PostgresCluster, signing_key: str) -> Iterator[Services]:
    settings = Settings(
        database_url=database_url_on(own_postgres),
        signing_key=signing_key,
        request_timeout_seconds=DEADLINE,
    )
    built = build_services(settings)
    yield built
    built.close()


def produce(services: Services, producer: Producer, stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        event_id = f"e{n}"
        n += 1
        started = time.monotonic()
        try:
            [result] = services.admit(producer.window, batch(producer.window, event(event_id)))
            producer.acknowledged[result.identity] = result.offset
            producer.successes_at.append(time.monotonic())
        except StorageUnavailable:
            producer.refused.append(event_id)
            producer.refused_at.append(started)
            time.sleep(0.2)  # a client honouring Retry-After, a little sooner
        except BaseException as exc:  # asserted: there must be none
            producer.other.append(exc)
        took = time.monotonic() - started
        producer.slowest = max(producer.slowest, took)
        producer.slow += took > DEADLINE + 1


@pytest.mark.parametrize("fault", ["stopped", "paused"])
def test_a_postgres_outage_under_load_answers_503_in_time_and_recovers_within_5_s(
    outage_services: Services,
    own_postgres: PostgresCluster,
    fault: str,
) -> None:
    """Stopped: connections are refused (OUTAGE s). Paused (SIGSTOP, PAUSE s): the server
    holds every socket and answers nothing, the harder case for timeouts."""
    services = outage_services
    producers = [Producer(f"w.outage-{i}") for i in range(PRODUCERS)]
    stop = threading.Event()
    threads = [
        threading.Thread(target=produce, args=(services, p, stop), daemon=True) for p in producers
    ]
    for thread in threads:
        thread.start()
    time.sleep(2)
    if fault == "stopped":
        own_postgres.stop("fast")
    else:
        own_postgres.pause()
    down_at = time.monotonic()
    time.sleep(OUTAGE if fault == "stopped" else PAUSE)
    if fault == "stopped":
        own_postgres.start()
    else:
        own_postgres.resume()
    back_at = time.monotonic()
    time.sleep(RECOVERY_BOUND + 3)
    stop.set()
    for thread in threads:
        thread.join(DEADLINE * 4)

    assert [p.other for p in producers] == [[]] * PRODUCERS
    if fault == "stopped":
        assert max(p.slowest for p in producers) < DEADLINE + 1
    else:
        # A write already sent to the hung server (its COMMIT included: the stream is
        # pipelined) may commit when the server wakes: answering 503 before then would be a
        # guess, so that one request waits for the truth. Every other answers in time.
        assert max(p.slow for p in producers) <= 1
        assert max(p.slowest for p in producers) < PAUSE + DEADLINE + 1
    assert all(p.refused or p.slow for p in producers), "the outage was not felt"
    during = [t for p in producers for t in p.successes_at if down_at + 1 < t < back_at]
    assert during == [], "admitted while the database was down"
    first_after = min(t for p in producers for t in p.successes_at if t > back_at)
    assert first_after - back_at < RECOVERY_BOUND, f"first success {first_after - back_at:.1f} s"

    for p in producers:
        # Each identity once, every acknowledged one at its offset, receipt = history, chain.
        assert window_problems(services, p.window, p.acknowledged) == []
        if not p.refused:
            continue
        again = services.admit(p.window, batch(p.window, *(event(e) for e in p.refused)))
        started = dict(zip(p.refused, p.refused_at, strict=True))
        for result in again:
            if result.verdict.value == "DUPLICATE":
                # Only a request in flight when the database went away: its COMMIT reached
                # the server, the answer did not (ADR 0027). The retry is safe all the same.
                assert started[result.event_id] > down_at - DEADLINE, result
                assert started[result.event_id] < down_at + 1, result
            else:
                assert result.verdict.value == "ADMITTED", result  # it had recorded nothing
