"""What a command keeps of a window to put back after a lost race (`copy_window`), and the
window's snapshot, when the window holds many identities whose publish outcome is unknown
(ADR 0045): the copy shares the pending set until either side changes it, and neither side
ever sees the other's change."""

from __future__ import annotations

import json

from ledger.application.loading import WindowLoader
from ledger.domain import Window
from ledger.domain.snapshot import copy_window, snapshot_state, window_from_snapshot


def ident(n: int) -> str:
    return f"{n:064x}"


def unknown(window: Window, n: int, partition: str = "p") -> None:
    window.record_publish_unknown(
        identity=ident(n),
        event_type="t",
        event_id=str(n),
        payload={"n": n},
        payload_hash="a" * 64,
        reason="the bus did not answer",
        source={"partition": partition, "offset": n},
    )


def test_a_kept_copy_shares_the_pending_set_until_either_side_changes_it() -> None:
    window = Window.open("w.copies")
    for n in range(3):
        unknown(window, n)
    kept = copy_window(window)
    assert kept.pending is window.pending  # nothing copied yet

    unknown(window, 3)  # the live window's next change copies first
    window.reconcile(identity=ident(0), offset=None)
    assert sorted(window.pending) == [ident(1), ident(2), ident(3)]
    assert sorted(kept.pending) == [ident(0), ident(1), ident(2)]

    kept.reconcile(identity=ident(1), offset=9)  # put back after a lost race, it moves on
    assert sorted(kept.pending) == [ident(0), ident(2)]
    assert sorted(window.pending) == [ident(1), ident(2), ident(3)]


def test_a_copy_of_a_copy_and_its_original_never_see_each_others_changes() -> None:
    window = Window.open("w.copies")
    unknown(window, 0)
    first = copy_window(window)
    second = copy_window(first)
    unknown(first, 1)
    unknown(second, 2)
    window.reconcile(identity=ident(0), offset=None)
    assert (sorted(window.pending), sorted(first.pending), sorted(second.pending)) == (
        [],
        [ident(0), ident(1)],
        [ident(0), ident(2)],
    )


def test_a_snapshot_of_many_pending_identities_and_any_text_loads_back_as_the_window() -> None:
    window = Window.open("w.copies")
    for n in range(2000):
        unknown(window, n, partition="partição-ü" if n % 2 else "p")
    window.reconcile(identity=ident(7), offset=None)
    snapshot = WindowLoader.take(window)
    loaded = window_from_snapshot(json.loads(snapshot.state))
    assert snapshot.version == window.version
    assert snapshot_state(loaded) == snapshot_state(window)
    assert list(loaded.pending) == list(window.pending)  # in the order the window holds them
