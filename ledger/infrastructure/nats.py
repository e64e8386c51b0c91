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
from ledger.ports import (
    BusMessage,
    Message,
    OutgoingMessage,
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


class _Ack(msgspec.Struct):
    stream: str | None = None
    seq: int | None = None
    duplicate: bool = False
    error: dict[str, Any] | None = None


_decode_ack = msgspec.json.Decoder(_Ack).decode


class _Body(msgspec.Struct):
    window_id: str
    identity: str
    event_type: str
    event_id: str
    payload: dict[str, Any]
    payload_hash: str


_encode = msgspec.json.Encoder().encode
_decode_body = msgspec.json.Decoder(_Body).decode


def subject_token(window_id: str) -> str:
    # A window id may hold '.', which would split the subject into tokens (or make an empty
    # one); '~' never occurs in a window id, so this mapping is one-to-one.
    return window_id.replace(".", "~")


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
        # All of a batch's publishes go out concurrently; each settles on its own.
        return self._run(self._publish_all(js, window_id, messages), timeout * 2 + 5)

    async def _publish_all(
        self, js: JetStreamContext, window_id: str, messages: Sequence[Message]
    ) -> list[PublishOutcome]:
        """Pipelined: every message goes out with its own reply subject on one shared
        subscription, and the batch waits once for all acks (a request per message costs
        several times more in nats-py). What has not answered by the deadline is Unknown."""
        assert self._nc is not None
        subject = self.subject(window_id)
        loop = asyncio.get_running_loop()
        waiting: dict[str, asyncio.Future[Msg]] = {}
        for m in messages:
            self._sequence += 1
            reply = f"{self._inbox}.{self._sequence}"
            waiting[reply] = self._waiting[reply] = loop.create_future()
            await self._nc.publish(
                subject,
                _encode(
                    _Body(
                        m.window_id,
                        m.identity,
                        m.event_type,
                        m.event_id,
                        m.payload,
                        m.payload_hash,
                    )
                ),
                reply=reply,
                headers={"Nats-Msg-Id": m.identity, "Nats-Expected-Stream": self.settings.stream},
            )
        try:
            await asyncio.wait(waiting.values(), timeout=self.settings.publish_timeout_seconds)
        finally:
            for reply in waiting:
                self._waiting.pop(reply, None)
        outcomes: list[PublishOutcome] = []
        no_stream = 0
        for m, future in zip(messages, waiting.values(), strict=True):
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
                ack = _decode_ack(reply_msg.data)
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
            raise PublishRefused(f"no JetStream stream answers for {subject}")
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
            body = _decode_body(stored.data or b"")
        except Exception as exc:
            return Unknown(f"duplicate ack, stored message unreadable: {exc}")
        if body.payload_hash == m.payload_hash:
            return Published(ack.seq)
        return Superseded(ack.seq, _bus_message(ack.seq, body))

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

    def messages(self, window_id: str) -> Iterator[BusMessage]:
        """Every message on the window's subject, in stream order."""
        js = self._connected()
        subject = self.subject(window_id)
        seq = 1
        while True:
            try:
                raw = self._inspect(
                    js.get_msg(self.settings.stream, seq=seq, subject=subject, next=True)
                )
            except nats.js.errors.NotFoundError:
                return
            assert raw.seq is not None
            try:
                body = _decode_body(raw.data or b"")
            except msgspec.DecodeError:
                msg_id = (raw.headers or {}).get("Nats-Msg-Id", "")
                yield BusMessage(raw.seq, msg_id, None)
            else:
                yield _bus_message(raw.seq, body)
            seq = raw.seq + 1


def _bus_message(seq: int, body: _Body) -> BusMessage:
    return BusMessage(
        seq,
        body.identity,
        OutgoingMessage(
            body.window_id,
            body.identity,
            body.event_type,
            body.event_id,
            body.payload,
            body.payload_hash,
        ),
    )
