"""`ledger serve` sends each answer's head and body in one write (ADR 0048): what a client sees
on the wire is unchanged. Raw sockets against the real process: answers to pipelined requests
come whole and in order, a HEAD answer (a head and no body) is not held back, and an answer
that closes the connection arrives before the close."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import RunningServer, running_server
from tests.support.services import HOST


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    path: Path = tmp_path_factory.mktemp("one-write") / "ledger.db"
    with running_server(f"sqlite:///{path}") as running:
        yield running


def connect(server: RunningServer) -> socket.socket:
    port = int(server.url.rsplit(":", 1)[1])
    return socket.create_connection((HOST, port), timeout=10)


class Answers:
    """HTTP/1.1 answers read off one socket, one after another."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _more(self) -> bytes:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return chunk

    def next(self, *, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            assert self._more(), f"closed without an answer: {self.buffer!r}"
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        size = 0 if head_only else int(headers.get("content-length", "0"))
        while len(self.buffer) < size:
            assert self._more(), "closed within an answer's body"
        body, self.buffer = self.buffer[:size], self.buffer[size:]
        return int(lines[0].split()[1]), headers, body


def admission(window_id: str, event_id: str, *, close: bool = False) -> bytes:
    body = json.dumps(
        {"events": [{"event_type": "t", "event_id": event_id, "payload": {"n": 1}}]}
    ).encode()
    connection = b"Connection: close\r\n" if close else b""
    return (
        f"POST /v1/windows/{window_id}/admissions HTTP/1.1\r\nHost: x\r\n".encode()
        + b"Content-Type: application/json\r\n"
        + connection
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def test_pipelined_requests_get_whole_answers_in_their_order(server):
    with connect(server) as sock:
        sock.sendall(
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
            + admission("one-write-a", "e1")
            + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        answers = Answers(sock)
        first, second, third = answers.next(), answers.next(), answers.next()
    assert first[0] == 200 and json.loads(first[2])["status"] == "ok"
    assert second[0] == 200
    assert [r["verdict"] for r in json.loads(second[2])["results"]] == ["ADMITTED"]
    assert third[0] == 200 and third[2] == first[2]


def test_a_head_answer_is_sent_without_waiting_for_a_body_and_the_connection_goes_on(server):
    with connect(server) as sock:
        answers = Answers(sock)
        sock.sendall(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _ = answers.next(head_only=True)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        after, _, body = answers.next()
    assert status == 405  # /health is GET only: a head (and its promised body, unread here)
    assert after == 200 and body


def test_an_answer_that_closes_the_connection_arrives_whole_before_the_close(server):
    with connect(server) as sock:
        sock.sendall(admission("one-write-b", "e1", close=True))
        answers = Answers(sock)
        status, headers, body = answers.next()
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
    assert status == 200 and headers.get("connection") == "close"
    assert [r["verdict"] for r in json.loads(body)["results"]] == ["ADMITTED"]
    assert rest == b""
