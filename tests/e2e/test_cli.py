"""The `ledger` command, run for real as a subprocess on each backend."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.support.cli import run_cli
from tests.support.storage import tamper_stored_event


def _line(event_id: str, payload: dict[str, object] | None = None) -> str:
    body = {
        "event_type": "order.created",
        "event_id": event_id,
        "payload": payload or {"n": event_id},
    }
    return json.dumps(body) + "\n"


@pytest.fixture
def ledger_cmd(database_url: str):
    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(database_url, *args, stdin=stdin, timeout=120)

    assert run("db", "upgrade").returncode == 0
    return run


def _counts(stdout: str) -> dict[str, int]:
    rows = [line.split() for line in stdout.splitlines() if line.startswith("  ")]
    return {verdict: int(n) for verdict, n in rows}


def test_admitting_a_file_twice_admits_once_and_then_answers_duplicates(ledger_cmd, tmp_path):
    source = tmp_path / "events.jsonl"
    source.write_text("".join(_line(str(i)) for i in range(1200)))
    first = ledger_cmd("admit", "w", str(source))
    assert first.returncode == 0, first.stderr
    assert _counts(first.stdout)["ADMITTED"] == 1200
    second = ledger_cmd("admit", "w", str(source), "--quiet")
    assert _counts(second.stdout) == {
        "ADMITTED": 0,
        "DUPLICATE": 1200,
        "QUARANTINED": 0,
        "PUBLISH_UNKNOWN": 0,
    }
    history = ledger_cmd("history", "w")
    types = [json.loads(line)["type"] for line in history.stdout.splitlines()]
    assert types.count("EventAdmitted") == 1200
    assert types.count("DuplicateAbsorbed") == 1200


def test_a_malformed_line_is_reported_by_number_and_its_batch_is_not_recorded(ledger_cmd):
    lines = [_line(str(i)) for i in range(600)]
    lines[549] = '{"event_type": "order.created", "event_id": "549", "payload": [1]}\n'
    result = ledger_cmd("admit", "w", "-", stdin="".join(lines))
    assert result.returncode == 2
    assert "line 550" in result.stderr
    # The first batch (lines 1-500) was recorded; the batch holding line 550 was not.
    assert _counts(result.stdout)["ADMITTED"] == 500
    receipt = json.loads(ledger_cmd("receipt", "w").stdout)
    assert receipt["counts"]["admitted"] == 500


def test_the_first_bad_line_in_file_order_is_reported_whether_it_fails_decoding_or_hashing(
    ledger_cmd,
):
    # A batch is validated and hashed in one call: the line reported must still be the first
    # bad one, with the message it gets alone. Line 530's payload decodes but cannot be
    # canonicalized (an integer beyond 2^53 - 1); line 560 is not JSON at all.
    lines = [_line(str(i)) for i in range(600)]
    lines[529] = _line("529", {"n": 2**53})
    lines[559] = "{not json\n"
    result = ledger_cmd("admit", "w", "-", stdin="".join(lines))
    assert result.returncode == 2
    assert "error: line 530: payload: integer 9007199254740992 is outside" in result.stderr
    assert "line 560" not in result.stderr
    assert _counts(result.stdout)["ADMITTED"] == 500
    lines[529] = _line("529")
    result = ledger_cmd("admit", "w", "-", stdin="".join(lines))
    assert result.returncode == 2
    assert "error: line 560: " in result.stderr
    assert _counts(result.stdout) == {
        "ADMITTED": 0,
        "DUPLICATE": 500,
        "QUARANTINED": 0,
        "PUBLISH_UNKNOWN": 0,
    }


def test_a_bad_payload_in_a_later_batch_is_reported_by_line_and_nothing_of_its_batch_is_kept(
    ledger_cmd,
):
    # Every line decodes and names are fine: the payload of line 950 is refused only when its
    # batch (lines 501-1000) is written, its payloads prepared during the identities' lookup
    # (ADR 0040), in a window the command has cached. Line 990 is bad the same way, later.
    lines = [_line(str(i)) for i in range(1000)]
    lines[949] = _line("949", {"n": -(2**60)})
    lines[989] = _line("989", {"n": 2**60})
    result = ledger_cmd("admit", "w", "-", stdin="".join(lines))
    assert result.returncode == 2
    assert "error: line 950: payload: integer -1152921504606846976 is outside" in result.stderr
    assert _counts(result.stdout)["ADMITTED"] == 500
    assert json.loads(ledger_cmd("receipt", "w").stdout)["counts"]["admitted"] == 500
    lines[949], lines[989] = _line("949"), _line("989")
    result = ledger_cmd("admit", "w", "-", stdin="".join(lines))
    assert result.returncode == 0, result.stderr
    assert _counts(result.stdout)["DUPLICATE"] == 500
    assert _counts(result.stdout)["ADMITTED"] == 500


def test_blank_lines_are_skipped_but_counted_in_line_numbers(ledger_cmd):
    stdin = "\n" + _line("a") + "  \r\n\n" + _line("b") + "\t\n" + '{"event_id": "c"}\n'
    result = ledger_cmd("admit", "w", "-", stdin=stdin)
    assert result.returncode == 2
    assert "error: line 7: " in result.stderr
    assert _counts(result.stdout)["ADMITTED"] == 0  # lines 1-7 are one batch
    result = ledger_cmd("admit", "w", "-", stdin=stdin.rsplit('{"event_id"', 1)[0] + "\n\n")
    assert result.returncode == 0, result.stderr
    assert _counts(result.stdout)["ADMITTED"] == 2


def test_close_then_receipt_in_markdown_and_verify_tell_the_same_story(ledger_cmd):
    stdin = _line("a") + _line("b") + _line("a") + _line("b", {"changed": True})
    assert ledger_cmd("admit", "w", "-", stdin=stdin).returncode == 0
    closed = ledger_cmd("close", "w")
    assert closed.returncode == 0, closed.stderr
    receipt = json.loads(closed.stdout)
    assert receipt["status"] == "CLOSED" and receipt["gate"] == "PASS"
    assert receipt["counts"]["admitted"] == 2
    assert receipt["counts"]["duplicates"] == 1
    assert receipt["counts"]["quarantined"] == 1
    markdown = ledger_cmd("receipt", "w", "--format", "md").stdout
    assert markdown.startswith("# Receipt for window `w`")
    assert "| Quarantined (same identity, different payload) | 1 |" in markdown
    assert receipt["chain_head"] in markdown
    verified = ledger_cmd("verify", "w")
    assert verified.returncode == 0
    assert json.loads(verified.stdout)["head"] == receipt["chain_head"]


def test_anything_but_an_exact_duplicate_after_close_is_refused(ledger_cmd):
    ledger_cmd("admit", "w", "-", stdin=_line("a"))
    ledger_cmd("close", "w")
    again = ledger_cmd("admit", "w", "-", stdin=_line("a"))
    assert again.returncode == 0 and _counts(again.stdout)["DUPLICATE"] == 1
    refused = ledger_cmd("admit", "w", "-", stdin=_line("new"))
    assert refused.returncode == 1
    assert "window_closed" in refused.stderr


def test_verify_exits_one_and_names_the_version_when_a_stored_event_was_edited(
    ledger_cmd, database_url
):
    ledger_cmd("admit", "w", "-", stdin=_line("a") + _line("b") + _line("c"))
    tamper_stored_event(database_url, "w", 3, b'"payload":{"n":"b"}', b'"payload":{"n":"B"}')
    result = ledger_cmd("verify", "w")
    assert result.returncode == 1
    assert json.loads(result.stdout)["first_bad_version"] == 3
    assert "version 3" in result.stderr


def test_an_unknown_window_is_an_error_not_a_crash(ledger_cmd):
    result = ledger_cmd("receipt", "nope")
    assert result.returncode == 1
    assert "window_not_found" in result.stderr
