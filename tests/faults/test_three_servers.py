"""Three `ledger serve` processes started at once on one new PostgreSQL database, eight producers
sending overlapping batches to any of them (issue 11): each identity is admitted once, every
answer for it carries the same offset, and the history, receipts and chain hold
(tests/support/invariants.py)."""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx
import pytest

from service.composition import Services, build_services
from service.settings import Settings
from tests.support.builders import event
from tests.support.invariants import window_problems
from tests.support.server import RunningServer, running_server

SERVERS = 3
PRODUCERS = 8
REQUESTS = 40  # per producer
WINDOWS = [f"w.three-{i}" for i in range(4)]
IDS = 150  # per window: repeats are frequent


@pytest.fixture
def servers(postgres_url: str) -> Iterator[list[RunningServer]]:
    """Started together, on a database none of them has seen: they race to make its schema."""
    with ExitStack() as stack, ThreadPoolExecutor(SERVERS) as pool:
        starting = [
            pool.submit(lambda: stack.enter_context(running_server(postgres_url)))
            for _ in range(SERVERS)
        ]
        yield [s.result() for s in starting]


def produce(urls: list[str], seed: int, seen: dict[str, set[int]], lock: threading.Lock) -> None:
    rng = random.Random(seed)
    clients = [httpx.Client(base_url=url, timeout=60.0) for url in urls]
    try:
        for _ in range(REQUESTS):
            window = rng.choice(WINDOWS)
            items = [event(f"e{rng.randrange(IDS)}") for _ in range(5)]
            answer = rng.choice(clients).post(
                f"/v1/windows/{window}/admissions", json={"events": items}
            )
            assert answer.status_code == 200, answer.text
            with lock:
                for result in answer.json()["results"]:
                    assert result["verdict"] in ("ADMITTED", "DUPLICATE"), result
                    seen[result["identity"]].add(result["offset"])
    finally:
        for client in clients:
            client.close()


def test_three_servers_and_eight_producers_admit_each_identity_once_at_one_offset(
    servers: list[RunningServer], postgres_url: str, signing_key: str
) -> None:
    seen: dict[str, set[int]] = defaultdict(set)
    lock = threading.Lock()
    urls = [s.url for s in servers]
    with ThreadPoolExecutor(PRODUCERS) as pool:
        for outcome in [pool.submit(produce, urls, seed, seen, lock) for seed in range(PRODUCERS)]:
            outcome.result()

    assert all(len(offsets) == 1 for offsets in seen.values()), "an identity got two offsets"
    reader: Services = build_services(Settings(database_url=postgres_url, signing_key=signing_key))
    try:
        acknowledged: dict[str, int | None] = {i: next(iter(o)) for i, o in seen.items()}
        admitted = 0
        for window in WINDOWS:
            history = list(reader.ledger.iter_history(window))
            mine = {h["fields"]["identity"] for h in history if h["type"] == "EventAdmitted"}
            admitted += len(mine)
            ack = {i: o for i, o in acknowledged.items() if i in mine}
            assert window_problems(reader, window, ack) == []
        assert admitted == len(seen)  # every acknowledged identity, and no other
    finally:
        reader.close()
