"""The served connection's transport (ADR 0048): the writes of one event-loop iteration reach
the socket in one `write`, in order, and nothing held waits past that iteration. Real loop,
real TCP sockets on 127.0.0.1; the socket's transport is wrapped in a pass-through that
records each `write` it is given."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from service.cli.connections import HOLD_BELOW_BYTES, CoalescedTransport


class Recorded:
    """The socket's own transport, with the data of each `write` call kept in order."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


@asynccontextmanager
async def connected() -> AsyncIterator[tuple[CoalescedTransport, Recorded, socket.socket]]:
    """A coalesced transport on a real connection, its recorded socket transport, and the
    peer's socket (blocking, with a timeout)."""
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        accepting = loop.run_in_executor(None, listener.accept)
        transport, _ = await loop.create_connection(asyncio.Protocol, *listener.getsockname()[:2])
        peer, _ = await accepting
        peer.settimeout(10)
        recorded = Recorded(transport)
        try:
            yield CoalescedTransport(recorded, loop), recorded, peer  # type: ignore[arg-type]
        finally:
            transport.abort()
            peer.close()
    finally:
        listener.close()


def received(peer: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = peer.recv(size - len(data))
        assert chunk, f"closed after {len(data)} of {size} bytes"
        data += chunk
    return data


def test_a_head_and_a_body_written_in_one_iteration_reach_the_socket_in_one_write():
    async def scenario() -> None:
        async with connected() as (coalesced, recorded, peer):
            coalesced.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
            coalesced.write(b"body")
            assert recorded.writes == []  # held for the rest of this iteration
            await asyncio.sleep(0)
            assert recorded.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody"]
            assert received(peer, 42) == b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody"

    asyncio.run(scenario())


def test_writes_of_separate_iterations_go_out_separately_and_in_order():
    async def scenario() -> None:
        async with connected() as (coalesced, recorded, peer):
            coalesced.write(b"one")
            await asyncio.sleep(0)
            coalesced.write(b"two")
            coalesced.write(b"three")
            await asyncio.sleep(0)
            assert recorded.writes == [b"one", b"twothree"]
            assert received(peer, 11) == b"onetwothree"

    asyncio.run(scenario())


def test_a_close_sends_what_is_held_before_the_connection_ends():
    async def scenario() -> None:
        async with connected() as (coalesced, recorded, peer):
            coalesced.write(b"last answer")
            coalesced.close()
            assert recorded.writes == [b"last answer"]
            assert received(peer, 11) == b"last answer"
            await asyncio.sleep(0.05)
            assert peer.recv(1) == b""  # then the end of the stream
            assert coalesced.is_closing()

    asyncio.run(scenario())


def test_an_abort_drops_what_is_held():
    async def scenario() -> None:
        async with connected() as (coalesced, recorded, _):
            coalesced.write(b"never sent")
            coalesced.abort()
            await asyncio.sleep(0)
            assert recorded.writes == []

    asyncio.run(scenario())


def test_a_large_write_goes_at_once_after_what_is_held_and_is_not_joined():
    async def scenario() -> None:
        async with connected() as (coalesced, recorded, peer):
            large = b"x" * HOLD_BELOW_BYTES
            coalesced.write(b"head")
            coalesced.write(large)
            assert recorded.writes == [b"head", large]  # before the iteration ends
            assert received(peer, 4 + len(large)) == b"head" + large

    asyncio.run(scenario())


def test_small_writes_adding_up_to_the_limit_are_sent_at_once_for_flow_control():
    async def scenario() -> None:
        async with connected() as (coalesced, recorded, peer):
            piece = b"y" * 1024
            count = HOLD_BELOW_BYTES // len(piece)
            for _ in range(count):
                coalesced.write(piece)
            assert recorded.writes == [piece * count]
            assert coalesced.get_write_buffer_size() >= 0
            coalesced.write(b"tail")
            assert coalesced.get_write_buffer_size() >= 4  # held bytes count as buffered
            await asyncio.sleep(0)
            assert recorded.writes == [piece * count, b"tail"]
            assert received(peer, len(piece) * count + 4) == piece * count + b"tail"

    asyncio.run(scenario())
