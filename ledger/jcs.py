"""RFC 8785 JSON Canonicalization Scheme, standard library only.

The domain hashes with this module so that it depends on nothing but the standard library;
the test suite checks it against the `rfc8785` package and the RFC's own vectors.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from decimal import Decimal
from itertools import accumulate, chain, zip_longest
from json.encoder import encode_basestring
from operator import neg
from typing import Any

MAX_SAFE_INTEGER = 2**53 - 1
# How many arrays and objects a payload may nest (`{}` is 1 level; ADR 0023). Decoders, this
# module's serializer and the JSON encoders recurse once a level, and the interpreter stops
# near 1,000 levels with a RecursionError: the limit keeps every hashed value far from that.
MAX_DEPTH = 64


class CanonicalizationError(ValueError):
    """The value has no canonical JSON form (big integer, NaN, Infinity, lone surrogate...)."""


class Canonical:
    """A JSON value given by its canonical bytes, embedded verbatim by `canonicalize`.

    The caller vouches that `data` is `canonicalize(value)` of some value: a payload hashed on
    arrival is not walked and encoded a second time to chain the event that carries it.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


# The C-accelerated JSON string encoder escapes exactly what RFC 8785 escapes (quote, backslash,
# \b \f \n \r \t, other controls as lowercase \u00xx) and passes everything else through.
_string = encode_basestring


def _number(value: float) -> str:
    """ECMAScript Number.prototype.toString, which RFC 8785 adopts for numbers."""
    if math.isnan(value) or math.isinf(value):
        raise CanonicalizationError(f"{value!r} is not a JSON number")
    if value == 0:
        return "0"  # also -0.0
    sign = "-" if value < 0 else ""
    # repr() gives the shortest digits that round-trip, as ECMAScript requires.
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exponent = int(exponent) + (len(digit_tuple) - len(digits))
    k = len(digits)
    n = exponent + k
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        body = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + body


def _serialize(value: Any, out: list[str]) -> None:
    if value is None or value is True or value is False:
        out.append(_LITERALS[value])
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        out.append(_integer(value))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, dict):
        _serialize_object(value, out)
    elif type(value) is Canonical:
        out.append(value.data.decode("utf-8"))
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _serialize(item, out)
        out.append("]")
    else:
        raise CanonicalizationError(f"{type(value).__name__} is not a JSON value")


_LITERALS = {None: "null", True: "true", False: "false"}


def _integer(value: int) -> str:
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise CanonicalizationError(
            f"integer {value} is outside +-(2^53 - 1) and cannot be canonicalized"
        )
    return str(value)


def _serialize_object(value: dict[Any, Any], out: list[str]) -> None:
    out.append("{")
    items = sorted(value.items(), key=_sort_key(value))
    for i, (key, item) in enumerate(items):
        if i:
            out.append(",")
        out.append(_string(key))
        out.append(":")
        _serialize(item, out)
    out.append("}")


def _sort_key(obj: dict[Any, Any]) -> Any:
    # RFC 8785 sorts by UTF-16 code units; big-endian UTF-16 bytes compare the same way, and
    # for ASCII keys plain string order is the same order.
    if all(type(k) is str and k.isascii() for k in obj):
        return _first
    return _utf16_first


def _first(item: tuple[str, Any]) -> str:
    return item[0]


def _utf16_first(item: tuple[Any, Any]) -> bytes:
    return _utf16_key(item[0])


def _utf16_key(key: object) -> bytes:
    if not isinstance(key, str):
        raise CanonicalizationError("object keys must be strings")
    try:
        return key.encode("utf-16-be")
    except UnicodeEncodeError as exc:
        raise CanonicalizationError("object key is not valid Unicode") from exc


_fast_encode = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
).encode


_NOT_PLAIN, _PLAIN, _PLAIN_WITH_CANONICAL = 0, 1, 2


def _plain(value: Any) -> int:
    """_PLAIN when the C-accelerated stdlib encoder writes exactly the RFC 8785 text: no floats
    (ECMAScript number formatting differs), integers in the safe range, and keys within the
    BMP (where code point order equals UTF-16 code unit order); _PLAIN_WITH_CANONICAL when it
    also holds `Canonical` leaves. Iterative: this runs per admission, so it avoids recursion
    and generators."""
    found = _PLAIN
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                return _NOT_PLAIN
        elif kind is dict:
            for key, child in item.items():
                if type(key) is not str or not (key.isascii() or max(key) <= "\uffff"):
                    return _NOT_PLAIN
                if type(child) is not str:
                    push(child)
        elif kind is list or kind is tuple:
            stack.extend(item)
        elif kind is Canonical:
            found = _PLAIN_WITH_CANONICAL
        else:
            return _NOT_PLAIN
    return found


def _stdlib_plain_bytes(value: Any) -> bytes:
    return _fast_encode(value).encode("utf-8")


# How "plain" values are written (see _plain). The standard library's C encoder by default; the
# composition root may plug in a faster encoder that writes the same bytes (a port: the domain
# imports nothing but the standard library, and the test suite holds any encoder to rfc8785).
_plain_bytes: Callable[[Any], bytes] = _stdlib_plain_bytes
_plain_embeds_canonical = False


