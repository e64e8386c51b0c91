"""The write side's reads of a window's stored history: the history itself and its check.

What a reviewer needs to recompute the chain (contract s.2), read a page at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, StoredEvent, Transcoder
from eventsourcing.utils import resolve_topic

from ledger.application.evidence import ChainWalk
from ledger.application.results import Verification
from ledger.domain import META_KEYS, chain_digest, format_recorded_at, window_uuid
from ledger.errors import WindowNotFound

HISTORY_PAGE = 1000


RUN_GAP = 64  # versions this far apart are read by separate queries


def _runs(versions: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for v in versions:
        if runs and v - runs[-1][1] <= RUN_GAP:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


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

    def last_item(self, window_id: str) -> dict[str, Any] | None:
        """The window's newest stored event as history (one indexed read)."""
        newest = self.recorder.select_events(window_uuid(window_id), desc=True, limit=1)
        if not newest:
            return None
        try:
            return self.item(newest[0])
        except Exception:  # undecodable: the caller finds it differs from what was signed
            return {"version": newest[0].originator_version, "type": None, "digest": None}

    def items_at(self, window_id: str, versions: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Some of the window's events by version: their fields, and whether each one's digest
        recomputes from its own content and its stored prev_digest (a local check; the whole
        chain is the scrub's). Read in runs of nearby versions, not one query each."""
        uuid = window_uuid(window_id)
        found: dict[int, dict[str, Any]] = {}
        for first, last in _runs(sorted(set(versions))):
            for stored in self.recorder.select_events(uuid, gt=first - 1, lte=last):
                found[stored.originator_version] = self._checked(stored)
        return found

    def _checked(self, stored: StoredEvent) -> dict[str, Any]:
        try:
            item = self.item(stored)
            intact = item["digest"] == chain_digest(
                item["prev_digest"],
                stored.originator_version,
                item["type"],
                item["recorded_at"],
                item["fields"],
            )
        except Exception:  # undecodable state is tampering too
            return {"fields": {}, "intact": False}
        return {"fields": item["fields"], "intact": intact}

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
        return self.walk(window_id).verification()

    def walk(self, window_id: str, pace: Callable[[], None] = lambda: None) -> ChainWalk:
        """The chain recomputed over the stored history (see `ledger.application.evidence`).
        `pace` is called after each page read (a background check yields the process there)."""
        walk = ChainWalk()
        for n, stored in enumerate(self.stored_events(window_id), start=1):
            if n % HISTORY_PAGE == 0:
                pace()
            try:
                item = self.item(stored)
            except Exception:  # undecodable state is tampering too
                walk.fail(stored.originator_version)
                continue
            walk.step(item)
        if walk.events == 0:
            raise WindowNotFound(f"no window {window_id!r}")
        return walk
