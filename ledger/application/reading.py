"""What a group reads before it is judged (ADRs 0020, 0033): every cached window's newer
events and its identities' states, in one round trip, before the table lock or in the round
trip that takes it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent

from ledger.admissions import Admission, identities_of
from ledger.application.unit_of_work import WindowUnitOfWork
from ledger.domain import Window
from ledger.ports import IdentityIndex, LockedRead, Lookup, Publisher
from ledger.verdicts import Known

# A group's reads made ahead, by window: the cached version they follow, its newer events, its
# identities' states.
ReadAhead = dict[str, tuple[int, Sequence[StoredEvent], dict[str, Known]]]


def read_all_ahead(
    uow: WindowUnitOfWork, index: IdentityIndex, admissions: dict[str, Sequence[Admission]]
) -> ReadAhead:
    """The cached windows' newer events and identities, for every window of a group in one
    round trip (ADR 0020) instead of one a window; `Admitting.window_and_index` takes them."""
    cached = [(w, c) for w in admissions if (c := uow.cached(w)) is not None]
    if len(cached) < 2:
        return {}
    lookups = [Lookup(c.id, c.version, w, identities_of(admissions[w])) for w, c in cached]
    found = index.catch_up_and_look_up_many(lookups)
    return {
        window_id: (window.version, newer, known)
        for (window_id, window), (newer, known) in zip(cached, found, strict=True)
    }


def locked_read(
    uow: WindowUnitOfWork, windows: list[str], admissions: dict[str, Sequence[Admission]]
) -> tuple[LockedRead, Callable[[], ReadAhead]]:
    """The cached windows' catch-up and lookup, to be made by the recorder in the round trip
    that takes the table lock (ADR 0033); then, what they found, by window."""
    cached = [(w, c.id, c.version) for w in windows if (c := uow.cached(w)) is not None]
    read = LockedRead([Lookup(i, v, w, identities_of(admissions[w])) for w, i, v in cached])

    def ahead() -> ReadAhead:
        if read.found is None:  # not read under the lock: each window reads on its own
            return {}
        return {
            window_id: (version, newer, known)
            for (window_id, _, version), (newer, known) in zip(cached, read.found, strict=True)
        }

    return read, ahead


def unread_windows(
    uow: WindowUnitOfWork, publisher: Publisher, windows: dict[str, Any]
) -> dict[str, Window] | None:
    """The cached windows, if judging under the lock needs no read before it (ADR 0033): every
    window cached and open, and a bus that is asked again under the lock anyway (the ledger's
    own sequence)."""
    if not getattr(publisher, "offsets_from_window", False):
        return None
    cached: dict[str, Window] = {}
    for window_id in windows:
        window = uow.cached(window_id)
        if window is None or window.is_closed:
            return None
        cached[window_id] = window
    return cached
