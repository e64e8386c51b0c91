"""Evidence that outlives the database (contract s.9, issue 12), through the real `ledger`
command: `ledger verify` live and against a receipt kept earlier, `ledger export` and
`ledger verify --bundle` in a fresh process with no database, `ledger projections rebuild`
after a tampering, the receipt's signature checked by an independent implementation, the key
endpoint and the key file. On each backend.

The window is admitted and closed with `ledger admit` and `ledger close`; the tamperings are
`tests.support.tamper`'s. The CLI and the in-process service share the run's signing key.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
import stat
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from litestar.testing import TestClient

from ledger.infrastructure.signing import Ed25519Signer
from service.composition import build_services
from service.settings import Settings
from tests.support.cli import LEDGER, run_cli
from tests.support.http import assert_error, in_process
from tests.support.services import wait_until
from tests.support.tamper import (
    EDITED_AMOUNT,
    HISTORY_TAMPERINGS,
    READ_MODEL_TAMPERING,
    REWRITTEN_AMOUNT,
    SEALED_EVENTS,
    STORED_AMOUNT,
    TAMPERINGS,
    Tampering,
    sealed_lines,
)

WINDOW = "w-sealed"
# A database URL no process can open or create: a fresh process with no database.
NOWHERE = "sqlite:////proc/ledger-no-database-here/ledger.db"
CHECK_WAIT = 20.0

Ledger = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def ledger(
    migrated: Settings, database_url: str, signing_key: str, monkeypatch: pytest.MonkeyPatch
) -> Ledger:
    """`ledger ARGS...` on the test's database, with the run's signing key."""
    monkeypatch.setenv("LEDGER_SIGNING_KEY", signing_key)

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(database_url, *args, stdin=stdin, timeout=120)

    return run


def offline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`ledger ARGS...` in a fresh process whose only configuration is a database it cannot
    open, run from an empty directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env["LEDGER_DATABASE_URL"] = NOWHERE
    return subprocess.run(
        [*LEDGER, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def sealed_by_cli(ledger: Ledger) -> dict[str, Any]:
    admitted = ledger("admit", WINDOW, "-", stdin=sealed_lines())
    assert admitted.returncode == 0, admitted.stderr
    closed = ledger("close", WINDOW)
    assert closed.returncode == 0, closed.stderr
    receipt: dict[str, Any] = json.loads(closed.stdout)
    assert receipt["gate"] == "PASS" and receipt["events"] == SEALED_EVENTS, receipt
    return receipt


def export(ledger: Ledger, path: Path) -> Path:
    exported = ledger("export", WINDOW, "-o", str(path))
    assert exported.returncode == 0, exported.stderr
    return path


def bundle_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@contextmanager
def started(settings: Settings) -> Iterator[TestClient]:
    """The service, once its check at start has looked at the window again."""
    services = build_services(settings)
    before = services.evidence.store.latest(WINDOW)

    def checked() -> bool:
        now = services.evidence.store.latest(WINDOW)
        return now is not None and (before is None or now["checked_at"] != before["checked_at"])

    with in_process(settings, services) as api:
        wait_until(checked, CHECK_WAIT, "the check at start")
        yield api


def public_key_file(settings: Settings, path: Path) -> Path:
    """The public key as GET /v1/keys gives it, in a PEM file."""
    with in_process(settings) as api:
        (key,) = api.get("/v1/keys").json()["items"]
    path.write_text(key["public_key_pem"], encoding="ascii")
    return path


def assert_fails_naming(result: subprocess.CompletedProcess[str], reason: str) -> dict[str, Any]:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "verification failed: " in result.stderr, result.stderr
    assert reason in result.stderr, result.stderr
    body: dict[str, Any] = json.loads(result.stdout)
    assert body["ok"] is False, body
    assert any(reason in r for r in body["reasons"]), body
    return body


# --- live: ledger verify, and against a receipt kept earlier --------------------------------


@pytest.mark.parametrize("tampering", TAMPERINGS, ids=str)
def test_after_each_tampering_ledger_verify_with_the_receipt_kept_before_exits_1_naming_it(
    ledger: Ledger, tampering: Tampering, database_url: str, tmp_path: Path
) -> None:
    sealed_by_cli(ledger)
    kept = export(ledger, tmp_path / "kept.jsonl")
    tampering.apply(database_url, WINDOW)
    against = ledger("verify", WINDOW, "--receipt", str(kept))
    assert_fails_naming(against, tampering.reason)
    receipt = json.loads(ledger("receipt", WINDOW).stdout)
    assert receipt["gate"] == "FAIL", receipt


@pytest.mark.parametrize("tampering", HISTORY_TAMPERINGS, ids=str)
def test_after_each_history_tampering_ledger_verify_exits_1_naming_the_first_bad_version(
    ledger: Ledger, tampering: Tampering, database_url: str
) -> None:
    sealed_by_cli(ledger)
    tampering.apply(database_url, WINDOW)
    body = assert_fails_naming(ledger("verify", WINDOW), tampering.reason)
    assert body["first_bad_version"] == tampering.first_bad_version, body


def test_ledger_verify_exits_1_when_its_reasons_name_an_edited_read_model(
    ledger: Ledger, database_url: str
) -> None:
    # The history is whole (first_bad_version null), but the check it runs found the read
    # model serving another payload and turned the gate FAIL: the command says so by its exit.
    sealed_by_cli(ledger)
    READ_MODEL_TAMPERING.apply(database_url, WINDOW)
    result = ledger("verify", WINDOW)
    body = json.loads(result.stdout)
    assert any(READ_MODEL_TAMPERING.reason in r for r in body["reasons"]), body
    assert body["first_bad_version"] is None, body
    assert json.loads(ledger("receipt", WINDOW).stdout)["gate"] == "FAIL"
    assert_fails_naming(result, READ_MODEL_TAMPERING.reason)


def test_ledger_verify_with_a_receipt_kept_before_passes_for_an_untampered_window(
    ledger: Ledger, tmp_path: Path
) -> None:
    receipt = sealed_by_cli(ledger)
    kept = export(ledger, tmp_path / "kept.jsonl")
    result = ledger("verify", WINDOW, "--receipt", str(kept))
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == {
        "ok": True,
        "events": SEALED_EVENTS,
        "head": receipt["chain_head"],
        "first_bad_version": None,
        "reasons": [],
    }


# --- offline: the exported bundle -----------------------------------------------------------


@pytest.mark.parametrize("tampering", HISTORY_TAMPERINGS, ids=str)
def test_a_bundle_exported_after_each_history_tampering_fails_offline_naming_the_failure(
    ledger: Ledger,
    migrated: Settings,
    tampering: Tampering,
    database_url: str,
    tmp_path: Path,
) -> None:
    sealed_by_cli(ledger)
    key = public_key_file(migrated, tmp_path / "key.pem")
    tampering.apply(database_url, WINDOW)
    bundle = export(ledger, tmp_path / "after.jsonl")
    result = offline("verify", "--bundle", str(bundle), "--public-key", str(key), cwd=tmp_path)
    body = assert_fails_naming(result, tampering.reason)
    assert body["first_bad_version"] == tampering.first_bad_version, body


def test_a_bundle_exported_after_a_read_model_edit_verifies_and_carries_the_stored_payload(
    ledger: Ledger, migrated: Settings, database_url: str, tmp_path: Path
) -> None:
    # The bundle is the stored history and the signed receipt: the read model is not in it.
    sealed_by_cli(ledger)
    key = public_key_file(migrated, tmp_path / "key.pem")
    READ_MODEL_TAMPERING.apply(database_url, WINDOW)
    bundle = export(ledger, tmp_path / "after.jsonl")
    result = offline("verify", "--bundle", str(bundle), "--public-key", str(key), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    payloads = [line["fields"].get("payload") for line in bundle_lines(bundle)[1:]]
    assert {"amount": STORED_AMOUNT} in payloads
    assert {"amount": EDITED_AMOUNT} not in payloads


def test_a_clean_bundle_verifies_offline_in_a_fresh_process_with_no_database_configured(
    ledger: Ledger, migrated: Settings, tmp_path: Path
) -> None:
    receipt = sealed_by_cli(ledger)
    key = public_key_file(migrated, tmp_path / "key.pem")
    bundle = export(ledger, tmp_path / "w.bundle.jsonl")
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    # That process has no database indeed: a command that needs one cannot run there.
    assert offline("verify", WINDOW, cwd=workdir).returncode != 0
    result = offline("verify", "--bundle", str(bundle), "--public-key", str(key), cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == {
        "ok": True,
        "events": SEALED_EVENTS,
        "head": receipt["chain_head"],
        "first_bad_version": None,
        "reasons": [],
    }
    assert list(workdir.iterdir()) == [], "the offline check wrote something"
    assert not Path(NOWHERE.removeprefix("sqlite:///")).parent.exists()


def _flip(text: str, at: int) -> str:
    """`text` with the character at `at` replaced by another of its kind (the JSON stays valid
    and means something else)."""
    old = text[at]
    alphabet = "0123456789" if old.isdigit() else "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"
    new = alphabet[(alphabet.index(old) + 1) % len(alphabet)] if old in alphabet else "A"
    assert new != old
    return text[:at] + new + text[at + 1 :]


FLIPS: dict[str, tuple[Callable[[list[str]], tuple[int, int]], str]] = {
    # where: (line number, offset in the line) of the byte to flip; what the failure says
    "receipt event count": (
        lambda lines: (0, lines[0].index('"events": ') + len('"events": ')),
        "the receipt's signature does not hold",
    ),
    "receipt window id": (
        lambda lines: (0, lines[0].index(f'"{WINDOW}"') + 3),
        "the receipt's signature does not hold",
    ),
    "signature value": (
        lambda lines: (0, lines[0].index('"value": "') + len('"value": "') + 20),
        "the receipt's signature does not hold",
    ),
    "a history line's payload": (
        lambda lines: (2, lines[2].index(str(STORED_AMOUNT)) + 1),
        "hash chain broken at version 2",
    ),
    "a history line's recorded time": (
        lambda lines: (4, lines[4].index('"recorded_at": "') + len('"recorded_at": "') + 21),
        "hash chain broken at version 4",
    ),
    "the last line's digest": (
        lambda lines: (SEALED_EVENTS, lines[SEALED_EVENTS].index('"digest": "') + 15),
        f"hash chain broken at version {SEALED_EVENTS}",
    ),
}


@pytest.mark.parametrize("where", list(FLIPS))
def test_flipping_one_byte_of_a_clean_bundle_makes_the_offline_check_fail_naming_the_part(
    ledger: Ledger, migrated: Settings, tmp_path: Path, where: str
) -> None:
    sealed_by_cli(ledger)
    key = public_key_file(migrated, tmp_path / "key.pem")
    bundle = export(ledger, tmp_path / "w.bundle.jsonl")
    lines = bundle.read_text(encoding="utf-8").splitlines(keepends=True)
    locate, reason = FLIPS[where]
    line, at = locate(lines)
    lines[line] = _flip(lines[line], at)
    flipped = tmp_path / "flipped.jsonl"
    flipped.write_text("".join(lines), encoding="utf-8")
    assert len(flipped.read_bytes()) == len(bundle.read_bytes())
    assert sum(a != b for a, b in zip(flipped.read_bytes(), bundle.read_bytes(), strict=True)) == 1
    result = offline("verify", "--bundle", str(flipped), "--public-key", str(key), cwd=tmp_path)
    assert_fails_naming(result, reason)


# --- rebuilding the read side after a tampering ----------------------------------------------


@pytest.mark.parametrize("tampering", HISTORY_TAMPERINGS, ids=str)
def test_ledger_projections_rebuild_after_each_history_tampering_never_turns_fail_to_pass(
    ledger: Ledger, migrated: Settings, tampering: Tampering, database_url: str
) -> None:
    sealed_by_cli(ledger)
    tampering.apply(database_url, WINDOW)
    found = json.loads(ledger("verify", WINDOW).stdout)
    assert any(tampering.reason in r for r in found["reasons"]), found
    assert json.loads(ledger("receipt", WINDOW).stdout)["gate"] == "FAIL"

    rebuilt = ledger("projections", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr

    receipt = json.loads(ledger("receipt", WINDOW).stdout)
    assert receipt["gate"] == "FAIL", receipt
    found = json.loads(ledger("verify", WINDOW).stdout)
    assert any(tampering.reason in r for r in found["reasons"]), found
    with started(migrated) as api:
        gate = api.get(f"/v1/windows/{WINDOW}/gate").json()
        assert gate["status"] == "FAIL", gate
        assert any(tampering.reason in r for r in gate["reasons"]), gate
        admitted = api.get(f"/v1/windows/{WINDOW}/admitted")
        assert_error(admitted, 409)
        # As a number of its own: the error's digests are hex, and may hold these digits.
        for amount in (EDITED_AMOUNT, REWRITTEN_AMOUNT):
            assert re.search(rf"\b{amount}\b", admitted.text) is None, admitted.text


def test_ledger_projections_rebuild_repairs_an_edited_read_model_from_the_history(
    ledger: Ledger, migrated: Settings, database_url: str
) -> None:
    # The history is whole: the rebuild puts back what it holds, and the next check finds
    # nothing wrong; the edited payload is never served.
    sealed_by_cli(ledger)
    READ_MODEL_TAMPERING.apply(database_url, WINDOW)
    found = json.loads(ledger("verify", WINDOW).stdout)
    assert any(READ_MODEL_TAMPERING.reason in r for r in found["reasons"]), found
    assert json.loads(ledger("receipt", WINDOW).stdout)["gate"] == "FAIL"
    assert ledger("projections", "rebuild").returncode == 0
    assert json.loads(ledger("verify", WINDOW).stdout)["reasons"] == []
    with started(migrated) as api:
        assert api.get(f"/v1/windows/{WINDOW}/gate").json()["status"] == "PASS"
        admitted = api.get(f"/v1/windows/{WINDOW}/admitted")
        assert admitted.status_code == 200, admitted.text
        amounts = [item["payload"]["amount"] for item in admitted.json()["items"]]
        assert amounts == [STORED_AMOUNT, 100, 7]


# --- the signature, the key and the key file -------------------------------------------------


def independent_check(receipt: dict[str, Any], key: dict[str, str]) -> None:
    """The receipt's signature, checked with `cryptography` over the RFC 8785 bytes this test
    computes with `rfc8785`, under the key GET /v1/keys gives: raises InvalidSignature else."""
    public = serialization.load_pem_public_key(key["public_key_pem"].encode("ascii"))
    assert isinstance(public, Ed25519PublicKey)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert len(raw) == 32
    assert key["key_id"] == hashlib.sha256(raw).hexdigest()
    signature = receipt["signature"]
    assert signature["alg"] == "Ed25519"
    assert signature["key_id"] == key["key_id"]
    body = {k: v for k, v in receipt.items() if k not in ("signature", "gate")}
    public.verify(base64.b64decode(signature["value"], validate=True), rfc8785.dumps(body))


def test_the_receipt_signature_checks_with_cryptography_over_rfc8785_bytes_and_the_served_key(
    ledger: Ledger, migrated: Settings, tmp_path: Path
) -> None:
    closed = sealed_by_cli(ledger)
    exported = bundle_lines(export(ledger, tmp_path / "w.bundle.jsonl"))[0]
    with in_process(migrated) as api:
        (key,) = api.get("/v1/keys").json()["items"]
        served = api.get(f"/v1/windows/{WINDOW}/receipt").json()
    for receipt in (closed, exported, served):
        independent_check(receipt, key)
        assert receipt["signature"] == closed["signature"]
    assert "gate" not in exported, "the kept receipt carries no gate (it changes; not signed)"
    with pytest.raises(InvalidSignature):
        independent_check({**served, "events": SEALED_EVENTS + 1}, key)


def test_get_v1_keys_answers_the_signing_key_as_a_one_item_page(
    migrated: Settings, signing_key: str
) -> None:
    with in_process(migrated) as api:
        response = api.get("/v1/keys")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"items", "next"} and body["next"] is None, body
    (key,) = body["items"]
    assert set(key) == {"key_id", "public_key_pem"}, key
    assert key["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----\n")
    assert key["key_id"] == Ed25519Signer.load_or_create(Path(signing_key)).key_id


def test_a_signing_key_generated_on_first_start_is_a_file_of_mode_0600_and_is_kept(
    migrated: Settings, tmp_path: Path
) -> None:
    # No LEDGER_SIGNING_KEY: the key goes under the data directory (the SQLite file's folder,
    # else ./ledger-data of the directory the command runs in).
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env["LEDGER_DATABASE_URL"] = migrated.database_url
    workdir = tmp_path / "run"
    workdir.mkdir()
    expected = (
        Path(migrated.database_url.removeprefix("sqlite:///")).parent / "signing-key.pem"
        if migrated.is_sqlite
        else workdir / "ledger-data" / "signing-key.pem"
    )
    assert not expected.exists()

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*LEDGER, *args], input=stdin, capture_output=True, text=True, env=env, cwd=workdir
        )

    assert run("admit", WINDOW, "-", stdin=sealed_lines()).returncode == 0
    assert stat.S_IMODE(expected.stat().st_mode) == 0o600
    generated = Ed25519Signer.load_or_create(expected)
    assert generated.created is False  # found, not made again
    closed = run("close", WINDOW)
    assert closed.returncode == 0, closed.stderr
    assert json.loads(closed.stdout)["signature"]["key_id"] == generated.key_id
    assert expected.read_bytes() == generated.path.read_bytes()
    assert stat.S_IMODE(expected.stat().st_mode) == 0o600


def test_closing_again_under_another_key_keeps_the_first_signed_receipt(
    ledger: Ledger, migrated: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = sealed_by_cli(ledger)
    other = Ed25519Signer.load_or_create(tmp_path / "other-key.pem")
    assert other.key_id != first["signature"]["key_id"]
    monkeypatch.setenv("LEDGER_SIGNING_KEY", str(other.path))
    again = ledger("close", WINDOW)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["signature"] == first["signature"]
    with in_process(dataclasses.replace(migrated, signing_key=str(other.path))) as api:
        closed = api.post(f"/v1/windows/{WINDOW}/close")
        assert closed.status_code == 200, closed.text
        assert closed.json()["signature"] == first["signature"]
        assert api.get("/v1/keys").json()["items"][0]["key_id"] == other.key_id
    kept = bundle_lines(export(ledger, tmp_path / "w.bundle.jsonl"))[0]
    assert kept["signature"] == first["signature"]
    assert {k: v for k, v in kept.items() if k != "signature"} == {
        k: v for k, v in first.items() if k not in ("signature", "gate")
    }
