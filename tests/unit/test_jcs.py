"""ledger.jcs against RFC 8785: the RFC's own vectors, edge cases, and the `rfc8785` package."""

from __future__ import annotations

import struct
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.jcs import MAX_SAFE_INTEGER, CanonicalizationError, canonicalize, sha256_hex


def from_ieee(bits: str) -> float:
    """A float from the hex IEEE 754 bit pattern the RFC's number table uses."""
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


# RFC 8785 Appendix B: IEEE 754 bit pattern -> ECMAScript serialization.
RFC_NUMBER_VECTORS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), RFC_NUMBER_VECTORS)
def test_every_number_vector_of_the_rfc_serializes_as_the_rfc_says(
    bits: str, expected: str
) -> None:
    assert canonicalize(from_ieee(bits)) == expected.encode("ascii")


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_the_rfc_nan_and_infinity_bit_patterns_are_rejected(bits: str) -> None:
    with pytest.raises(CanonicalizationError):
        canonicalize(from_ieee(bits))


def test_the_rfc_main_example_canonicalizes_byte_for_byte() -> None:
    # RFC 8785 section 3.2.2 (input parsed as JSON would be parsed).
    value = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonicalize(value) == expected.encode("utf-8")


def test_the_rfc_sorting_example_orders_keys_by_utf16_code_units() -> None:
    # RFC 8785 section 3.2.3.
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    expected = (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    )
    assert canonicalize(value) == expected.encode("utf-8")


def test_a_non_bmp_key_sorts_before_a_private_use_bmp_key_as_utf16_requires() -> None:
    # U+1F600 is D83D DE00 in UTF-16, which is below E000; code point order would say otherwise.
    value = {"\ue000": "bmp", "\U0001f600": "astral"}
    assert canonicalize(value) == '{"\U0001f600":"astral","\ue000":"bmp"}'.encode()
    assert canonicalize(value) == rfc8785.dumps(value)


def test_ascii_keys_sort_in_plain_order_whatever_their_insertion_order() -> None:
    assert canonicalize({"b": 1, "a": 2, "A": 3, "aa": 4}) == b'{"A":3,"a":2,"aa":4,"b":1}'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (-0.0, "0"),
        (0.0, "0"),
        (1.0, "1"),
        (-1.5, "-1.5"),
        (1e-7, "1e-7"),
        (1e-6, "0.000001"),
        (123e-20, "1.23e-18"),
    ],
)
def test_floats_use_ecmascript_number_formatting(value: float, expected: str) -> None:
    assert canonicalize(value) == expected.encode("ascii")


@pytest.mark.parametrize("value", [MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 0, 1, -1])
def test_integers_within_the_safe_range_are_accepted(value: int) -> None:
    assert canonicalize(value) == str(value).encode("ascii")
    assert canonicalize({"n": value}) == f'{{"n":{value}}}'.encode("ascii")


def test_the_safe_range_limits_are_two_to_the_53_minus_one() -> None:
    assert MAX_SAFE_INTEGER == 2**53 - 1
    assert canonicalize(2**53 - 1) == b"9007199254740991"
    assert canonicalize(-(2**53 - 1)) == b"-9007199254740991"


@pytest.mark.parametrize("value", [2**53, -(2**53), 2**60, -(2**60), 10**30])
def test_integers_outside_the_safe_range_are_rejected(value: int) -> None:
    with pytest.raises(CanonicalizationError):
        canonicalize(value)
    with pytest.raises(CanonicalizationError):
        canonicalize({"nested": [1, {"deep": value}]})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinities_are_rejected_anywhere(value: float) -> None:
    with pytest.raises(CanonicalizationError):
        canonicalize(value)
    with pytest.raises(CanonicalizationError):
        canonicalize({"a": [value]})


@pytest.mark.parametrize("value", ["\ud800", "a\udfffb", {"\ud83d": 1}, {"k": ["\ude00"]}])
def test_a_lone_surrogate_in_a_string_or_key_is_rejected(value: Any) -> None:
    with pytest.raises(CanonicalizationError):
        canonicalize(value)


def test_a_properly_paired_surrogate_is_written_as_utf8_of_the_code_point() -> None:
    assert canonicalize("\U0001f600") == '"\U0001f600"'.encode()
    assert canonicalize("\U0001f600") == b'"\xf0\x9f\x98\x80"'


@pytest.mark.parametrize(
    ("char", "escaped"),
    [
        ("\u0000", "\\u0000"),
        ("\u0001", "\\u0001"),
        ("\u000b", "\\u000b"),
        ("\u000e", "\\u000e"),
        ("\u001f", "\\u001f"),
        ("\u001a", "\\u001a"),
        ("\b", "\\b"),
        ("\f", "\\f"),
        ("\n", "\\n"),
        ("\r", "\\r"),
        ("\t", "\\t"),
        ('"', '\\"'),
        ("\\", "\\\\"),
    ],
)
def test_control_characters_and_quotes_are_escaped_with_lowercase_hex(
    char: str, escaped: str
) -> None:
    assert canonicalize(char) == f'"{escaped}"'.encode("ascii")


