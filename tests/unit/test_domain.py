"""The Window aggregate and the verdict function, with no database."""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import pytest
import rfc8785
from eventsourcing.application import project_aggregate
from hypothesis import given, settings
from hypothesis import strategies as st

from api.errors import status_of
from ledger.domain import (
    GENESIS_DIGEST,
    META_KEYS,
    Window,
    chain_digest,
    format_recorded_at,
    window_uuid,
)
from ledger.errors import PublishUnknownPending, WindowClosed
from ledger.verdicts import Action, IdentityState, Known, classify

H1 = "1" * 64
H2 = "2" * 64


def ident(n: int) -> str:
    return f"{n:064x}"


def admit(window: Window, n: int, offset: int, source: dict[str, Any] | None = None) -> None:
    window.admit(
        identity=ident(n),
        event_type="t",
        event_id=str(n),
        payload={"n": n},
        payload_hash=H1,
        offset=offset,
        source=source,
    )


def unknown(window: Window, n: int, source: dict[str, Any] | None = None) -> None:
    window.record_publish_unknown(
        identity=ident(n),
        event_type="t",
        event_id=str(n),
        payload={"n": n},
        payload_hash=H1,
        reason="timeout",
        source=source,
    )


def quarantine(window: Window, n: int) -> None:
    window.quarantine(
        identity=ident(n),
        event_type="t",
        event_id=str(n),
        original_hash=H1,
        received_hash=H2,
        received_payload={"n": -n},
        source=None,
    )


def own_fields(e: Any) -> dict[str, Any]:
    return {k: v for k, v in e.__dict__.items() if k not in META_KEYS}


def busy_window() -> Window:
    """A window that has seen every kind of event but WindowClosed."""
    w = Window.open("w")
    admit(w, 1, 1, {"partition": "p0", "offset": 10})
    admit(w, 2, 2, {"partition": "p1", "offset": 3})
    w.absorb_duplicate(identity=ident(1), payload_hash=H1, offset=1)
    quarantine(w, 2)
    unknown(w, 3, {"partition": "p0", "offset": 4})
    unknown(w, 4)
    w.reconcile(identity=ident(3), offset=7)
    w.reconcile(identity=ident(4), offset=None)
    return w


# --- the hash chain -----------------------------------------------------------------------


def test_the_first_event_links_to_sixty_four_zeros() -> None:
    w = Window.open("w")
    (opened,) = w.collect_events()
    assert GENESIS_DIGEST == "0" * 64
    assert opened.prev_digest == "0" * 64
    assert opened.originator_version == 1
    assert opened.originator_id == window_uuid("w")
    assert w.chain_head == opened.digest


def test_each_event_links_to_the_digest_of_the_one_before() -> None:
    w = busy_window()
    w.close()
    events = w.collect_events()
    assert [type(e).__name__ for e in events] == [
        "WindowOpened",
        "EventAdmitted",
        "EventAdmitted",
        "DuplicateAbsorbed",
        "MismatchQuarantined",
        "PublishUnknown",
        "PublishUnknown",
        "PublishReconciled",
        "PublishReconciled",
        "WindowClosed",
    ]
    assert [e.originator_version for e in events] == list(range(1, 11))
    for before, after in itertools.pairwise(events):
        assert after.prev_digest == before.digest
    assert len({e.digest for e in events}) == len(events)
    assert w.chain_head == events[-1].digest


def test_every_digest_is_recomputable_with_chain_digest() -> None:
    w = busy_window()
    w.close()
    for e in w.collect_events():
        assert e.digest == chain_digest(
            e.prev_digest,
            e.originator_version,
            type(e).__name__,
            format_recorded_at(e.timestamp),
            own_fields(e),
        )


def test_every_digest_is_recomputable_by_a_client_with_rfc8785_and_hashlib() -> None:
    w = busy_window()
    w.close()
    head = "0" * 64
    for e in w.collect_events():
        body = {
            "version": e.originator_version,
            "type": type(e).__name__,
            "recorded_at": format_recorded_at(e.timestamp),
            "fields": own_fields(e),
        }
        head = hashlib.sha256(head.encode() + rfc8785.dumps(body)).hexdigest()
        assert e.digest == head
    assert w.chain_head == head


