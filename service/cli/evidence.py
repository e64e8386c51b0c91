"""`ledger export` and `ledger verify`: a window's evidence, checked live or offline.

`ledger verify --bundle FILE` needs no database and no service: the bundle (the signed receipt,
then the window's whole history, one JSON line each) and a public key are enough.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from ledger.application.evidence import (
    ChainWalk,
    first_bad_version,
    problems_against,
    signed_bytes,
)
from ledger.infrastructure.signing import key_id_of, load_public_key, signature_holds
from service.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, print_json, services
from service.settings import Settings


def cmd_export(args: argparse.Namespace) -> int:
    with services() as built:
        built.catch_up()
        signed = built.evidence.store.signed(args.window)
        if signed is None:
            print(
                f"error: window {args.window!r} has no signed receipt (it is signed at close)",
                file=sys.stderr,
            )
            return EXIT_FAILED
        with (
            _output(args.output) as out,
            tqdm(
                total=signed.get("events"),
                unit="ev",
                desc=f"exporting {args.window}",
                disable=args.output in (None, "-"),
                file=sys.stderr,
            ) as bar,
        ):
            out.write(_line(signed))
            for item in built.ledger.iter_history(args.window):
                out.write(_line(item))
                bar.update(1)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    if args.bundle:
        return _verify_bundle(Path(args.bundle), args.public_key)
    if not args.window:
        print("error: name a WINDOW, or give --bundle FILE", file=sys.stderr)
        return EXIT_BAD_INPUT
    with services() as built:
        verification, reasons = built.verify(args.window)
        # The command's answer is the gate's: the history, and the read side held to it.
        result = {**verification.as_json(), "ok": not reasons, "reasons": reasons}
        if args.receipt:
            kept = _first_json_line(Path(args.receipt))
            key = load_public_key(Path(args.public_key)) if args.public_key else None
            walk = built.ledger.reader.walk(args.window)
            extra = _signature_problems(kept, key, built.evidence.signer.public_key_pem)
            extra += problems_against(walk, kept, sealed=True)
            result["reasons"] += [r for r in extra if r not in result["reasons"]]
            result["ok"] = not result["reasons"]
    return _report(result)


def _verify_bundle(path: Path, public_key: str | None) -> int:
    lines = _json_lines(path)
    try:
        receipt = next(lines)
    except StopIteration:
        return _report({"ok": False, "reasons": [f"{path} is empty: no receipt"]})
    key_path = Path(public_key) if public_key else Settings.from_env().signing_key_path
    if not key_path.is_file():
        print(
            f"error: no public key to check the signature with ({key_path} does not exist): "
            "pass --public-key PEM (GET /v1/keys gives it)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    problems = _signature_problems(receipt, load_public_key(key_path), None)
    walk = ChainWalk()
    for n, item in enumerate(lines, start=1):
        if isinstance(item, dict):
            walk.step(item)
        else:
            walk.fail(n)
    problems += problems_against(walk, receipt, sealed=True)
    result = {
        **walk.verification().as_json(),
        "ok": not problems,
        "first_bad_version": first_bad_version(walk, receipt, sealed=True),
        "reasons": problems,
    }
    return _report(result)


def _signature_problems(receipt: Any, key: Any, service_key_pem: str | None) -> list[str]:
    """Whether the receipt's signature holds under `key` (or the service's own key)."""
    if not isinstance(receipt, dict) or not isinstance(receipt.get("signature"), dict):
        return ["the receipt line is not a signed receipt as exported"]
    signature = receipt["signature"]
    if key is None and service_key_pem is not None:
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        key = load_pem_public_key(service_key_pem.encode("ascii"))
    if signature.get("alg") != "Ed25519":
        return [f"the receipt's signature is {signature.get('alg')!r}, not Ed25519"]
    if signature.get("key_id") != key_id_of(key):
        return [
            f"the receipt was signed by key {signature.get('key_id')}, "
            f"not by the key given ({key_id_of(key)})"
        ]
    try:
        holds = signature_holds(key, signed_bytes(receipt), str(signature.get("value")))
    except Exception:  # a receipt that cannot be canonicalized is not the one signed
        holds = False
    return [] if holds else ["the receipt's signature does not hold: it is not what was signed"]


def _report(result: dict[str, Any]) -> int:
    print_json(result, sys.stdout)
    if result["ok"]:
        return 0
    print(f"verification failed: {result['reasons'][0]}", file=sys.stderr)
    return EXIT_FAILED


def _line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True) + "\n"


def _json_lines(path: Path) -> Iterator[Any]:
    """Each line as JSON. A line that is not JSON, or not in the exact form `ledger export`
    writes, comes as None (the walk names its place): evidence is checked as it was kept, byte
    for byte, not merely as equivalent JSON."""
    with path.open("rb") as handle:
        for raw in handle:
            try:
                value = json.loads(raw)
                exact = _line(value).encode("utf-8") == raw
            except (ValueError, RecursionError):  # not JSON; or nested past what decodes
                value, exact = None, False
            yield value if exact else None


def _first_json_line(path: Path) -> Any:
    return next(iter(_json_lines(path)), None)


@contextmanager
def _output(name: str | None) -> Iterator[IO[str]]:
    if name in (None, "-"):
        yield sys.stdout
    else:
        with open(name, "w", encoding="utf-8") as handle:
            yield handle


def add_commands(sub: Any) -> None:
    export = sub.add_parser(
        "export", help="the signed receipt and the whole history, as JSON lines"
    )
    export.add_argument("window")
    export.add_argument("-o", "--output", help="a file (default: standard output)")
    export.set_defaults(func=cmd_export)

    verify = sub.add_parser(
        "verify",
        help="recompute the hash chain and hold it to the signed receipt; exit 1 when broken",
    )
    verify.add_argument("window", nargs="?", help="a window in the database")
    verify.add_argument("--receipt", help="a receipt (or bundle) kept earlier, to hold it to")
    verify.add_argument("--bundle", help="an exported bundle: checked with no database")
    verify.add_argument("--public-key", help="the PEM public key that signed the receipt")
    verify.set_defaults(func=cmd_verify)
