"""The kernel's nesting limit (ADR 0023): how deep JSON text and values nest, told exactly for
well-formed JSON, never shallower than a decoder would go for text that is not, and without
recursing however deep the input; and `prepare` refusing a payload past the limit."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.admissions import AdmissionIn, prepare
from ledger.errors import NestingTooDeep
from ledger.jcs import MAX_DEPTH, nested_deeper_than, text_nested_deeper_than, text_values


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


OPENER_OF = {"]": "[", "}": "{"}


def decoder_depth(text: bytes) -> int:
    """How many containers a decoder reading `text` from the left has open at most before it
    stops: at the end, at a closer that matches nothing, or at a backslash outside a string."""
    deepest, open_ = 0, []
    in_string = escaped = False
    for char in text.decode("latin-1"):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == "\\":
            break
        elif char == '"':
            in_string = True
        elif char in "[{":
            open_.append(char)
            deepest = max(deepest, len(open_))
        elif char in "]}" and (not open_ or open_.pop() != OPENER_OF[char]):
            break
    return deepest


# Strings full of what a scanner might mistake for structure.
tricky_text = st.text(
    st.sampled_from(list('[]{}"\\/ ,:an\u00e9\u2028\U0001f600')) | st.characters(codec="utf-8"),
    max_size=12,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | tricky_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(tricky_text, children, max_size=4)
    ),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(json_values, st.integers(0, 12), st.booleans())
def test_the_depth_of_well_formed_json_is_told_exactly_from_its_text_and_its_value(
    value: Any, limit: int, ascii_only: bool
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")
    deeper = depth_of(value) > limit
    assert text_nested_deeper_than(text, limit) is deeper, text
    assert nested_deeper_than(value, limit) is deeper


@settings(max_examples=400, deadline=None)
@given(st.binary().map(lambda b: bytes(b'[]{}"\\a,'[x % 8] for x in b)), st.integers(0, 8))
def test_malformed_text_is_never_judged_shallower_than_a_decoder_would_go(
    text: bytes, limit: int
) -> None:
    if decoder_depth(text) > limit:
        assert text_nested_deeper_than(text, limit), text


def test_input_far_deeper_than_the_interpreter_stack_is_judged_without_recursion() -> None:
    value: Any = 1
    for _ in range(100_000):
        value = [value]
    assert nested_deeper_than(value, MAX_DEPTH)
    assert text_nested_deeper_than(b"[" * 100_000, MAX_DEPTH)
    assert text_nested_deeper_than(b"[" * 50_000 + b"]" * 50_000, MAX_DEPTH)
    # The same brackets inside a string are no nesting at all.
    assert not text_nested_deeper_than(b'"' + b"[" * 100_000 + b'"', MAX_DEPTH)
    two_deep = b'["\\\\", "\\"[[[[", ' + b"[]," * 10_000 + b"1]"
    assert not text_nested_deeper_than(two_deep, 2)
    assert text_nested_deeper_than(two_deep, 1)


def _payload(depth: int) -> dict[str, Any]:
    value: Any = 1.5
    for _ in range(depth - 1):
        value = [value]
    return {"a": value}


def test_prepare_refuses_a_payload_nested_deeper_than_the_limit_before_canonicalizing() -> None:
    assert MAX_DEPTH == 64  # the documented limit
    prepare(
        "w", [msgspec.convert({"event_type": "t", "event_id": "ok", "payload": {}}, AdmissionIn)]
    )
    edge = AdmissionIn(event_type="t", event_id="edge", payload=_payload(MAX_DEPTH))
    assert prepare("w", [edge])[0].payload == edge.payload
    for depth in (MAX_DEPTH + 1, 5_000):  # 5,000 would overflow the canonicalizer's stack
        item = AdmissionIn(event_type="t", event_id="deep", payload=_payload(depth))
        with pytest.raises(NestingTooDeep, match=r"events\[1\]\.payload .* 64 levels"):
            prepare("w", [edge, item])


def test_values_are_counted_outside_strings_only() -> None:
    assert text_values(b"[1,2,3]") == 3  # the bracket and two commas
    many = b"[" + b"{}," * 5000 + b"{}]"
    assert text_values(many) == 1 + 5001 + 5000
    quoted = b'{"a":"' + b"[,{:" * 5000 + b'","b":[1,2]}'
    assert text_values(quoted) == 6  # { : , : [ , and nothing of the string
