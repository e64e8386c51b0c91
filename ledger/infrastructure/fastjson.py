"""A faster writer for RFC 8785 "plain" values (no floats, safe integers, BMP keys).

For those values msgspec's sorted-keys encoder writes exactly the canonical bytes (same string
escaping, code point key order equals UTF-16 order within the BMP), about ten times faster than
the standard library's encoder, and it embeds a `jcs.Canonical` leaf verbatim (`msgspec.Raw`).
`ledger.jcs` stays standard-library only; the composition root installs this
(tests/unit/test_jcs.py holds both encoders to the `rfc8785` package).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ledger import jcs


def _embed(value: Any) -> msgspec.Raw:
    if type(value) is jcs.Canonical:
        return msgspec.Raw(value.data)
    raise NotImplementedError(f"{type(value).__name__} is not a JSON value")


_encoder = msgspec.json.Encoder(order="sorted", enc_hook=_embed)


def install() -> None:
    jcs.use_plain_encoder(_encoder.encode, embeds_canonical=True)