CONTRACT_ADMITTED_FIELDS = (
    "identity",
    "event_type",
    "event_id",
    "payload",
    "payload_hash",
    "offset",
    "source",
)


def test_the_fields_hashed_are_the_events_own_data_without_bookkeeping() -> None:
    w = Window.open("w")
    admit(w, 1, 1, {"partition": "p", "offset": 0})
    _, admitted = w.collect_events()
    fields = own_fields(admitted)
    assert not set(fields) & META_KEYS
    assert not set(fields) & {"originator_id", "originator_version", "timestamp", "digest"}
    assert {key: fields.get(key) for key in CONTRACT_ADMITTED_FIELDS} == {
        "identity": ident(1),
        "event_type": "t",
        "event_id": "1",
        "payload": {"n": 1},
        "payload_hash": H1,
        "offset": 1,
        "source": {"partition": "p", "offset": 0},
    }


def test_chain_digest_changes_when_any_input_changes() -> None:
    args: tuple[Any, ...] = (
        GENESIS_DIGEST,
        1,
        "WindowOpened",
        "2024-01-01T00:00:00.000000Z",
        {"window_id": "w"},
    )
    base = chain_digest(*args)
    for i, changed in enumerate(
        ["f" * 64, 2, "EventAdmitted", "2024-01-01T00:00:00.000001Z", {"window_id": "x"}]
    ):
        altered = list(args)
        altered[i] = changed
        assert chain_digest(*altered) != base


def test_recorded_at_is_an_iso_utc_string_with_microseconds() -> None:
    w = Window.open("w")
    (opened,) = w.collect_events()
    text = format_recorded_at(opened.timestamp)
    assert text.endswith("Z")
    assert len(text) == len("2024-01-01T00:00:00.000000Z")
    assert w.opened_at == text


# --- state and counters -------------------------------------------------------------------


def test_a_new_window_is_open_with_zero_counts() -> None:
    w = Window.open("w")
    assert w.window_id == "w"
    assert w.status == "OPEN"
    assert not w.is_closed
    assert w.counts() == {
        "admitted": 0,
        "duplicates": 0,
        "quarantined": 0,
        "publish_unknown": 0,
        "reconciled": 0,
        "pending_unknown": 0,
    }
    assert w.bus_offset_range() == {"first": None, "last": None}
    assert w.source_offset_ranges() == {}


def test_counters_follow_every_kind_of_event() -> None:
    w = busy_window()
    assert w.counts() == {
        "admitted": 3,  # two admitted, one reconciled as published
        "duplicates": 1,
        "quarantined": 1,
        "publish_unknown": 2,
        "reconciled": 2,
        "pending_unknown": 0,
    }
    assert w.bus_offset_range() == {"first": 1, "last": 7}
    assert w.source_offset_ranges() == {
        "p0": {"min": 4, "max": 10},
        "p1": {"min": 3, "max": 3},
    }


def test_a_publish_unknown_is_pending_until_reconciled() -> None:
    w = Window.open("w")
    unknown(w, 1)
    unknown(w, 2)
    assert set(w.pending) == {ident(1), ident(2)}
    assert w.pending[ident(1)] == 2  # the version of its PublishUnknown event
    assert w.counts()["pending_unknown"] == 2
    assert w.counts()["admitted"] == 0


def test_reconcile_as_published_moves_pending_to_admitted_with_the_offset() -> None:
    w = Window.open("w")
    unknown(w, 1)
    w.reconcile(identity=ident(1), offset=42)
    assert w.pending == {}
    assert w.admitted == 1
    assert w.reconciled == 1
    assert w.bus_offset_range() == {"first": 42, "last": 42}
    reconciled = w.collect_events()[-1]
    assert type(reconciled).__name__ == "PublishReconciled"
    fields = own_fields(reconciled)
    assert (fields["identity"], fields["outcome"], fields["offset"]) == (ident(1), "published", 42)


