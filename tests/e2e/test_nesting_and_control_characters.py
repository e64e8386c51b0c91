"""Bad input that used to be a 500 (issue 11), end to end on each backend: JSON nested deeper
than a payload may be (64 levels, ADR 0023) through the app `ledger serve` serves (in this
process) and through the real `ledger admit`; control characters in path parameters and in the
dashboard's query. Each is a 4xx naming the problem, and records nothing."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from service.settings import Settings
from tests.support.builders import event
from tests.support.cli import run_cli
from tests.support.client import client_payload_hash
from tests.support.http import admit, assert_error, barrier, close, history, in_process

# The documented limit, written out: a test of the limit does not read it from the code.
LIMIT = 64
DEEP = 990  # where the decoders stopped with a RecursionError (a 500)

Client = TestClient[Litestar]
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def api(migrated: Settings) -> Iterator[Client]:
    with in_process(migrated) as client:
        yield client


def nested(depth: int, leaf: Any = 1) -> dict[str, Any]:
    """A payload `depth` levels deep: an object (level 1) around arrays and objects in turn."""
    value: Any = leaf
    for level in range(depth - 1):
        value = [value] if level % 2 == 0 else {"k": value}
    return {"a": value}


def post_body(api: Client, window_id: str, body: bytes) -> httpx.Response:
    return api.post(
        f"/v1/windows/{window_id}/admissions",
        content=body,
        headers={"content-type": "application/json"},
    )


def body_with_payload(payload: bytes) -> bytes:
    return b'{"events":[{"event_type":"t","event_id":"deep","payload":' + payload + b"}]}"


def assert_refused_as_too_deep(response: httpx.Response, context: str = "") -> None:
    body = assert_error(response, 400, "nesting_too_deep", context=context)
    assert f"{LIMIT} levels" in body["detail"], body


# --- nesting over HTTP ------------------------------------------------------------------------


def test_a_payload_nested_deeper_than_the_limit_is_refused_with_400_naming_it(api: Client) -> None:
    admit(api, "w", event("seed"))
    before = history(api, "w")
    batch = {"events": [event("fine"), event("deep", nested(LIMIT + 1))]}
    for window_id in ("w", "fresh"):
        response = api.post(f"/v1/windows/{window_id}/admissions", json=batch)
        assert_refused_as_too_deep(response, window_id)
    # Refused whole: not even the fine event, and the fresh window was never opened.
    assert history(api, "w") == before
    assert_error(api.get("/v1/windows/fresh/history"), 404, "window_not_found")


def test_a_payload_nested_exactly_to_the_limit_is_admitted_and_read_back_unchanged(
    api: Client,
) -> None:
    # A float leaf sends canonicalization down its own serializer, which recurses once a level.
    payload = nested(LIMIT, leaf=1.5)
    result = admit(api, "w", event("edge", payload))["results"][0]
    assert result["verdict"] == "ADMITTED"
    assert result["payload_hash"] == client_payload_hash(payload)
    assert close(api, "w")["gate"] == "PASS"
    admitted = api.get("/v1/windows/w/admitted").json()["items"]
    assert [item["payload"] for item in admitted] == [payload]


FAR_TOO_DEEP = [
    (
        f"a payload of arrays {DEEP} levels deep",
        body_with_payload(b'{"a":' + b"[" * DEEP + b"1" + b"]" * DEEP + b"}"),
    ),
    (
        f"a payload of objects {DEEP} levels deep",
        body_with_payload(b'{"a":' * DEEP + b"1" + b"}" * DEEP),
    ),
    (
        "a payload of objects 500 levels deep around a float (canonicalization recursed)",
        body_with_payload(b'{"a":' * 500 + b"1.5" + b"}" * 500),
    ),
    ("a body of 100,000 unclosed [", b"[" * 100_000),
    ("a payload of 100,000 unclosed [", body_with_payload(b'{"a":' + b"[" * 100_000)),
]


def test_json_nested_deeper_than_any_decoder_follows_is_a_400_never_a_500(
    api: Client, subtests: pytest.Subtests
) -> None:
    admit(api, "w", event("seed"))
    before = history(api, "w")
    for index, (name, body) in enumerate(FAR_TOO_DEEP):
        with subtests.test(msg=name):
            fresh = f"fresh-{index}"
            for window_id in ("w", fresh):
                assert_refused_as_too_deep(post_body(api, window_id, body), name)
            assert history(api, "w") == before
            assert_error(api.get(f"/v1/windows/{fresh}/history"), 404, "window_not_found")


def test_brackets_and_escapes_inside_strings_do_not_count_as_nesting(api: Client) -> None:
    payload = {
        "text": "[" * 5_000 + '\\"{' * 100 + "\\",
        "quoted": '"' + "[" * 100,  # an escaped quote does not end the string
        "key": {'"[[': ["]]]", "\\\\[", '{"a": [[[['], "}" * 100: 1},
    }
    result = admit(api, "w", event("strings", payload))["results"][0]
    assert result["verdict"] == "ADMITTED"
    assert result["payload_hash"] == client_payload_hash(payload)


# --- control characters -----------------------------------------------------------------------

CONTROL_CHARACTERS = ["%00", "%01", "%09", "%0A", "%0D", "%1B", "%1F", "%7F"]
PATH_ROUTES = [
    ("GET", "/v1/windows/{}"),
    ("GET", "/v1/windows/{}/receipt"),
    ("GET", "/v1/windows/{}/gate"),
    ("GET", "/v1/windows/{}/admitted"),
    ("GET", "/v1/windows/{}/history"),
    ("GET", "/v1/windows/{}/verify"),
    ("POST", "/v1/windows/{}/admissions"),
    ("POST", "/v1/windows/{}/close"),
    ("POST", "/v1/windows/{}/reconcile"),
    ("GET", "/windows/{}"),
    ("GET", "/windows/{}/quarantine"),
    ("GET", "/windows/{}/history"),
    ("GET", "/windows/{}/verify"),
    ("GET", "/windows/{}/receipt.md"),
    ("GET", "/static/{}"),  # a NUL reached the file system (a 500)
]


def test_a_control_character_in_any_path_parameter_is_400_and_records_nothing(
    api: Client, subtests: pytest.Subtests
) -> None:
    for char in CONTROL_CHARACTERS:
        for value in (f"a{char}b", char):
            for method, template in PATH_ROUTES:
                path = template.format(value)
                with subtests.test(msg=f"{method} {path}"):
                    body = {"events": [event("x")]} if method == "POST" else None
                    response = api.request(method, path, json=body)
                    assert_error(response, 400, "invalid_request", context=path)
    assert barrier(api, "zz-marker") == ["zz-marker"]
    assert api.get("/static/ledger.css").status_code == 200  # the files are still served


def test_a_control_character_in_a_dashboard_query_is_400_never_a_500(
    api: Client, subtests: pytest.Subtests
) -> None:
    admit(api, "w", event("a"))
    for query in ("after=a%00b", "q=a%00b", "after=%7F", "q=w%0A", "q=%1F"):
        with subtests.test(msg=query):
            assert_error(api.get(f"/?{query}"), 400, "invalid_request", context=query)
    assert api.get("/?q=w&after=a").status_code == 200


# --- nesting through `ledger admit` -----------------------------------------------------------


@pytest.fixture
def ledger_cmd(database_url: str) -> Run:
    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(database_url, *args, stdin=stdin, timeout=120)

    assert run("db", "upgrade").returncode == 0
    return run


def _line(event_id: str, payload: dict[str, Any] | None = None) -> str:
    body = {"event_type": "order.created", "event_id": event_id, "payload": payload or {}}
    return json.dumps(body) + "\n"


def _counts(stdout: str) -> dict[str, int]:
    rows = [line.split() for line in stdout.splitlines() if line.startswith("  ")]
    return {verdict: int(n) for verdict, n in rows}


DEEP_LINES = [
    (f"{LIMIT + 1} levels", _line("c", nested(LIMIT + 1))),
    (f"{DEEP} levels", '{"event_id":"c","payload":{"a":' + "[" * DEEP + "]" * DEEP + "}}\n"),
    ("100,000 unclosed [", '{"event_id":"c","payload":' + "[" * 100_000 + "\n"),
]


def test_ledger_admit_names_the_line_nested_deeper_than_the_limit_and_exits_2(
    ledger_cmd: Run,
) -> None:
    for name, bad in DEEP_LINES:
        stdin = _line("a") + _line("b") + bad + _line("d")
        result = ledger_cmd("admit", "w", "-", stdin=stdin)
        assert result.returncode == 2, f"{name}: {result.stderr[-2000:]}"
        assert "error: line 3: " in result.stderr, name
        assert f"{LIMIT} levels" in result.stderr, name
        assert "Traceback" not in result.stderr, name
        assert _counts(result.stdout)["ADMITTED"] == 0, name  # lines 1-4 are one batch
    # Exactly the limit is taken; nothing of the refused runs was recorded before it.
    stdin = _line("a") + _line("b") + _line("c", nested(LIMIT, leaf=1.5)) + _line("d")
    result = ledger_cmd("admit", "w", "-", stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert _counts(result.stdout) == {
        "ADMITTED": 4,
        "DUPLICATE": 0,
        "QUARANTINED": 0,
        "PUBLISH_UNKNOWN": 0,
    }
