"""Tampering with a CLOSED window's evidence behind the service's back, as an operator with
database access could (contract s.9): the six tamperings of issue 12, each written once for
both backends on top of `tests.support.storage` (edit a stored event) and
`tests.support.history` (delete one, read the ids).

Every tampering works on the same sealed window, `SEALED_ADMISSIONS` admitted in one batch and
then closed:

    version 1 WindowOpened
    version 2 EventAdmitted      "1" {"amount": 2500}
    version 3 EventAdmitted      "2" {"amount": 100}
    version 4 EventAdmitted      "3" {"amount": 7}
    version 5 DuplicateAbsorbed  "2"
    version 6 WindowClosed
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.domain import META_KEYS, chain_digest, format_recorded_at, window_uuid
from ledger.jcs import canonicalize, sha256_hex
from tests.support.builders import event, identity
from tests.support.history import delete_stored_event, event_ids, newest_event_id
from tests.support.storage import _event_store, _is_sqlite, rewrite_stored_event

SEALED_ADMISSIONS: list[dict[str, Any]] = [
    event("1", {"amount": 2500}),
    event("2", {"amount": 100}),
    event("3", {"amount": 7}),
    event("2", {"amount": 100}),  # an exact duplicate
]
SEALED_EVENTS = 6  # the history's length once closed, WindowClosed included
STORED_AMOUNT = 2500  # of event "1", the one edited in place and in the read model
EDITED_AMOUNT = 2600
REWRITTEN_AMOUNT = 70000  # of event "3", whose tail is rewritten with recomputed digests


def sealed_lines() -> str:
    """SEALED_ADMISSIONS as `ledger admit WINDOW -` reads them: one JSON object a line."""
    return "".join(json.dumps(item) + "\n" for item in SEALED_ADMISSIONS)


# --- reading stored events as they are ----------------------------------------------------------


def stored_states(database_url: str, window_id: str) -> dict[int, tuple[str, dict[str, Any]]]:
    """The window's stored events: version -> (event type name, decoded stored state)."""
    uuid = window_uuid(window_id)
    key = uuid.hex if _is_sqlite(database_url) else uuid
    with _event_store(database_url) as (conn, table, p):
        rows = conn.execute(
            f"SELECT originator_version, topic, state FROM {table} WHERE originator_id = {p} "
            "ORDER BY originator_version",
            (key,),
        ).fetchall()
    return {
        int(version): (str(topic).rsplit(".", 1)[-1], json.loads(bytes(state)))
        for version, topic, state in rows
    }


def _replaced_by(state: dict[str, Any]) -> Callable[[bytes], bytes]:
    encoded = json.dumps(state).encode()
    return lambda _: encoded


def _digest_of(version: int, type_name: str, state: dict[str, Any], prev_digest: str) -> str:
    recorded_at = format_recorded_at(datetime.fromisoformat(state["timestamp"]))
    fields = {k: v for k, v in state.items() if k not in META_KEYS}
    return chain_digest(prev_digest, version, type_name, recorded_at, fields)


# --- the tamperings -----------------------------------------------------------------------------


def edit_admitted_payload_in_place(database_url: str, window_id: str) -> None:
    """(1) Event "1"'s stored payload 2500 -> 2600, digests left as they were."""

    def edit(state: bytes) -> bytes:
        data = json.loads(state)
        assert data["payload"] == {"amount": STORED_AMOUNT}, data
        data["payload"] = {"amount": EDITED_AMOUNT}
        return json.dumps(data).encode()

    rewrite_stored_event(database_url, window_id, 2, edit)


def rewrite_tail_with_recomputed_digests(database_url: str, window_id: str) -> None:
    """(2) Event "3" (version 4) gets another payload and its payload hash; the digests of
    versions 4..6 are recomputed, so the chain verifies on its own."""
    stored = stored_states(database_url, window_id)
    head = stored[3][1]["digest"]
    for version in range(4, max(stored) + 1):
        type_name, state = stored[version]
        if version == 4:
            assert type_name == "EventAdmitted", type_name
            state["payload"] = {"amount": REWRITTEN_AMOUNT}
            state["payload_hash"] = sha256_hex(canonicalize(state["payload"]))
        state["prev_digest"] = head
        state["digest"] = head = _digest_of(version, type_name, state, head)
        rewrite_stored_event(database_url, window_id, version, _replaced_by(state))


def truncate_tail(database_url: str, window_id: str) -> None:
    """(3) The last two events deleted: the WindowClosed and the duplicate before it."""
    for version in (SEALED_EVENTS, SEALED_EVENTS - 1):
        delete_stored_event(database_url, window_id, version)


def delete_middle_event(database_url: str, window_id: str) -> None:
    """(4) Event "2"'s EventAdmitted (version 3) deleted: a hole."""
    delete_stored_event(database_url, window_id, 3)


def delete_newest_row(database_url: str, window_id: str) -> None:
    """(5) The newest row of the events table deleted: the window's WindowClosed."""
    newest = newest_event_id(database_url)
    ids = event_ids(database_url, window_id)
    assert ids[SEALED_EVENTS] == newest, f"the newest row {newest} is not the close: {ids}"
    delete_stored_event(database_url, window_id, SEALED_EVENTS)


def edit_read_model_payload(database_url: str, window_id: str) -> None:
    """(6) The read side's copy of event "1" (rm_admitted.payload) says 2600."""
    with _event_store(database_url) as (conn, _, p):
        cursor = conn.execute(
            f"UPDATE rm_admitted SET payload = {p} WHERE window_id = {p} AND identity = {p}",
            (json.dumps({"amount": EDITED_AMOUNT}), window_id, identity(window_id, "1")),
        )
        assert cursor.rowcount == 1


@dataclass(frozen=True)
class Tampering:
    name: str
    apply: Callable[[str, str], None]  # (database_url, window_id)
    reason: str  # what the first reason of the failed check says (a part of it)
    first_bad_version: int | None  # what verify names
    in_history: bool = True  # False: the stored history is intact (the read model was edited)

    def __str__(self) -> str:
        return self.name


TAMPERINGS = [
    Tampering("in-place-edit", edit_admitted_payload_in_place, "hash chain broken at version 2", 2),
    Tampering(
        "rewritten-tail",
        rewrite_tail_with_recomputed_digests,
        "is not the signed receipt's",
        SEALED_EVENTS,
    ),
    Tampering(
        "truncated-tail", truncate_tail, "no longer ends at its WindowClosed", SEALED_EVENTS - 1
    ),
    # Version 3 is gone: the first stored event that does not follow on is version 4.
    Tampering("deleted-middle-event", delete_middle_event, "hash chain broken at version 4", 4),
    Tampering(
        "deleted-newest-row", delete_newest_row, "no longer ends at its WindowClosed", SEALED_EVENTS
    ),
    Tampering(
        "edited-read-model-payload",
        edit_read_model_payload,
        "the payload served differs from the payload_hash in the stored chain",
        None,
        in_history=False,
    ),
]
HISTORY_TAMPERINGS = [t for t in TAMPERINGS if t.in_history]
(READ_MODEL_TAMPERING,) = [t for t in TAMPERINGS if not t.in_history]