def test_reconcile_as_not_published_clears_pending_without_admitting() -> None:
    w = Window.open("w")
    unknown(w, 1)
    w.reconcile(identity=ident(1), offset=None)
    assert w.pending == {}
    assert w.admitted == 0
    assert w.reconciled == 1
    assert w.bus_offset_range() == {"first": None, "last": None}
    assert own_fields(w.collect_events()[-1])["outcome"] == "not_published"


def test_reconciling_an_identity_that_is_not_pending_is_refused_and_records_nothing() -> None:
    w = Window.open("w")
    admit(w, 1, 1)
    version = w.version
    with pytest.raises(ValueError, match="not pending"):
        w.reconcile(identity=ident(1), offset=1)
    assert w.version == version
    assert len(w.pending_events) == 2


# --- closing ------------------------------------------------------------------------------


def test_close_is_refused_listing_every_pending_identity() -> None:
    w = Window.open("w")
    admit(w, 1, 1)
    unknown(w, 3)
    unknown(w, 2)
    version = w.version
    with pytest.raises(PublishUnknownPending) as refused:
        w.close()
    assert refused.value.extra["pending"] == sorted([ident(2), ident(3)])
    assert refused.value.as_json()["error"] == "publish_unknown_pending"
    assert refused.value.as_json()["pending"] == sorted([ident(2), ident(3)])
    assert status_of(refused.value) == 409
    assert w.status == "OPEN"
    assert w.version == version


def test_close_succeeds_once_everything_pending_is_reconciled() -> None:
    w = Window.open("w")
    unknown(w, 1)
    with pytest.raises(PublishUnknownPending):
        w.close()
    w.reconcile(identity=ident(1), offset=1)
    w.close()
    assert w.status == "CLOSED"
    assert w.is_closed


def test_close_records_the_closing_summary() -> None:
    w = busy_window()
    w.close()
    closed = w.collect_events()[-1]
    assert type(closed).__name__ == "WindowClosed"
    expected = {
        "counts": {
            "admitted": 3,
            "duplicates": 1,
            "quarantined": 1,
            "publish_unknown": 2,
            "reconciled": 2,
            "pending_unknown": 0,
        },
        "bus_offsets": {"first": 1, "last": 7},
        "source_offsets": {"p0": {"min": 4, "max": 10}, "p1": {"min": 3, "max": 3}},
        "opened_at": w.opened_at,
        "events": 10,
    }
    assert {key: closed.summary[key] for key in expected} == expected
    assert w.summary == closed.summary
    assert w.closed_at == format_recorded_at(closed.timestamp)
    assert w.version == 10


def test_every_command_after_close_raises_window_closed_and_records_nothing() -> None:
    w = Window.open("w")
    admit(w, 1, 1)
    w.close()
    version = w.version
    commands = [
        lambda: admit(w, 2, 2),
        lambda: w.absorb_duplicate(identity=ident(1), payload_hash=H1, offset=1),
        lambda: quarantine(w, 1),
        lambda: unknown(w, 3),
        lambda: w.reconcile(identity=ident(3), offset=3),
        w.close,
    ]
    for command in commands:
        with pytest.raises(WindowClosed):
            command()
    assert w.version == version
    assert w.admitted == 1
    assert len(w.pending_events) == 3


# --- replay -------------------------------------------------------------------------------


def test_replaying_the_events_rebuilds_the_same_window() -> None:
    w = busy_window()
    unknown(w, 9, {"partition": "p2", "offset": 0})
    events = w.collect_events()
    replayed = project_aggregate(None, events)
    assert replayed is not None
    assert replayed == w  # same type and the same __dict__
    assert replayed.counts() == w.counts()
    assert replayed.pending == {ident(9): w.pending[ident(9)]}
    assert replayed.chain_head == events[-1].digest
    assert replayed.version == len(events)


def test_replaying_a_closed_window_rebuilds_the_closed_state() -> None:
    w = busy_window()
    w.close()
    events = w.collect_events()
    replayed = project_aggregate(None, events)
    assert replayed == w
    assert replayed.is_closed
    assert replayed.summary == w.summary
    assert replayed.closed_at == w.closed_at
    with pytest.raises(WindowClosed):
        admit(replayed, 5, 5)


