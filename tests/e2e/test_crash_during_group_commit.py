"""`kill -9` of the real `ledger serve` while concurrent clients' requests are being written in
groups (ADR 0019), on each backend: nothing acknowledged is lost, nothing is recorded twice
when the clients retry everything after a restart."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import httpx

from tests.support.server import running_server

CLIENTS = 8
PER_CLIENT = 60
WINDOWS = ("crash-a", "crash-b")


def _event(client: int, n: int) -> tuple[str, dict[str, Any]]:
    window_id = WINDOWS[(client + n) % len(WINDOWS)]
    return window_id, {"event_type": "t", "event_id": f"c{client}-{n}", "payload": {"n": n}}


def _send_until_killed(url: str, client: int, acked: dict[str, tuple[str, int]]) -> None:
    """Single-event POSTs, one after another; what the server acknowledged is noted."""
    with httpx.Client(base_url=url, timeout=10.0) as http:
        for n in range(PER_CLIENT):
            window_id, body = _event(client, n)
            try:
                answer = http.post(f"/v1/windows/{window_id}/admissions", json={"events": [body]})
            except httpx.HTTPError:
                return  # the server is gone: this request may or may not have been recorded
            if answer.status_code == 200:
                (result,) = answer.json()["results"]
                acked[body["event_id"]] = (result["verdict"], result["offset"])


def test_nothing_acknowledged_is_lost_and_nothing_doubles_after_a_kill_during_group_commits(
    database_url: str, signing_key: str
) -> None:
    env = {"LEDGER_SIGNING_KEY": signing_key, "LEDGER_GROUP_COMMIT_MS": "5"}
    acked: dict[str, tuple[str, int]] = {}
    with running_server(database_url, extra_env=env) as server:
        clients = [
            threading.Thread(target=_send_until_killed, args=(server.url, c, acked))
            for c in range(CLIENTS)
        ]
        for t in clients:
            t.start()
        deadline = time.monotonic() + 30
        while len(acked) < CLIENTS * PER_CLIENT // 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.process.send_signal(signal.SIGKILL)  # mid-stream: groups are being written
        for t in clients:
            t.join(timeout=30)
    assert 0 < len(acked) < CLIENTS * PER_CLIENT, "the kill came before or after the load"
    assert {verdict for verdict, _ in acked.values()} == {"ADMITTED"}

    # Restarted, every client sends everything again (what at-least-once producers do).
    with (
        running_server(database_url, extra_env=env) as server,
        httpx.Client(base_url=server.url, timeout=30.0) as http,
    ):
        again: dict[str, tuple[str, int]] = {}
        for client in range(CLIENTS):
            for n in range(PER_CLIENT):
                window_id, body = _event(client, n)
                answer = http.post(f"/v1/windows/{window_id}/admissions", json={"events": [body]})
                assert answer.status_code == 200, answer.text
                (result,) = answer.json()["results"]
                again[body["event_id"]] = (result["verdict"], result["offset"])
        histories = {
            w: http.get(f"/v1/windows/{w}/history", params={"limit": 1000}).json()["items"]
            for w in WINDOWS
        }
        verified = {w: http.get(f"/v1/windows/{w}/verify").json() for w in WINDOWS}

    # Every acknowledged admission is there, at the offset it was acknowledged with.
    for event_id, (_, offset) in acked.items():
        assert again[event_id] == ("DUPLICATE", offset), event_id
    # What was never acknowledged is admitted now, or was recorded before the kill: once.
    assert {verdict for verdict, _ in again.values()} <= {"ADMITTED", "DUPLICATE"}
    admitted = [
        item["fields"]["event_id"]
        for w in WINDOWS
        for item in histories[w]
        if item["type"] == "EventAdmitted"
    ]
    assert sorted(admitted) == sorted(again), "an event missing or recorded twice"
    for w in WINDOWS:
        offsets = [i["fields"]["offset"] for i in histories[w] if i["type"] == "EventAdmitted"]
        assert offsets == list(range(1, len(offsets) + 1)), "offsets with a gap or a repeat"
        assert verified[w]["ok"] is True
