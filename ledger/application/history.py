"""The write side's reads of a window's stored history: the history itself and its check.

What a reviewer needs to recompute the chain (contract s.2), read a page at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, StoredEvent, Transcoder
from eventsourcing.utils import resolve_topic

from ledger.application.results import Verification
from ledger.domain import GENESIS_DIGEST, META_KEYS, chain_digest, format_recorded_at, window_uuid
from ledger.errors import WindowNotFound

HISTORY_PAGE = 1000


@lru_cache(maxsize=64)
def _type_name(topic: str) -> str:
    return str(resolve_topic(topic).__name__)


class HistoryReader:
    def __init__(self, recorder: ApplicationRecorder, transcoder: Transcoder) -> None:
        self.recorder = recorder
        self.transcoder = transcoder

    def state(self, stored: StoredEvent) -> dict[str, Any]:
        state: dict[str, Any] = self.transcoder.decode(stored.state)
        return state

    def fields(self, stored: StoredEvent) -> dict[str, Any]:
        """The event's own data, as the contract's history shows it under "fields"."""
        state = self.state(stored)
        return {k: v for k, v in state.items() if k not in META_KEYS}

    def event_at(self, originator_id: UUID, version: int) -> StoredEvent:
        (stored,) = self.recorder.select_events(originator_id, gt=version - 1, lte=version)
        return stored

    def stored_events(self, window_id: str, after: int = 0) -> Iterator[StoredEvent]:
        """The window's stored events in version order, a page at a time (bounded memory)."""
        uuid = window_uuid(window_id)
        while True:
            page = self.recorder.select_events(uuid, gt=after, limit=HISTORY_PAGE)
            yield from page
            if len(page) < HISTORY_PAGE:
                return
            after = page[-1].originator_version

    def history(
        self, window_id: str, *, after: int = 0, limit: int = HISTORY_PAGE
    ) -> list[dict[str, Any]]:
        """The window's events as stored: what a reviewer needs to recompute the chain."""
        stored_events = self.recorder.select_events(window_uuid(window_id), gt=after, limit=limit)
        if not stored_events and after == 0:
            raise WindowNotFound(f"no window {window_id!r}")
        return [self.item(s) for s in stored_events]

    def iter_history(self, window_id: str) -> Iterator[dict[str, Any]]:
        found = False
        for stored in self.stored_events(window_id):
            found = True
            yield self.item(stored)
        if not found:
            raise WindowNotFound(f"no window {window_id!r}")

    def item(self, stored: StoredEvent) -> dict[str, Any]:
        state = self.state(stored)
        return {
            "version": stored.originator_version,
            "type": _type_name(stored.topic),
            "recorded_at": format_recorded_at(state["timestamp"]),
            "fields": {k: v for k, v in state.items() if k not in META_KEYS},
            "prev_digest": state["prev_digest"],
            "digest": state["digest"],
        }

    def verify(self, window_id: str) -> Verification:
        """Recompute the hash chain from the stored events; report the first bad version."""
        head = GENESIS_DIGEST
        count = 0
        first_bad: int | None = None
        for stored in self.stored_events(window_id):
            count += 1
            version = stored.originator_version
            intact, recomputed = self._check(stored, head, count)
            if not intact and first_bad is None:
                first_bad = version
            head = recomputed
        if count == 0:
            raise WindowNotFound(f"no window {window_id!r}")
        return Verification(first_bad is None, count, head, first_bad)

    def _check(self, stored: StoredEvent, head: str, position: int) -> tuple[bool, str]:
        """Whether the event links to `head` at its position, and its recomputed digest."""
        version = stored.originator_version
        try:
            item = self.item(stored)
            recomputed = chain_digest(
                head, version, item["type"], item["recorded_at"], item["fields"]
            )
        except Exception:  # undecodable state is tampering too
            return False, head
        intact = (
            version == position and item["prev_digest"] == head and item["digest"] == recomputed
        )
        return intact, recomputed
