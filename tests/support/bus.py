"""A small in-process bus for the publish paths the embedded publisher never takes.

It behaves like JetStream where it matters: the message id is the identity, a second publish
of a stored id answers the first sequence; a timeout may or may not have stored the message.
"""

from __future__ import annotations

from collections.abc import Sequence

from ledger.errors import PublishRefused
from ledger.ports import Message, Published, PublishOutcome, Unknown


class ScriptedBus:
    name = "scripted"

    def __init__(self) -> None:
        self.stored: dict[str, int] = {}  # message id -> sequence
        self.sequence = 0
        self.refuse = False
        self.time_out_and_store: set[str] = set()  # ack lost, message kept
        self.time_out_and_drop: set[str] = set()  # nothing reached the bus
        self.publish_calls = 0

    def publish(
        self, window_id: str, messages: Sequence[Message], next_sequence: int
    ) -> list[PublishOutcome]:
        self.publish_calls += 1
        if self.refuse:
            raise PublishRefused("bus refused the connection; nothing was sent")
        outcomes: list[PublishOutcome] = []
        for m in messages:
            if m.identity in self.time_out_and_drop:
                outcomes.append(Unknown("timeout"))
                continue
            if m.identity not in self.stored:
                self.sequence += 1
                self.stored[m.identity] = self.sequence
            if m.identity in self.time_out_and_store:
                outcomes.append(Unknown("timeout"))
            else:
                outcomes.append(Published(self.stored[m.identity]))
        return outcomes

    def heal(self) -> None:
        self.time_out_and_store.clear()
        self.time_out_and_drop.clear()
        self.refuse = False

    def close(self) -> None:
        pass
