"""An exported bundle (contract s.9: the signed receipt, then the window's whole history, one
JSON line each) checked by the code `ledger verify --bundle` runs, with no database: built here
in-process from a real Window and a real Ed25519 key, then changed one byte at a time.

Evidence is checked as it was kept: any change of one byte must fail the check, even where JSON
would allow it (a space after a comma turned into a tab, the last newline into a space).
"""

from __future__ import annotations

import base64
import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.application.evidence import signed_bytes
from ledger.domain import META_KEYS, Window, format_recorded_at
from ledger.infrastructure.signing import Ed25519Signer
from ledger.receipts import receipt_json
from service.cli import main

WINDOW = "w-unit"
H = "a" * 64


def sealed_window() -> Window:
    """A closed window that has seen admissions (one with text beyond ASCII and a source), a
    duplicate and a mismatch."""
    window = Window.open(WINDOW)
    for n, payload, source in [
        (1, {"amount": 2500, "note": "café ☕"}, {"partition": "p0", "offset": 3}),
        (2, {"amount": 100}, None),
        (3, {"amount": 7, "tags": ["x", "y"]}, {"partition": "p1", "offset": 0}),
    ]:
        window.admit(
            identity=f"{n:064x}",
            event_type="order.created",
            event_id=str(n),
            payload=payload,
            payload_hash=H,
            offset=n,
            source=source,
        )
    window.absorb_duplicate(identity=f"{2:064x}", payload_hash=H, offset=2)
    window.quarantine(
        identity=f"{3:064x}",
        event_type="order.created",
        event_id="3",
        original_hash=H,
        received_hash="b" * 64,
        received_payload={"amount": 8},
        source=None,
    )
    window.close(chain_verified=True)
    return window


def bundle_of(window: Window, signer: Ed25519Signer) -> list[bytes]:
    """The bundle's lines as `ledger export` writes them: the receipt as signed at close (no
    gate), then every event as the history serves it."""
    receipt = receipt_json(
        window_id=window.window_id,
        status=window.status,
        gate="PASS",
        counts=window.counts(),
        bus_offsets=window.bus_offset_range(),
        source_offsets=window.source_offset_ranges(),
        opened_at=window.opened_at,
        closed_at=window.closed_at,
        events=window.version,
        chain_head=window.chain_head,
    )
    del receipt["gate"]
    receipt["signature"] = {
        "alg": signer.alg,
        "key_id": signer.key_id,
        "value": signer.sign(signed_bytes(receipt)),
    }
    history = [
        {
            "version": e.originator_version,
            "type": type(e).__name__,
            "recorded_at": format_recorded_at(e.timestamp),
            "fields": {k: v for k, v in e.__dict__.items() if k not in META_KEYS},
            "prev_digest": e.prev_digest,
            "digest": e.digest,
        }
        for e in window.collect_events()
    ]
    return [
        (json.dumps(value, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        for value in [receipt, *history]
    ]


SIGNER = Ed25519Signer(Ed25519PrivateKey.generate(), Path("not-written.pem"), created=False)
LINES = bundle_of(sealed_window(), SIGNER)
BUNDLE = b"".join(LINES)
RECEIPT = json.loads(LINES[0])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundle")
    (path / "key.pem").write_text(SIGNER.public_key_pem, encoding="ascii")
    return path


def check(workdir: Path, bundle: bytes, key: Path | None = None) -> tuple[int, str, str]:
    """`ledger verify --bundle FILE --public-key PEM`, run in this process: (exit, out, err)."""
    path = workdir / "bundle.jsonl"
    path.write_bytes(bundle)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(
            ["verify", "--bundle", str(path), "--public-key", str(key or workdir / "key.pem")]
        )
    return code, out.getvalue(), err.getvalue()


def held(bundle: bytes) -> list[Any]:
    """The JSON values a bundle holds, line by line, as the check reads them (None for a line
    that is not JSON)."""
    values = []
    for raw in io.BytesIO(bundle):
        if raw.strip():
            try:
                values.append(json.loads(raw))
            except ValueError:
                values.append(None)
    return values


def flip(line: int, at: int, byte: int) -> bytes:
    lines = list(LINES)
    changed = bytearray(lines[line])
    changed[at] = byte
    lines[line] = bytes(changed)
    return b"".join(lines)


def test_a_bundle_of_a_real_window_signed_with_a_real_key_verifies_with_the_bundle_check(
    workdir: Path,
) -> None:
    code, out, err = check(workdir, BUNDLE)
    assert code == 0, out + err
    assert json.loads(out) == {
        "ok": True,
        "events": len(LINES) - 1,
        "head": RECEIPT["chain_head"],
        "first_bad_version": None,
        "reasons": [],
    }


def test_the_signature_is_over_the_rfc8785_bytes_of_the_receipt_without_signature_and_gate() -> (
    None
):
    body = {k: v for k, v in RECEIPT.items() if k != "signature"}
    key = load_pem_public_key(SIGNER.public_key_pem.encode("ascii"))
    assert isinstance(key, Ed25519PublicKey)
    key.verify(base64.b64decode(RECEIPT["signature"]["value"]), rfc8785.dumps(body))
    assert signed_bytes({**RECEIPT, "gate": "FAIL"}) == rfc8785.dumps(body)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_flipping_any_one_byte_of_a_bundle_fails_the_check(
    workdir: Path, data: st.DataObject
) -> None:
    # Every line is as likely as any other: the receipt (and its signature) as much as each
    # history line.
    line = data.draw(st.integers(0, len(LINES) - 1), label="line")
    at = data.draw(st.integers(0, len(LINES[line]) - 1), label="offset in the line")
    old = LINES[line][at]
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != old), label="new byte")
    flipped = flip(line, at, byte)
    code, out, err = check(workdir, flipped)
    assert code == 1, f"line {line}, byte {at} -> {byte:#04x} still verifies: {out}"
    assert err.startswith("verification failed: "), err


