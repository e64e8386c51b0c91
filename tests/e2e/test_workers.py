"""`ledger serve --workers 2`: several processes on one database judge racing clients exactly as
one process judging them one after the other would, one of them leads the read side, and a
SIGTERM to the parent stops them all.

Which of two racing requests wins is not fixed, so outcomes are compared per identity: exactly
one ADMITTED, every other send of the admitted payload DUPLICATE, every send of another payload
QUARANTINED; a serial run of the same requests gives exactly that with its own winner (the first
sent), and the same outcome set where the winners agree."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.settings import Settings
from tests.support.builders import event
from tests.support.cli import stop_process
from tests.support.http import admit, close, follow_pages, history, in_process
from tests.support.server import SERVE, STOP_TIMEOUT_SECONDS, RunningServer, running_server
from tests.support.services import wait_until

WORKERS = 2
CLIENTS = 8
COPIES = 3  # each identity's first payload is sent this many times, by different clients
IDENTITIES = 48  # per test, spread over its windows
CHANGED_EVERY = 4  # every 4th identity is also sent once with a changed payload
RETRIES = 20  # a 503 (contention: nothing was recorded) is sent again, as a producer would
TAKEOVER_SECONDS = 30.0


@pytest.fixture
def workers(migrated: Settings) -> Iterator[RunningServer]:
    """`ledger serve --workers 2` on this test's own database."""
    with running_server(
        migrated.database_url,
        command=[*SERVE, "--workers", str(WORKERS)],
        extra_env={"LEDGER_SIGNING_KEY": migrated.signing_key},
        start_timeout=60.0,
    ) as running:
        try:
            wait_until(lambda: len(worker_pids(running)) == WORKERS, 60, "every worker to start")
        except AssertionError as gave_up:
            raise AssertionError(f"{gave_up}; stderr:\n{running.stderr()}") from None
        yield running


def worker_pids(server: RunningServer) -> dict[int, str]:
    """Each live worker's pid, with what it said at start: 'leads' or 'serves' (the latest line).
    A worker that died (killed by a test, or by uvicorn's supervisor when it did not answer its
    health check in time) and its replacement are told apart by pid."""
    said: dict[int, str] = {}
    for pid, role in re.findall(r"ledger: process (\d+) (leads|serves)", server.stderr()):
        said[int(pid)] = role
    return {pid: role for pid, role in said.items() if is_child_alive(pid, server.process.pid)}


