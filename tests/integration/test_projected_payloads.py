"""The read side's RFC 8785 text of a payload, taken from msgspec's sorted-key encoding when
the event's hash of the canonical bytes vouches for it (`projections.base.hashed_to_json`)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.jcs import CanonicalizationError
from projections import base

# JSON values with what the sorted-key encoding writes differently from RFC 8785: floats,
# integers past 2^53, keys outside the BMP, control characters.
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12),
)
names = st.one_of(st.text(max_size=6), st.sampled_from(["\U0001f600", "\ue000", "\x07", "b", "a"]))
payloads = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(names, inner, max_size=4)),
    max_leaves=20,
)


def canonical_hash(value: Any) -> str:
    return hashlib.sha256(rfc8785.dumps(value)).hexdigest()


@settings(max_examples=300, deadline=None)
@given(payloads)
def test_a_payload_vouched_for_by_its_hash_reads_back_as_its_rfc_8785_text(value: Any) -> None:
    assert base.hashed_to_json(value, canonical_hash(value)) == rfc8785.dumps(value).decode()


@settings(max_examples=300, deadline=None)
@given(payloads)
def test_a_payload_whose_hash_does_not_match_is_still_written_in_rfc_8785_form(value: Any) -> None:
    # A changed stored payload no longer matches the hash recorded with it.
    assert base.hashed_to_json(value, "0" * 64) == rfc8785.dumps(value).decode()


def test_a_plain_payload_with_its_hash_is_not_canonicalized_the_long_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    payload = {"seq": 17, "kind": "benchmark", "amount_cents": 1250, "note": 'a "q" \n'}
    expected = rfc8785.dumps(payload).decode()

    def long_way(value: Any) -> str:
        raise AssertionError("canonicalized the long way")

    monkeypatch.setattr(base, "to_json", long_way)
    assert base.hashed_to_json(payload, canonical_hash(payload)) == expected


def test_a_payload_with_no_canonical_form_is_refused_as_canonicalizing_refuses_it() -> None:
    with pytest.raises(CanonicalizationError):
        base.hashed_to_json({"k": "\ud800"}, "0" * 64)
    with pytest.raises(CanonicalizationError):
        base.hashed_to_json({"k": 2**60}, "0" * 64)