@pytest.mark.parametrize(
    ("line", "needle", "reason"),
    [
        (0, b'"events": ', "the receipt's signature does not hold"),
        (0, b'"key_id": "', "the receipt was signed by key"),
        (0, b'"value": "', "the receipt's signature does not hold"),
        (1, b'"window_id": "', "hash chain broken at version 1"),
        (2, b'"amount": ', "hash chain broken at version 2"),
        (4, b'"prev_digest": "', "hash chain broken at version 4"),
        (len(LINES) - 1, b'"digest": "', f"hash chain broken at version {len(LINES) - 1}"),
    ],
)
def test_one_byte_changed_in_the_receipt_the_signature_or_any_history_line_is_named(
    workdir: Path, line: int, needle: bytes, reason: str
) -> None:
    at = LINES[line].index(needle) + len(needle)  # the value's first character
    old = LINES[line][at]
    byte = ord("1") if old != ord("1") else ord("2")
    code, _, err = check(workdir, flip(line, at, byte))
    assert code == 1
    assert err.startswith(f"verification failed: {reason}"), err


def test_a_signature_value_re_encoded_with_other_unused_base64_bits_fails_the_check(
    workdir: Path,
) -> None:
    # 64 signature bytes are 86 base64 characters and "==": the last character carries 2 bits
    # of the signature and 4 bits that decoders ignore. Changing only those is one changed
    # byte of the bundle that still decodes to the very same signature.
    value = RECEIPT["signature"]["value"]
    assert len(value) == 88 and value.endswith("==")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(value[-3])
    twin = alphabet[last ^ 0b0001]
    reencoded = value[:-3] + twin + "=="
    assert base64.b64decode(reencoded, validate=True) == base64.b64decode(value)
    at = LINES[0].index(value.encode("ascii")) + 85
    flipped = flip(0, at, ord(twin))
    assert held(flipped) != held(BUNDLE)
    code, out, _ = check(workdir, flipped)
    assert code == 1, f"a signature value that is not the one signed at close verifies: {out}"


def test_a_bundle_checked_under_another_public_key_fails_naming_the_key_ids(
    workdir: Path,
) -> None:
    other = Ed25519Signer(Ed25519PrivateKey.generate(), Path("not-written.pem"), created=False)
    key = workdir / "other.pem"
    key.write_text(other.public_key_pem, encoding="ascii")
    code, _, err = check(workdir, BUNDLE, key)
    assert code == 1
    assert SIGNER.key_id in err and other.key_id in err, err


@pytest.mark.parametrize(
    ("what", "bundle"),
    [
        ("no history", LINES[0]),
        ("a history line missing", b"".join(LINES[:3] + LINES[4:])),
        ("the last line missing", b"".join(LINES[:-1])),
        ("two lines swapped", b"".join([LINES[0], LINES[2], LINES[1], *LINES[3:]])),
        ("a line twice", b"".join([*LINES, LINES[-1]])),
        ("no receipt", b"".join(LINES[1:])),
        # Deep enough that the JSON decoder gives up (a RecursionError, once a traceback).
        ("a line nested 100,000 deep", b"".join([*LINES[:2], b"[" * 100_000 + b"\n", *LINES[2:]])),
    ],
)
def test_a_bundle_with_lines_removed_added_or_moved_fails_the_check(
    workdir: Path, what: str, bundle: bytes
) -> None:
    code, out, err = check(workdir, bundle)
    assert code == 1, f"{what}: {out}"
    assert err.startswith("verification failed: "), err
