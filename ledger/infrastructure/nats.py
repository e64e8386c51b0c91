"""NATS JetStream as the bus: the ack's stream sequence is the offset, the identity the msg id.

nats-py is asyncio and the ledger is sync, so the client lives on its own event loop in a
background thread; callers block on the result with a bound.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import PubAck, StorageType, StreamConfig

from ledger.errors import BusUnavailable, PublishRefused
from ledger.infrastructure.natswire import (
    Body,
    bus_message,
    decode_ack,
    decode_body,
    encode,
    subject_token,
)
from ledger.ports import (
    BusMessage,
    Message,
    Published,
    PublishOutcome,
    Superseded,
    Unknown,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class NatsSettings:
    url: str
    stream: str = "LEDGER"
    subject_prefix: str = "ledger.windows"
    duplicate_window_seconds: float = 24 * 3600.0
    publish_timeout_seconds: float = 2.0
    connect_timeout_seconds: float = 2.0


class JetStreamPublisher:
    name = "nats"

    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats", daemon=True)
        self._thread.start()
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._connect_lock = threading.Lock()
        self._inbox = ""
        self._sequence = 0
        self._waiting: dict[str, asyncio.Future[Msg]] = {}

    @property
    def duplicate_window_seconds(self) -> float:
        """How long the stream deduplicates a message id (a re-publish after it is stored
        again: reconcile and `--accept-bus-duplicates` say so, ADR 0028)."""
        return self.settings.duplicate_window_seconds

    # --- plumbing -----------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()  # never leave the coroutine running (e.g. a connect retrying)
            raise

    def subject(self, window_id: str) -> str:
        return f"{self.settings.subject_prefix}.{subject_token(window_id)}"

    def _connected(self) -> JetStreamContext:
        """The JetStream context, connecting (and creating the stream) on first use.

        Raises PublishRefused when the server cannot be reached: nothing was sent.
        """
        with self._connect_lock:
            if self._nc is not None and self._nc.is_closed:
                self._nc, self._js = None, None
            if self._nc is None:
                try:
                    # With unlimited reconnects nats-py retries even the first connect forever:
                    # bound it here (the timed-out attempt is cancelled, not left running).
                    self._run(self._connect(), self.settings.connect_timeout_seconds * 2)
                except Exception as exc:
                    self._nc, self._js = None, None
                    raise PublishRefused(
                        f"NATS at {self.settings.url} is unreachable: {exc}"
                    ) from exc
            assert self._nc is not None and self._js is not None
            if not self._nc.is_connected:
                # Reconnecting: the client would buffer publishes and send them later, which
                # would turn a clean refusal into an ambiguity. Refuse now instead.
                raise PublishRefused(f"NATS at {self.settings.url} is not connected")
            return self._js

    async def _connect(self) -> None:
        nc = await nats.connect(
            self.settings.url,
            connect_timeout=self.settings.connect_timeout_seconds,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            name="admission-ledger",
        )
        js = nc.jetstream()
        try:
            await js.stream_info(self.settings.stream)
        except nats.js.errors.NotFoundError:
            await js.add_stream(
                StreamConfig(
                    name=self.settings.stream,
                    subjects=[f"{self.settings.subject_prefix}.>"],
                    duplicate_window=self.settings.duplicate_window_seconds,
                    storage=StorageType.FILE,
                )
            )
        # One subscription receives every ack, each on its own reply subject.
        self._inbox = nc.new_inbox()
        await nc.subscribe(f"{self._inbox}.*", cb=self._on_reply)
        self._nc, self._js = nc, js

    def ping(self, timeout: float) -> None:
        """Raise unless connected (connecting first, as a publish would) and JetStream answers
        one account-info request within `timeout` (`/health`)."""
        js = self._connected()
        self._run(js.account_info(), timeout)

    def close(self) -> None:
        if self._nc is not None:
            try:
                self._run(self._nc.close(), 5)
            except Exception:
                log.warning("closing the NATS connection failed", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    # --- publishing ---------------------------------------------------------------------

    def publish(
        self, window_id: str, messages: Sequence[Message], next_sequence: int
    ) -> list[PublishOutcome]:
        if not messages:
            return []
        js = self._connected()
        timeout = self.settings.publish_timeout_seconds
        # All of a batch's publishes go out concurrently; each settles on its own. The inner
        # deadlines (sending, then acks) bound the call; this one only backs them up.
        try:
            return self._run(self._publish_all(js, window_id, messages), timeout * 2 + 5)
        except TimeoutError:
            # Whatever was handed to the client may still leave: unknown, never an error.
            return [Unknown("TimeoutError: the publish did not settle")] * len(messages)

    async def _publish_all(
        self, js: JetStreamContext, window_id: str, messages: Sequence[Message]
    ) -> list[PublishOutcome]:
        """Pipelined: every message goes out with its own reply subject on one shared
        subscription, and the batch waits once for all acks (a request per message costs
        several times more in nats-py). What has not answered by the deadline is Unknown.

        Sending has its own deadline (ADR 0025): a stalled server stops reading, the client's
        pending buffer fills and its forced flush waits forever. A message handed to the
        client may still leave (its buffer is flushed when the server reads again), so it is
        Unknown; when none was handed over, the bus refused and nothing was sent."""
        assert self._nc is not None
        loop = asyncio.get_running_loop()
        waiting: dict[str, asyncio.Future[Msg]] = {}
        sending = _Sending(self, window_id, messages, waiting, loop)
        try:
            await sending.run(self.settings.publish_timeout_seconds)
            if sending.handed_over == 0:
                raise PublishRefused(
                    f"NATS at {self.settings.url} took none of the batch's messages: "
                    f"{sending.failure or 'it stopped reading'}"
                )
            await asyncio.wait(waiting.values(), timeout=self.settings.publish_timeout_seconds)
        finally:
            for reply in waiting:
                self._waiting.pop(reply, None)
        outcomes: list[PublishOutcome] = []
        no_stream = 0
        futures = list(waiting.values())
        for i, m in enumerate(messages):
            if i >= sending.handed_over:
                why = sending.failure or "the bus stopped reading before it was sent"
                # Part of the batch may be on the bus: record this one as unknown too, so the
                # request is taken whole; reconcile publishes it (the same message id).
                outcomes.append(Unknown(f"not sent: {why}"))
                continue
            future = futures[i]
            if not future.done():
                future.cancel()
                timeout = self.settings.publish_timeout_seconds
                outcomes.append(Unknown(f"TimeoutError: no ack within {timeout:g} s"))
                continue
            reply_msg = future.result()
            if (reply_msg.headers or {}).get("Status") == "503":
                no_stream += 1
                outcomes.append(Unknown("no responders"))
                continue
            try:
                ack = decode_ack(reply_msg.data)
            except msgspec.DecodeError as exc:
                outcomes.append(Unknown(f"unreadable ack: {exc}"))
                continue
            if ack.error is not None or ack.seq is None:
                outcomes.append(Unknown(f"bus error: {ack.error}"))
                continue
            outcomes.append(
                await self._judge_ack(
                    js, m, PubAck(stream=ack.stream or "", seq=ack.seq, duplicate=ack.duplicate)
                )
            )
        if no_stream == len(messages):
            # Nobody answered for the subject: no stream stored anything.
            raise PublishRefused(f"no JetStream stream answers for {self.subject(window_id)}")
        return outcomes

    async def _on_reply(self, msg: Msg) -> None:
        future = self._waiting.get(msg.subject)
        if future is not None and not future.done():
            future.set_result(msg)

    async def _judge_ack(self, js: JetStreamContext, m: Message, ack: PubAck) -> PublishOutcome:
        if not ack.duplicate:
            return Published(ack.seq)
        # The bus already held this message id: make sure it holds *this* payload.
        try:
            stored = await js.get_msg(self.settings.stream, seq=ack.seq)
            body = decode_body(stored.data or b"")
        except Exception as exc:
            return Unknown(f"duplicate ack, stored message unreadable: {exc}")
        if body.payload_hash == m.payload_hash:
            return Published(ack.seq)
        return Superseded(ack.seq, bus_message(ack.seq, body))

    # --- the receipt witness ------------------------------------------------------------

    def receipt_subject(self, window_id: str) -> str:
        return f"{self.settings.subject_prefix}.receipts.{subject_token(window_id)}"

    def witness(self, window_id: str, receipt: bytes) -> None:
        """Keep a copy of the window's signed receipt on the bus, outside the database (message
        id `receipt:<window_id>`, so sending it again stores nothing new)."""
        js = self._connected()
        self._inspect(
            js.publish(
                self.receipt_subject(window_id),
                receipt,
                timeout=self.settings.publish_timeout_seconds,
                headers={"Nats-Msg-Id": f"receipt:{window_id}"},
            )
        )

    # --- inspecting the bus (reconciliation and coherence) -----------------------------

    def _inspect(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return self._run(coro, self.settings.publish_timeout_seconds * 5)
        except (TimeoutError, nats.errors.Error) as exc:
            if isinstance(exc, nats.js.errors.NotFoundError):
                raise
            raise BusUnavailable(
                f"NATS at {self.settings.url} did not answer: {type(exc).__name__}"
            ) from exc

    def count(self, window_id: str) -> int:
        js = self._connected()
        subject = self.subject(window_id)

        async def count() -> int:
            info = await js.stream_info(self.settings.stream, subjects_filter=subject)
            return int((info.state.subjects or {}).get(subject, 0))

        return self._inspect(count())

    def messages(self, window_id: str, after: int = 0) -> Iterator[BusMessage]:
        """The messages on the window's subject after stream sequence `after`, in order."""
        js = self._connected()
        subject = self.subject(window_id)
        seq = after + 1
        while True:
            try:
                raw = self._inspect(
                    js.get_msg(self.settings.stream, seq=seq, subject=subject, next=True)
                )
            except nats.js.errors.NotFoundError:
                return
            assert raw.seq is not None
            try:
                body = decode_body(raw.data or b"")
            except msgspec.DecodeError:
                msg_id = (raw.headers or {}).get("Nats-Msg-Id", "")
                yield BusMessage(raw.seq, msg_id, None)
            else:
                yield bus_message(raw.seq, body)
            seq = raw.seq + 1