@pytest.mark.parametrize("char", ["\u007f", "/", "\u2028", "\u2029", "\u00e9", "<"])
def test_other_characters_are_written_as_themselves(char: str) -> None:
    assert canonicalize(char) == f'"{char}"'.encode()


@pytest.mark.parametrize("value", [{1: "int key"}, {None: 1}, b"bytes", {1, 2}, object()])
def test_values_that_are_not_json_are_rejected(value: Any) -> None:
    with pytest.raises(CanonicalizationError):
        canonicalize(value)


def test_literals_empty_containers_and_nesting_have_no_whitespace() -> None:
    value = {"z": [], "y": {}, "x": [None, True, False, [{}]], "w": ""}
    assert canonicalize(value) == b'{"w":"","x":[null,true,false,[{}]],"y":{},"z":[]}'


def test_sha256_hex_is_lowercase_hex_of_the_bytes() -> None:
    digest = sha256_hex(b"abc")
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# --- property: the stdlib implementation agrees with the rfc8785 package ------------------

safe_ints = st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
texts = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"]),  # no lone surrogates
    max_size=20,
)
astral_texts = st.text(
    alphabet=st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF), max_size=4
)
keys = st.one_of(texts, astral_texts, st.sampled_from(["\ue000", "\U0001f600", "\r", "a"]))
scalars = st.one_of(st.none(), st.booleans(), safe_ints, finite_floats, texts, astral_texts)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_canonicalize_agrees_with_the_rfc8785_package_on_any_json_value(value: Any) -> None:
    assert canonicalize(value) == rfc8785.dumps(value)


@settings(max_examples=300, deadline=None)
@given(finite_floats)
def test_every_finite_float_formats_like_the_rfc8785_package(value: float) -> None:
    assert canonicalize(value) == rfc8785.dumps(value)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, safe_ints, max_size=8))
def test_the_canonical_form_does_not_depend_on_key_insertion_order(
    value: dict[str, int],
) -> None:
    reversed_order = dict(reversed(list(value.items())))
    assert canonicalize(reversed_order) == canonicalize(value)


# The composition root may install a faster encoder for plain values (ledger.infrastructure.
# fastjson); it must write the very same bytes as the RFC and the standard-library path.
@pytest.mark.parametrize("encoder", ["stdlib", "msgspec"])
@settings(max_examples=300, deadline=None)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=6), children, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_both_plain_value_encoders_write_the_rfc_8785_bytes(encoder: str, value: object) -> None:
    from ledger import jcs as module
    from ledger.infrastructure import fastjson

    if encoder == "msgspec":
        fastjson.install()
    else:
        module.use_plain_encoder(None)
    try:
        try:
            expected = rfc8785.dumps(value)
        except Exception:
            with pytest.raises(module.CanonicalizationError):
                module.canonicalize(value)
            return
        assert module.canonicalize(value) == expected
    finally:
        module.use_plain_encoder(None)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


# A payload hashed on arrival is embedded by its canonical bytes (jcs.Canonical) when its event
# is chained: the result must be the canonical form of the object holding the payload itself.
@pytest.mark.parametrize("encoder", ["stdlib", "msgspec"])
@settings(max_examples=300, deadline=None)
@given(
    fields=st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    name=st.text(max_size=8),
    payload=json_values,
)
def test_a_value_embedded_by_its_canonical_bytes_encodes_like_the_value_itself(
    encoder: str, fields: dict[str, Any], name: str, payload: Any
) -> None:
    from ledger import jcs as module
    from ledger.infrastructure import fastjson

    if encoder == "msgspec":
        fastjson.install()
    else:
        module.use_plain_encoder(None)
    try:
        expected = rfc8785.dumps({**fields, name: payload})
        embedded = {**fields, name: module.Canonical(rfc8785.dumps(payload))}
        assert module.canonicalize(embedded) == expected
    finally:
        module.use_plain_encoder(None)


@settings(max_examples=200, deadline=None)
@given(
    fields=st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    version=st.integers(1, 2**53 - 1),
    type_name=st.sampled_from(["WindowOpened", "EventAdmitted", "WindowClosed"]),
)
def test_the_chain_digest_is_sha256_of_the_previous_digest_and_the_rfc_8785_envelope(
    fields: dict[str, Any], version: int, type_name: str
) -> None:
    from ledger.domain import GENESIS_DIGEST, chain_digest

    recorded_at = "2026-11-25T19:45:22.123456Z"
    envelope = {"version": version, "type": type_name, "recorded_at": recorded_at, "fields": fields}
    expected = sha256_hex(GENESIS_DIGEST.encode() + rfc8785.dumps(envelope))
    assert chain_digest(GENESIS_DIGEST, version, type_name, recorded_at, fields) == expected
