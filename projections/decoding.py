"""Decoding the stored log into `ProjectedEvent`s: the events' own data as stored, their
window's id, their type name and the contract's recorded_at text."""

from __future__ import annotations

from datetime import datetime

import msgspec
from eventsourcing.persistence import Notification
from eventsourcing.utils import resolve_topic
from sqlalchemy import Connection, select

from ledger.domain import META_KEYS, format_recorded_at
from projections.base import ProjectedEvent
from projections.tables import window_names
from projections.upsert import insert_ignoring_conflicts

_decode_state = msgspec.json.Decoder().decode


def _recorded_at(stamp: str) -> str:
    """The contract's recorded_at from the stored timestamp text, parsing only when needed."""
    if len(stamp) == 27 and stamp[-1] == "Z":  # already YYYY-MM-DDTHH:MM:SS.ffffffZ
        return stamp
    return format_recorded_at(datetime.fromisoformat(stamp))


class EventDecoder:
    """Remembers window ids and type names by topic. Only the first event of an aggregate
    carries its window's id (`WindowOpened`, or `LateArrivalsOpened` for the window's late
    arrivals, an aggregate of its own); the rest name the aggregate's uuid, mapped to the
    window in `rm_window_names`."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}  # window uuid -> window_id
        self._type_names: dict[str, str] = {}

    def decode(self, conn: Connection, notifications: list[Notification]) -> list[ProjectedEvent]:
        keys = [str(n.originator_id) for n in notifications]
        # Plain JSON, not the transcoder: projections want the stored text of the timestamp.
        states = [_decode_state(n.state) for n in notifications]
        opened = []
        for n, key, state in zip(notifications, keys, states, strict=True):
            if n.originator_version == 1 and "window_id" in state:
                if key not in self._names:
                    opened.append({"window_uuid": key, "window_id": state["window_id"]})
                self._names[key] = state["window_id"]
        if opened:
            conn.execute(insert_ignoring_conflicts(conn, window_names), opened)
        missing = set(keys) - self._names.keys()
        if missing:
            for row in conn.execute(
                select(window_names).where(window_names.c.window_uuid.in_(missing))
            ):
                self._names[row.window_uuid] = row.window_id
        events = []
        for n, key, state in zip(notifications, keys, states, strict=True):
            stamp = state.pop("timestamp")
            digest = state["digest"]
            for meta in META_KEYS.intersection(state):
                del state[meta]
            events.append(
                ProjectedEvent(
                    n.id,
                    self._names[key],
                    n.originator_version,
                    self._type_name(n.topic),
                    _recorded_at(stamp),
                    state,
                    digest,
                )
            )
        return events

    def _type_name(self, topic: str) -> str:
        name = self._type_names.get(topic)
        if name is None:
            name = self._type_names[topic] = resolve_topic(topic).__name__
        return name