def test_replaying_in_two_steps_gives_the_same_state_as_in_one() -> None:
    w = busy_window()
    events = w.collect_events()
    half = project_aggregate(None, events[:4])
    assert half is not None
    assert half.admitted == 2 and half.duplicates == 1 and half.quarantined == 0
    whole = project_aggregate(half, events[4:])
    assert whole == w


def test_window_ids_map_to_a_deterministic_aggregate_id() -> None:
    assert window_uuid("w") == window_uuid("w")
    assert window_uuid("w") != window_uuid("w2")
    assert Window.open("w").id == window_uuid("w")


# --- the verdict function -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("known", "received", "action"),
    [
        (None, H1, Action.PUBLISH),
        (Known(IdentityState.ABSENT, H1), H1, Action.PUBLISH),
        (Known(IdentityState.ABSENT, H1), H2, Action.PUBLISH),
        (Known(IdentityState.ADMITTED, H1, 5), H1, Action.ABSORB),
        (Known(IdentityState.ADMITTED, H1, 5), H2, Action.QUARANTINE),
        (Known(IdentityState.UNKNOWN, H1), H1, Action.PUBLISH),
        (Known(IdentityState.UNKNOWN, H1), H2, Action.QUARANTINE),
    ],
    ids=[
        "absent-none",
        "absent-same",
        "absent-different",
        "admitted-same",
        "admitted-different",
        "unknown-same",
        "unknown-different",
    ],
)
def test_classify_gives_the_contract_action_for_every_state_and_hash(
    known: Known | None, received: str, action: Action
) -> None:
    assert classify(known, received) is action


# The admitted form (ADR 0011) is written out by hand: it must be the canonical fields exactly.
_text = st.text(max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    identity=_text,
    event_type=_text,
    event_id=_text,
    payload_hash=_text,
    payload=st.dictionaries(
        _text,
        st.none()
        | st.booleans()
        | st.integers(-(2**53) + 1, 2**53 - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | _text,
        max_size=4,
    ),
    source=st.none()
    | st.fixed_dictionaries({"partition": _text, "offset": st.integers(0, 2**53 - 1)}),
    offset=st.integers(0, 2**53 - 1),
)
def test_an_admitted_form_with_its_offset_is_the_rfc_8785_form_of_the_events_fields(
    identity: str,
    event_type: str,
    event_id: str,
    payload_hash: str,
    payload: dict[str, Any],
    source: dict[str, Any] | None,
    offset: int,
) -> None:
    form = Window.admitted_form(
        identity=identity,
        event_type=event_type,
        event_id=event_id,
        payload_hash=payload_hash,
        source=source,
        canonical_payload=rfc8785.dumps(payload),
    )
    fields = {
        "identity": identity,
        "event_type": event_type,
        "event_id": event_id,
        "payload": payload,
        "payload_hash": payload_hash,
        "offset": offset,
        "source": source,
    }
    assert form.head + str(offset).encode() + form.tail == rfc8785.dumps(fields)


def test_an_event_admitted_with_a_form_carries_the_digest_of_its_own_fields() -> None:
    payload = {"z": "é", "a": [1, {"b": None}], "n": 2**53 - 1}
    values: dict[str, Any] = {
        "identity": "i" * 64,
        "event_type": "order.created",
        "event_id": "e-\U0001f600",
        "payload_hash": "h" * 64,
        "source": {"partition": "p-0", "offset": 7},
    }
    canonical_payload = rfc8785.dumps(payload)
    form = Window.admitted_form(**values, canonical_payload=canonical_payload)
    window = Window.open("w")
    with window.one_moment():
        window.admit(**values, payload=payload, offset=41, form=form)
    event = window.collect_events()[-1]
    own = {name: getattr(event, name) for name in (*values, "payload", "offset")}
    recorded_at = format_recorded_at(event.timestamp)
    expected = chain_digest(event.prev_digest, 2, "EventAdmitted", recorded_at, own)
    assert event.digest == expected
