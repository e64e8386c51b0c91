"""`PreparedOnUse`: a batch checked and given its identities when made, its payloads prepared
when it is first used (ADR 0040)."""

from __future__ import annotations

import pytest

from ledger.admissions import AdmissionIn, PreparedOnUse, SourceIn, identities_of, prepare
from ledger.errors import InvalidAdmission


def item(event_id: str, payload: dict[str, object], source: SourceIn | None = None) -> AdmissionIn:
    return AdmissionIn(
        event_type="order.created", event_id=event_id, payload=payload, source=source
    )


def test_a_batch_prepared_on_use_holds_what_prepare_makes_in_the_same_order() -> None:
    items = [
        item("1", {"b": 2, "a": [1, "x"]}),
        item("2", {"z": None}, SourceIn(partition="p", offset=7)),
        item("1", {"a": 1}),
    ]
    batch = PreparedOnUse("w", items)
    assert list(batch) == prepare("w", items)
    assert batch[1:] == prepare("w", items)[1:]
    assert identities_of(batch) == [a.identity for a in prepare("w", items)]


def test_its_payloads_are_prepared_when_it_is_first_used_not_when_it_is_made() -> None:
    batch = PreparedOnUse("w", [item("1", {"n": 1}), item("2", {"n": 2**60})])
    assert len(batch) == 2
    assert identities_of(batch) == [
        a.identity for a in prepare("w", [item("1", {}), item("2", {})])
    ]
    with pytest.raises(InvalidAdmission, match=r"events\[1\]\.payload: integer"):
        list(batch)


def test_a_bad_name_is_refused_when_it_is_made() -> None:
    with pytest.raises(InvalidAdmission, match=r"events\[1\]\.event_type"):
        PreparedOnUse("w", [item("1", {}), AdmissionIn("a/b", "2", {})])