def is_child_alive(pid: int, parent: int) -> bool:
    """`pid` runs (not a zombie) and is a child of `parent` (so not a reused pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    return state != "Z" and int(ppid) == parent


def leaders(server: RunningServer) -> list[int]:
    return [pid for pid, role in worker_pids(server).items() if role == "leads"]


# --- the workload -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    window: str
    event_id: str
    variant: str  # "first" or "changed"

    def body(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"id": self.event_id}
        if self.variant == "changed":
            payload["amount"] = 999
        return event(self.event_id, payload)


@dataclass
class Outcomes:
    verdicts: dict[tuple[str, str], list[tuple[str, str]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    hashes: dict[tuple[str, str, str], str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, sends: list[Send], answer: dict[str, Any]) -> None:
        with self.lock:
            for send, result in zip(sends, answer["results"], strict=True):
                assert result["event_id"] == send.event_id, (send, result)
                self.verdicts[(send.window, send.event_id)].append(
                    (send.variant, result["verdict"])
                )
                self.hashes[(send.window, send.event_id, send.variant)] = result["payload_hash"]

    def winner(self, key: tuple[str, str]) -> str:
        admitted = [variant for variant, verdict in self.verdicts[key] if verdict == "ADMITTED"]
        assert len(admitted) == 1, (key, self.verdicts[key])
        return admitted[0]

    def per_window(self, window: str) -> Counter[str]:
        return Counter(
            verdict
            for (w, _), outcomes in self.verdicts.items()
            if w == window
            for _, verdict in outcomes
        )


def plan(windows: list[str]) -> list[list[list[Send]]]:
    """The requests of each client. Every identity's first payload goes out COPIES times, each
    copy from another pair of clients, all in the same order, so the copies of one identity are
    in flight at about the same moment; every CHANGED_EVERY-th identity also goes out once with
    another payload, in a copy of its own. Requests hold 1 to 4 events, never one identity
    twice."""
    identities = [(windows[n % len(windows)], f"e{n:03d}") for n in range(IDENTITIES)]
    copies: list[list[Send]] = [[Send(w, e, "first") for w, e in identities] for _ in range(COPIES)]
    copies.append(
        [Send(w, e, "changed") for n, (w, e) in enumerate(identities) if n % CHANGED_EVERY == 0]
    )
    clients: list[list[list[Send]]] = [[] for _ in range(CLIENTS)]
    pairs = CLIENTS // len(copies)
    for c, copy in enumerate(copies):
        at, size = 0, 1 + c % 4
        k = 0
        while at < len(copy):
            # One request: events of one window, at most `size` of them.
            chunk = [s for s in copy[at : at + size] if s.window == copy[at].window]
            clients[c * pairs + k % pairs].append(chunk)
            at += len(chunk)
            k += 1
            size = size % 4 + 1
    return clients


def send(client: httpx.Client, sends: list[Send], outcomes: Outcomes) -> None:
    path = f"/v1/windows/{sends[0].window}/admissions"
    for _ in range(RETRIES):
        response = client.post(path, json={"events": [s.body() for s in sends]})
        if response.status_code != 503:
            break
        time.sleep(0.05)
    assert response.status_code == 200, response.text
    outcomes.record(sends, response.json())


def run_concurrently(url: str, clients: list[list[list[Send]]]) -> Outcomes:
    outcomes = Outcomes()
    start = threading.Barrier(len(clients))
    failures: list[BaseException] = []

    def client_run(requests: list[list[Send]]) -> None:
        try:
            with httpx.Client(base_url=url, timeout=60.0) as client:
                start.wait()
                for sends in requests:
                    send(client, sends, outcomes)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=client_run, args=(r,)) for r in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not failures, failures
    return outcomes


def run_serially(url: str, clients: list[list[list[Send]]], rename: dict[str, str]) -> Outcomes:
    """The same requests one after the other (copy by copy), on windows of their own."""
    outcomes = Outcomes()
    with httpx.Client(base_url=url, timeout=60.0) as client:
        for requests in clients:
            for sends in requests:
                send(
                    client, [Send(rename[s.window], s.event_id, s.variant) for s in sends], outcomes
                )
    return outcomes


def expected(outcomes: list[tuple[str, str]], winner: str) -> Counter[tuple[str, str]]:
    """What a serial run gives an identity whose `winner` payload was admitted."""
    sent = Counter(variant for variant, _ in outcomes)
    want: Counter[tuple[str, str]] = Counter({(winner, "ADMITTED"): 1})
    for variant, n in sent.items():
        if variant == winner:
            if n > 1:
                want[(variant, "DUPLICATE")] = n - 1
        else:
            want[(variant, "QUARANTINED")] = n
    return want


# --- the tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spread", [1, 3], ids=["one window", "three windows"])
def test_two_workers_give_racing_clients_the_verdicts_and_admitted_set_of_a_serial_run(
    workers: RunningServer, spread: int
) -> None:
    windows = [f"race-{n}" for n in range(spread)]
    requests = plan(windows)
    concurrent = run_concurrently(workers.url, requests)
    serial = run_serially(workers.url, requests, {w: f"serial-{w}" for w in windows})

    assert len(concurrent.verdicts) == IDENTITIES
    for (window, event_id), outcomes in concurrent.verdicts.items():
        winner = concurrent.winner((window, event_id))  # exactly one ADMITTED
        assert Counter(outcomes) == expected(outcomes, winner), (window, event_id, outcomes)
        mine = serial.verdicts[(f"serial-{window}", event_id)]
        assert serial.winner((f"serial-{window}", event_id)) == "first"  # the first sent
        assert Counter(mine) == expected(mine, "first")
        if winner == "first":
            assert Counter(outcomes) == Counter(mine), (window, event_id)

    with httpx.Client(base_url=workers.url, timeout=60.0) as api:
        for window in windows:
            receipt = close(api, window)
            assert receipt["gate"] == "PASS", receipt
            counts = concurrent.per_window(window)
            assert receipt["counts"]["admitted"] == counts["ADMITTED"]
            assert receipt["counts"]["duplicates"] == counts["DUPLICATE"]
            assert receipt["counts"]["quarantined"] == counts["QUARANTINED"]
            assert receipt["counts"]["publish_unknown"] == 0

            stored = Counter(
                item["fields"]["event_id"]
                for item in history(api, window)
                if item["type"] == "EventAdmitted"
            )
            mine = {e for (w, e) in concurrent.verdicts if w == window}
            assert stored == Counter(mine)  # each identity's EventAdmitted once

            admitted, _ = follow_pages(api, f"/v1/windows/{window}/admitted", limit=1000)
            assert {(a["event_id"], a["payload_hash"]) for a in admitted} == {
                (e, concurrent.hashes[(window, e, concurrent.winner((window, e)))]) for e in mine
            }
    # Whichever worker a new connection reaches reads PASS.
    for _ in range(4 * WORKERS):
        with httpx.Client(base_url=workers.url, timeout=60.0) as fresh:
            for window in windows:
                assert fresh.get(f"/v1/windows/{window}/gate").json()["status"] == "PASS"


def test_one_worker_leads_and_another_takes_over_when_the_leader_is_killed(
    workers: RunningServer,
) -> None:
    (leader,) = leaders(workers)
    with httpx.Client(base_url=workers.url, timeout=60.0) as api:
        admit(api, "before", event("a"))
    os.kill(leader, signal.SIGKILL)
    wait_until(
        lambda: [pid for pid in leaders(workers) if pid != leader] != [],
        TAKEOVER_SECONDS,
        "another worker to take the leader lock",
    )
    with httpx.Client(base_url=workers.url, timeout=60.0) as api:
        admit(api, "after", event("b"))
        for window in ("before", "after"):
            assert close(api, window)["gate"] == "PASS"


def test_sigterm_to_the_parent_stops_every_worker_and_exits_0(workers: RunningServer) -> None:
    pids = list(worker_pids(workers))
    with httpx.Client(base_url=workers.url, timeout=60.0) as api:
        admit(api, "w", event("a"))
    code = stop_process(workers.process, signal.SIGTERM, timeout=STOP_TIMEOUT_SECONDS)
    output = workers.stderr()
    assert code == 0, f"exit {code}; stderr:\n{output}"
    assert "Traceback" not in output, output
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_process_that_does_not_lead_closes_a_window_and_reads_pass_from_the_leaders_work(
    migrated: Settings,
) -> None:
    with in_process(migrated) as leader, in_process(migrated) as other:
        admit(other, "w", event("a"), event("b"))
        admit(leader, "w", event("a"), event("c"))
        receipt = close(other, "w")
        assert receipt["gate"] == "PASS", receipt
        assert receipt["counts"]["admitted"] == 3
        assert other.get("/v1/windows/w/gate").json()["status"] == "PASS"