class _Sending:
    """Hands a batch's messages to the client in order, until done, the deadline, or the first
    message the client will not take (nothing of that one was buffered)."""

    def __init__(
        self,
        publisher: JetStreamPublisher,
        window_id: str,
        messages: Sequence[Message],
        waiting: dict[str, asyncio.Future[Msg]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.publisher, self.window_id, self.messages = publisher, window_id, messages
        self.waiting, self.loop = waiting, loop
        self.handed_over = 0
        self.failure: str | None = None
        self._stop = False

    async def run(self, deadline: float) -> None:
        task = asyncio.ensure_future(self._send())
        done, _ = await asyncio.wait({task}, timeout=deadline)
        if done:
            task.result()
            return
        self._stop = True
        task.cancel()
        # nats-py swallows a cancellation inside its forced flush and returns from publish:
        # the flag then ends the loop before the next message.
        await asyncio.wait({task}, timeout=0.1)
        if self.failure is None:
            self.failure = f"the bus took no more within {deadline:g} s (a full client buffer)"

    async def _send(self) -> None:
        publisher = self.publisher
        nc = publisher._nc
        assert nc is not None
        subject = publisher.subject(self.window_id)
        headers = {"Nats-Expected-Stream": publisher.settings.stream}
        for m in self.messages:
            if self._stop:
                return
            publisher._sequence += 1
            reply = f"{publisher._inbox}.{publisher._sequence}"
            body = encode(
                Body(m.window_id, m.identity, m.event_type, m.event_id, m.payload, m.payload_hash)
            )
            self.waiting[reply] = publisher._waiting[reply] = self.loop.create_future()
            # Counted before the call: once the client has the bytes they may leave.
            self.handed_over += 1
            try:
                await nc.publish(
                    subject, body, reply=reply, headers={**headers, "Nats-Msg-Id": m.identity}
                )
            except nats.errors.Error as exc:
                # Raised before buffering (closed, reconnecting with a full buffer, too big).
                self.handed_over -= 1
                del self.waiting[reply]
                publisher._waiting.pop(reply, None)
                self.failure = f"the client refused it ({type(exc).__name__})"
                return