def use_plain_encoder(
    encoder: Callable[[Any], bytes] | None, *, embeds_canonical: bool = False
) -> None:
    """Install an encoder for plain values (None restores the standard library's).

    `embeds_canonical`: the encoder writes a `Canonical` leaf's bytes verbatim.
    """
    global _plain_bytes, _plain_embeds_canonical
    _plain_bytes = encoder or _stdlib_plain_bytes
    _plain_embeds_canonical = embeds_canonical and encoder is not None


def canonicalize(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value (`Canonical` leaves as given)."""
    kind = _plain(value)
    if kind == _PLAIN or (kind == _PLAIN_WITH_CANONICAL and _plain_embeds_canonical):
        try:
            return _plain_bytes(value)
        except UnicodeEncodeError as exc:
            raise CanonicalizationError(
                "text contains a lone surrogate (not valid Unicode)"
            ) from exc
    out: list[str] = []
    _serialize(value, out)
    text = "".join(out)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalizationError("text contains a lone surrogate (not valid Unicode)") from exc


def canonical_string(text: str) -> bytes:
    """The RFC 8785 form of one string (what `canonicalize(text)` returns), directly."""
    try:
        return _string(text).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalizationError("text contains a lone surrogate (not valid Unicode)") from exc


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_CONTAINERS = (dict, list, tuple)


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether a JSON value nests more than `limit` arrays and objects. Level by level, never
    recursing: the value may be nested deeper than the interpreter's stack allows."""
    level = [value] if isinstance(value, _CONTAINERS) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [
            child
            for container in level
            for child in (container.values() if isinstance(container, dict) else container)
            if isinstance(child, _CONTAINERS)
        ]
    return False


# For the text scan: braces become brackets, quotes stay, every other byte goes.
_TO_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKET_OR_QUOTE = bytes(sorted(set(range(256)) - set(b'"[]{}')))


def text_nested_deeper_than(text: bytes, limit: int) -> bool:
    """Whether JSON text nests more than `limit` arrays and objects, told before any decoder
    recurses into it: linear, with the standard library's C string functions, never parsing.

    Brackets inside strings do not count. Exact for well-formed JSON; text that is not (an
    unclosed `[`...) may be judged deeper than it is, never shallower, so no decoder given
    text this accepts recurses more than `limit` levels."""
    if text.count(b"[") + text.count(b"{") <= limit:
        return False  # the common case: too few brackets to nest that deep, wherever they are
    if b"\\" in text:
        # Escaped backslashes first (pairs, from the left, as JSON reads them), then escaped
        # quotes: every quote left opens or closes a string.
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Two quotes side by side have no bracket between them: dropping both keeps every other
    # quote's parity, and takes nearly every string away at C speed. Of what is left, the even
    # parts between quotes lie outside strings.
    kept = text.translate(_TO_BRACKETS, _NOT_BRACKET_OR_QUOTE).replace(b'""', b"")
    if b'"' in kept:
        kept = b"".join(kept.split(b'"')[::2])
    return _bracket_depth(kept, limit) > limit


_STRUCTURE = bytes.maketrans(b"{:", b"[,")
_NOT_STRUCTURE_OR_QUOTE = bytes(sorted(set(range(256)) - set(b'"[{,:')))


def text_values(text: bytes) -> int:
    """About how many values JSON text holds (its arrays, objects and separators outside
    strings), told without decoding: what decoding it will cost in memory, which its length
    alone does not say (`[{},{},...]` costs forty times its bytes)."""
    upper = sum(map(text.count, (b"[", b"{", b",", b":")))
    if upper < 4096:
        return upper  # few enough not to matter: no need to tell strings apart
    if b"\\" in text:
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    kept = text.translate(_STRUCTURE, _NOT_STRUCTURE_OR_QUOTE).replace(b'""', b"")
    if b'"' in kept:
        kept = b"".join(kept.split(b'"')[::2])
    return len(kept)


def _bracket_depth(brackets: bytes, limit: int) -> int:
    """The deepest running depth of a run of `[` and `]`, or more than `limit` once it is
    known to exceed it; never less than the running depth, however unbalanced.

    A pass removes the innermost level of every nest at once: while passes remove much, the
    cheapest way down (ordinary JSON is many small nests). Once one removes little, few peaks
    are left, and the rest is summed run by run (a crafted 16 MiB body costs about a second,
    less than decoding it would; ADR 0023)."""
    passes = 0
    while passes <= limit and b"[]" in brackets:
        reduced = brackets.replace(b"[]", b"")
        removed_much = len(reduced) * 8 <= len(brackets) * 7
        brackets, passes = reduced, passes + 1
        if not removed_much:
            break
    # A pass takes at most one level off any point of the text, so the passes plus the
    # deepest running sum of what is left is never less than the depth the text had.
    rises = map(len, brackets.replace(b"]", b" ").split())
    falls = map(neg, map(len, brackets.replace(b"[", b" ").split()))
    runs = (falls, rises) if brackets[:1] == b"]" else (rises, falls)  # they alternate
    steps = chain.from_iterable(zip_longest(*runs, fillvalue=0))
    return passes + max(accumulate(steps, initial=0))
