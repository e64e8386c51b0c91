"""The HTTP API (contract s.6 and s.7), end to end through the app `ledger serve` serves, on each
backend: `api.app.create_app` in this process, driven by Litestar's test client (httpx's
interface; tests/support/http.py). Start-up, stderr, signals and binding need the real process:
tests/e2e/test_serve.py. No mocks.

The read side (summary, gate, windows list, quarantine, dashboard) follows the log a moment
behind the write side, except right after close, which waits for it; tests that read it before
a close wait (bounded) until it has caught up with the window, and never assert on timing.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import rfc8785
from litestar.testing import TestClient

from service.composition import build_services
from service.settings import Settings
from tests.support.builders import event
from tests.support.client import GENESIS, client_digest, client_payload_hash
from tests.support.client import client_identity as identity_of
from tests.support.http import (
    TOKENS,
    UNKNOWN_TOKEN,
    Authorized,
    admit,
    api_gate,
    as_token,
    assert_error,
    barrier,
    close,
    eventually,
    follow_pages,
    history,
    in_process,
    read_side_caught_up,
    token_calls,
)
from tests.support.nats import AnyNats, release_event_loop, unique_stream

MIB = 1024 * 1024

V1_PATHS = {
    "/v1/windows/{window_id}/admissions": {"post"},
    "/v1/windows": {"get"},
    "/v1/windows/{window_id}": {"get"},
    "/v1/windows/{window_id}/close": {"post"},
    "/v1/windows/{window_id}/receipt": {"get"},
    "/v1/windows/{window_id}/gate": {"get"},
    "/v1/windows/{window_id}/admitted": {"get"},
    "/v1/windows/{window_id}/history": {"get"},
    "/v1/windows/{window_id}/verify": {"get"},
    "/v1/windows/{window_id}/reconcile": {"post"},
    "/v1/windows/{window_id}/bus-duplicates/accept": {"post"},
    "/v1/quarantine": {"get"},
    "/v1/keys": {"get"},
}


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def api(migrated: Settings) -> Iterator[TestClient]:
    """The service on this test's own database (schema applied, as `ledger db upgrade` does)."""
    with in_process(migrated) as client:
        yield client


@pytest.fixture
def secured(migrated: Settings) -> Iterator[TestClient]:
    """The service with LEDGER_API_TOKENS set."""
    with in_process(dataclasses.replace(migrated, api_tokens=TOKENS)) as client:
        yield client


# --- admissions -----------------------------------------------------------------------------


def test_an_admission_batch_answers_each_event_in_request_order_with_counts_per_verdict(api):
    first = admit(api, "w", event("a"), event("b"), event("c"))
    assert first["window_id"] == "w"
    assert [(r["event_id"], r["verdict"], r["offset"]) for r in first["results"]] == [
        ("a", "ADMITTED", 1),
        ("b", "ADMITTED", 2),
        ("c", "ADMITTED", 3),
    ]
    assert first["counts"] == {"ADMITTED": 3}
    for r in first["results"]:
        assert r["event_type"] == "order.created"
        assert r["identity"] == identity_of("w", "order.created", r["event_id"])
        assert r["payload_hash"] == client_payload_hash({"id": r["event_id"]})

    second = admit(
        api,
        "w",
        event("c"),
        event("a", {"id": "a", "changed": True}),
        event("d"),
        event("b"),
        event("a", event_type="order.cancelled"),
    )
    assert [
        (r["event_type"], r["event_id"], r["verdict"], r["offset"]) for r in second["results"]
    ] == [
        ("order.created", "c", "DUPLICATE", 3),
        ("order.created", "a", "QUARANTINED", None),
        ("order.created", "d", "ADMITTED", 4),
        ("order.created", "b", "DUPLICATE", 2),
        ("order.cancelled", "a", "ADMITTED", 5),
    ]
    quarantined = second["results"][1]
    assert quarantined["identity"] == identity_of("w", "order.created", "a")
    assert quarantined["payload_hash"] == client_payload_hash({"id": "a", "changed": True})
    assert second["counts"] == {"DUPLICATE": 2, "QUARANTINED": 1, "ADMITTED": 2}
    types = [e["type"] for e in history(api, "w")]
    assert types == ["WindowOpened"] + ["EventAdmitted"] * 3 + [
        "DuplicateAbsorbed",
        "MismatchQuarantined",
        "EventAdmitted",
        "DuplicateAbsorbed",
        "EventAdmitted",
    ]


def test_a_repeat_inside_one_batch_is_judged_against_the_earlier_item(api):
    body = admit(
        api,
        "w",
        event("x"),
        event("x"),
        event("x", {"id": "x", "v": 2}),
        event("y"),
        event("x", {"id": "x", "v": 2}),
    )
    assert [(r["event_id"], r["verdict"], r["offset"]) for r in body["results"]] == [
        ("x", "ADMITTED", 1),
        ("x", "DUPLICATE", 1),
        ("x", "QUARANTINED", None),
        ("y", "ADMITTED", 2),
        ("x", "QUARANTINED", None),
    ]
    assert body["counts"] == {"ADMITTED": 2, "DUPLICATE": 1, "QUARANTINED": 2}


def test_source_offsets_given_by_producers_are_summed_up_in_the_receipt(api):
    admit(
        api,
        "w",
        event("1", source={"partition": "p0", "offset": 7}),
        event("2", source={"partition": "p0", "offset": 3}),
        event("3", source={"partition": "p1", "offset": 0}),
        event("4"),
    )
    receipt = close(api, "w")
    assert receipt["source_offsets"] == {"p0": {"min": 3, "max": 7}, "p1": {"min": 0, "max": 0}}
    assert receipt["bus_offsets"] == {"first": 1, "last": 4}
    admitted = api.get("/v1/windows/w/admitted").json()["items"]
    assert [a["source"] for a in admitted] == [
        {"partition": "p0", "offset": 7},
        {"partition": "p0", "offset": 3},
        {"partition": "p1", "offset": 0},
        None,
    ]


def test_a_batch_of_exactly_1000_events_and_a_payload_of_exactly_1_mib_are_admitted(api):
    body = admit(api, "w", *(event(str(i)) for i in range(1000)))
    assert body["counts"] == {"ADMITTED": 1000}
    assert [r["offset"] for r in body["results"]] == list(range(1, 1001))
    # {"s":"..."} is 8 bytes of JCS around the string: exactly the 1 MiB limit.
    payload = {"s": "x" * (MIB - 8)}
    assert len(rfc8785.dumps(payload)) == MIB
    big = admit(api, "w", event("big", payload))
    assert big["results"][0]["verdict"] == "ADMITTED"
    assert big["results"][0]["payload_hash"] == client_payload_hash(payload)


# --- a closed window ------------------------------------------------------------------------


def test_after_close_an_exact_duplicate_answers_duplicate_and_records_nothing(api):
    admit(api, "w", event("a"), event("b"))
    close(api, "w")
    before = history(api, "w")
    body = admit(api, "w", event("b"), event("a"), event("b"))
    assert [(r["event_id"], r["verdict"], r["offset"]) for r in body["results"]] == [
        ("b", "DUPLICATE", 2),
        ("a", "DUPLICATE", 1),
        ("b", "DUPLICATE", 2),
    ]
    assert body["counts"] == {"DUPLICATE": 3}
    assert history(api, "w") == before
    assert api.get("/v1/windows/w/gate").json()["status"] == "PASS"


@pytest.mark.parametrize(
    "batch",
    [
        pytest.param([event("new")], id="a new identity"),
        pytest.param([event("a", {"id": "a", "changed": 1})], id="a changed payload"),
        pytest.param([event("a"), event("b"), event("new")], id="duplicates then a new one"),
    ],
)
def test_after_close_anything_but_exact_duplicates_is_refused_409_and_records_nothing(api, batch):
    admit(api, "w", event("a"), event("b"))
    receipt = close(api, "w")
    before = history(api, "w")
    response = api.post("/v1/windows/w/admissions", json={"events": batch})
    assert_error(response, 409, "window_closed")
    assert history(api, "w") == before
    assert api.get("/v1/windows/w/receipt").json() == receipt


# --- close, summary, receipt, gate ----------------------------------------------------------


def test_closing_answers_the_receipt_with_gate_pass_right_after_and_again_the_same_receipt(api):
    admit(api, "w", event("a"), event("b"), event("a"), event("b", {"other": 1}))
    receipt = close(api, "w")
    assert receipt["window_id"] == "w"
    assert receipt["status"] == "CLOSED"
    assert receipt["gate"] == "PASS"
    assert receipt["counts"] == {
        "admitted": 2,
        "duplicates": 1,
        "quarantined": 1,
        "publish_unknown": 0,
        "reconciled": 0,
        "pending_unknown": 0,
    }
    assert receipt["closed_at"] is not None
    events = history(api, "w")
    assert events[-1]["type"] == "WindowClosed"
    assert receipt["events"] == len(events)
    assert receipt["chain_head"] == events[-1]["digest"]
    # Right after close (no waiting): the gate, the summary and the receipt agree.
    assert api.get("/v1/windows/w/gate").json() == {
        "window_id": "w",
        "status": "PASS",
        "reasons": [],
    }
    assert api.get("/v1/windows/w").json() == receipt
    assert api.get("/v1/windows/w/receipt").json() == receipt
    # Closing again answers the same receipt and records nothing.
    assert close(api, "w") == receipt
    assert history(api, "w") == events


def test_the_window_summary_and_json_receipt_describe_an_open_window(api):
    admit(api, "w", event("a"), event("b"), event("a"), event("a", {"changed": 1}))
    summary = read_side_caught_up(api, "w")
    events = history(api, "w")
    assert summary == {
        "window_id": "w",
        "status": "OPEN",
        "gate": "OPEN",
        "counts": {
            "admitted": 2,
            "duplicates": 1,
            "quarantined": 1,
            "publish_unknown": 0,
            "reconciled": 0,
            "pending_unknown": 0,
        },
        "bus_offsets": {"first": 1, "last": 2},
        "source_offsets": {},
        "opened_at": events[0]["recorded_at"],
        "closed_at": None,
        "events": len(events),
        "chain_head": events[-1]["digest"],
    }
    receipt = api.get("/v1/windows/w/receipt")
    assert receipt.status_code == 200
    assert receipt.headers["content-type"].startswith("application/json")
    assert receipt.json() == summary


def test_the_receipt_is_served_as_markdown_when_asked_with_accept_text_markdown(api):
    admit(api, "w", event("a"), event("a", {"changed": 1}))
    receipt = close(api, "w")
    response = api.get("/v1/windows/w/receipt", headers={"Accept": "text/markdown"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/markdown")
    text = response.text
    assert text.startswith("# Receipt")
    assert "`w`" in text.splitlines()[0]
    assert "CLOSED" in text and "PASS" in text
    assert receipt["chain_head"] in text
    assert "| Quarantined (same identity, different payload) | 1 |" in text


def test_the_gate_is_open_before_close_and_pass_after(api):
    admit(api, "w", event("a"))
    read_side_caught_up(api, "w")
    gate = api.get("/v1/windows/w/gate")
    assert gate.status_code == 200
    assert gate.json()["window_id"] == "w"
    assert gate.json()["status"] == "OPEN"
    assert isinstance(gate.json()["reasons"], list)
    close(api, "w")
    assert api.get("/v1/windows/w/gate").json() == {
        "window_id": "w",
        "status": "PASS",
        "reasons": [],
    }


def test_admitted_events_are_refused_409_before_close_and_served_in_offset_order_after(api):
    payloads = [{"n": i, "nested": {"list": [i, str(i)]}} for i in range(7)]
    admit(api, "w", *(event(f"e{i}", p) for i, p in enumerate(payloads)))
    admit(api, "w", event("e3", {"quarantined": True}), event("e1", payloads[1]))
    read_side_caught_up(api, "w")

    refused = api.get("/v1/windows/w/admitted")
    body = assert_error(refused, 409, "gate_not_passed")
    assert body["gate"]["window_id"] == "w"
    assert body["gate"]["status"] == "OPEN"
    assert isinstance(body["gate"]["reasons"], list)

    close(api, "w")
    items, pages = follow_pages(api, "/v1/windows/w/admitted", limit=3)
    assert pages == 3
    assert [i["offset"] for i in items] == list(range(1, 8))
    assert [i["event_id"] for i in items] == [f"e{i}" for i in range(7)]
    assert [i["payload"] for i in items] == payloads
    for item in items:
        assert item["event_type"] == "order.created"
        assert item["identity"] == identity_of("w", "order.created", item["event_id"])
        assert item["payload_hash"] == client_payload_hash(item["payload"])
        assert item["source"] is None


# --- history and verify ---------------------------------------------------------------------


def test_history_pages_return_every_event_exactly_once_and_the_digests_chain(api):
    admit(api, "w", *(event(str(i)) for i in range(5)))
    admit(api, "w", event("0"), event("1", {"changed": True}), event("5"))
    close(api, "w")
    everything = api.get("/v1/windows/w/history", params={"limit": 1000}).json()
    assert everything["next"] is None
    full = everything["items"]
    assert len(full) == 1 + 5 + 3 + 1

    for limit in (1, 3, 4):
        paged, pages = follow_pages(api, "/v1/windows/w/history", limit=limit)
        assert paged == full
        assert pages == -(-len(full) // limit)

    assert [e["version"] for e in full] == list(range(1, len(full) + 1))
    assert full[0]["type"] == "WindowOpened"
    assert full[-1]["type"] == "WindowClosed"
    assert full[0]["prev_digest"] == GENESIS
    for earlier, later in itertools.pairwise(full):
        assert later["prev_digest"] == earlier["digest"]
    for item in full:
        assert set(item) == {"version", "type", "recorded_at", "fields", "prev_digest", "digest"}
        assert re.fullmatch(r"[0-9a-f]{64}", item["digest"])
        assert re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)", item["recorded_at"]
        )
        # Anyone can recompute the chain from the history alone (contract s.2).
        assert item["digest"] == client_digest(item), item["version"]
    admitted = [e for e in full if e["type"] == "EventAdmitted"]
    assert [e["fields"]["offset"] for e in admitted] == [1, 2, 3, 4, 5, 6]
    assert admitted[0]["fields"]["payload"] == {"id": "0"}

    past_the_end = api.get("/v1/windows/w/history", params={"after": len(full)})
    assert past_the_end.status_code == 200
    assert past_the_end.json() == {"items": [], "next": None}


def test_verify_recomputes_the_chain_and_counts_every_event_of_the_history(api):
    admit(api, "w", event("a"), event("b"), event("a"))
    events = history(api, "w")
    verify = api.get("/v1/windows/w/verify")
    assert verify.status_code == 200
    assert verify.json() == {
        "ok": True,
        "events": len(events),
        "head": events[-1]["digest"],
        "first_bad_version": None,
    }
    close(api, "w")
    events = history(api, "w")
    assert api.get("/v1/windows/w/verify").json() == {
        "ok": True,
        "events": len(events),
        "head": events[-1]["digest"],
        "first_bad_version": None,
    }


def test_reconcile_on_the_embedded_publisher_answers_empty_lists_and_records_nothing(api):
    admit(api, "w", event("a"))
    before = history(api, "w")
    response = api.post("/v1/windows/w/reconcile")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reconciled"] == []
    assert body["still_unknown"] == []
    assert history(api, "w") == before


# --- lists ----------------------------------------------------------------------------------


def test_the_quarantine_queue_groups_occurrences_filters_by_window_and_pages(api):
    admit(api, "w1", event("a", {"v": 1}), event("b", {"v": 1}))
    admit(api, "w1", event("a", {"v": 2}), event("a", {"v": 2}))
    admit(api, "w1", event("a", {"v": 2}), event("a", {"v": 3}), event("b", {"v": 9}))
    admit(api, "w2", event("a", {"v": 1}), event("a", {"v": 5}))
    barrier(api, "zz-marker")

    queue, _ = follow_pages(api, "/v1/quarantine", limit=1000)
    assert len(queue) == 4
    grouped = {(q["window_id"], q["event_id"], json.dumps(q["received_payload"])): q for q in queue}
    assert set(grouped) == {
        ("w1", "a", '{"v": 2}'),
        ("w1", "a", '{"v": 3}'),
        ("w1", "b", '{"v": 9}'),
        ("w2", "a", '{"v": 5}'),
    }
    twice = grouped[("w1", "a", '{"v": 2}')]
    assert twice["occurrences"] == 3
    assert twice["event_type"] == "order.created"
    assert twice["identity"] == identity_of("w1", "order.created", "a")
    assert twice["original_hash"] == client_payload_hash({"v": 1})
    assert twice["original_payload"] == {"v": 1}
    assert twice["received_hash"] == client_payload_hash({"v": 2})
    assert twice["first_seen"] <= twice["last_seen"]
    assert grouped[("w1", "b", '{"v": 9}')]["occurrences"] == 1

    only_w2, _ = follow_pages(api, "/v1/quarantine", limit=1000, params={"window_id": "w2"})
    assert [(q["window_id"], q["received_payload"]) for q in only_w2] == [("w2", {"v": 5})]
    only_w1, pages = follow_pages(api, "/v1/quarantine", limit=1, params={"window_id": "w1"})
    assert pages == 3
    assert sorted(map(json.dumps, only_w1)) == sorted(
        json.dumps(q) for q in queue if q["window_id"] == "w1"
    )
    paged, pages = follow_pages(api, "/v1/quarantine", limit=3)
    assert pages == 2
    assert paged == queue
    none = api.get("/v1/quarantine", params={"window_id": "no-such-window"})
    assert none.status_code == 200
    assert none.json() == {"items": [], "next": None}


def test_the_windows_list_pages_through_every_window_exactly_once(api):
    created = [f"win-{i:02d}" for i in range(7)]
    for i, window_id in enumerate(created):
        admit(api, window_id, *(event(str(n)) for n in range(i + 1)))
    close(api, "win-03")
    listed = barrier(api, "zz-marker")
    assert listed == sorted([*created, "zz-marker"])

    for limit in (1, 2, 3, 8, 1000):
        items, pages = follow_pages(api, "/v1/windows", limit=limit)
        ids = [w["window_id"] for w in items]
        assert sorted(ids) == sorted([*created, "zz-marker"]), limit
        assert len(ids) == len(set(ids)), f"a window was listed twice with limit={limit}"
        assert pages == -(-8 // limit)
    items = {w["window_id"]: w for w in follow_pages(api, "/v1/windows", limit=2)[0]}
    for i, window_id in enumerate(created):
        item = items[window_id]
        assert set(item) == {"window_id", "status", "gate", "counts"}
        assert item["counts"]["admitted"] == i + 1
        expected = ("CLOSED", "PASS") if window_id == "win-03" else ("OPEN", "OPEN")
        assert (item["status"], item["gate"]) == expected


# --- unknown windows and bad input ----------------------------------------------------------


def test_every_read_and_command_on_an_unknown_window_is_404_with_an_error_body(api):
    admit(api, "known", event("a"))
    for method, path, headers in [
        ("GET", "/v1/windows/ghost", {}),
        ("GET", "/v1/windows/ghost/receipt", {}),
        ("GET", "/v1/windows/ghost/receipt", {"Accept": "text/markdown"}),
        ("GET", "/v1/windows/ghost/gate", {}),
        ("GET", "/v1/windows/ghost/admitted", {}),
        ("GET", "/v1/windows/ghost/history", {}),
        ("GET", "/v1/windows/ghost/history?after=5", {}),
        ("GET", "/v1/windows/ghost/verify", {}),
        ("POST", "/v1/windows/ghost/close", {}),
        ("POST", "/v1/windows/ghost/reconcile", {}),
        ("GET", "/windows/ghost", {}),
    ]:
        response = api.request(method, path, headers=headers)
        assert_error(response, 404)
    # Nothing was created by asking.
    assert "ghost" not in barrier(api, "zz-marker")
    assert_error(api.get("/v1/windows/ghost/history"), 404)


def _bad_bodies() -> list[tuple[str, bytes | dict[str, Any], int]]:
    ok = event("ok")
    return [
        ("malformed JSON", b'{"events": [', 400),
        ("not JSON at all", b"events=1", 400),
        ("an empty body", b"", 400),
        ("a JSON array body", [ok], 400),  # type: ignore[list-item]
        ("events not a list", {"events": "x"}, 400),
        ("event_type an integer", {"events": [{**ok, "event_type": 7}]}, 400),
        ("event_id an integer", {"events": [{**ok, "event_id": 7}]}, 400),
        (
            "source offset a string",
            {"events": [event("s", source={"partition": "p", "offset": "1"})]},
            400,
        ),
        (
            "source partition an integer",
            {"events": [event("s", source={"partition": 1, "offset": 1})]},
            400,
        ),
        ("events missing", {}, 400),
        ("payload missing", {"events": [{"event_type": "t", "event_id": "i"}]}, 400),
        ("event_id missing", {"events": [{"event_type": "t", "payload": {}}]}, 400),
        ("event_type missing", {"events": [{"event_id": "i", "payload": {}}]}, 400),
        ("source offset missing", {"events": [event("s", source={"partition": "p"})]}, 400),
        ("an unknown top-level field", {"events": [ok], "extra": 1}, 400),
        ("an unknown event field", {"events": [{**ok, "extra": 1}]}, 400),
        (
            "an unknown source field",
            {"events": [event("s", source={"partition": "p", "offset": 1, "x": 1})]},
            400,
        ),
        ("an empty batch", {"events": []}, 400),
        ("1001 events", {"events": [event(str(i)) for i in range(1001)]}, 400),
        ("a list payload", {"events": [event("p", [1, 2])]}, 400),
        ("a string payload", {"events": [event("p", "text")]}, 400),
        ("a null payload", {"events": [{**ok, "payload": None}]}, 400),
        ("an integer payload", {"events": [event("p", 5)]}, 400),
        ("integer 2**60 in the payload", {"events": [event("p", {"n": 2**60})]}, 400),
        (
            "integer -(2**60) nested in the payload",
            {"events": [event("p", {"a": [{"n": -(2**60)}]})]},
            400,
        ),
        ("integer 2**53 in the payload", {"events": [event("p", {"n": 2**53})]}, 400),
        (
            "NaN in the payload",
            b'{"events":[{"event_type":"t","event_id":"i","payload":{"n":NaN}}]}',
            400,
        ),
        (
            "Infinity in the payload",
            b'{"events":[{"event_type":"t","event_id":"i","payload":{"n":Infinity}}]}',
            400,
        ),
        (
            "1e400 in the payload",
            b'{"events":[{"event_type":"t","event_id":"i","payload":{"n":1e400}}]}',
            400,
        ),
        ("a payload over 1 MiB", {"events": [event("big", {"s": "x" * (MIB - 7)})]}, 413),
        ("event_type of 129 characters", {"events": [event("i", event_type="a" * 129)]}, 400),
        (
            "event_type with a trailing newline",
            {"events": [event("i", event_type="order.created\n")]},
            400,
        ),
        ("event_type with a space", {"events": [event("i", event_type="order created")]}, 400),
        ("event_type with a slash", {"events": [event("i", event_type="order/created")]}, 400),
        ("event_type non-ASCII", {"events": [event("i", event_type="commandé")]}, 400),
        ("event_type empty", {"events": [event("i", event_type="")]}, 400),
        ("event_id empty", {"events": [event("")]}, 400),
        ("event_id of 257 characters", {"events": [event("x" * 257)]}, 400),
        (
            "a negative source offset",
            {"events": [event("s", source={"partition": "p", "offset": -1})]},
            400,
        ),
        (
            "a bad last item after good ones",
            {"events": [event("g1"), event("g2"), event("bad", [1])]},
            400,
        ),
        (
            "an oversize last item after good ones",
            {"events": [event("g1"), event("big", {"s": "x" * MIB})]},
            413,
        ),
    ]


BAD_BODIES = _bad_bodies()


def test_bad_admission_input_is_a_4xx_json_error_and_records_nothing(api, subtests):
    admit(api, "w", event("seed"))
    for index, (name, body, status) in enumerate(BAD_BODIES):
        with subtests.test(msg=name):
            before = history(api, "w")
            fresh = f"fresh-{index}"
            for window_id in ("w", fresh):
                path = f"/v1/windows/{window_id}/admissions"
                if isinstance(body, bytes):
                    response = api.post(
                        path, content=body, headers={"content-type": "application/json"}
                    )
                else:
                    response = api.post(path, json=body)
                assert_error(response, status, context=name)
            # Nothing of the batch was recorded: not in the existing window, and the new
            # window was not even opened.
            assert history(api, "w") == before
            assert_error(api.get(f"/v1/windows/{fresh}/history"), 404, "window_not_found")
    assert barrier(api, "zz-marker") == ["w", "zz-marker"]


BAD_WINDOW_IDS = [
    ("129 characters", "a" * 129),
    ("a trailing newline", "w%0A"),
    ("only a newline", "%0A"),
    ("a space", "a%20b"),
    ("a non-ASCII letter", "caf%C3%A9"),
    ("a percent sign", "a%25b"),
    ("a quote", "a%22b"),
]


def test_a_window_id_outside_the_allowed_pattern_is_400_and_records_nothing(api, subtests):
    for name, raw in BAD_WINDOW_IDS:
        with subtests.test(msg=name):
            response = api.post(f"/v1/windows/{raw}/admissions", json={"events": [event("a")]})
            assert_error(response, 400)
            for path in ("", "/gate", "/receipt", "/history", "/verify", "/admitted"):
                assert_error(api.get(f"/v1/windows/{raw}{path}"), 400)
            for path in ("/close", "/reconcile"):
                assert_error(api.post(f"/v1/windows/{raw}{path}"), 400)
    assert barrier(api, "zz-marker") == ["zz-marker"]
    # 128 characters is fine.
    longest = "L" * 128
    assert admit(api, longest, event("a"))["window_id"] == longest


def test_bad_paging_parameters_are_400(api, subtests):
    admit(api, "w", event("a"))
    close(api, "w")
    for path in (
        "/v1/windows",
        "/v1/windows/w/history",
        "/v1/windows/w/admitted",
        "/v1/quarantine",
    ):
        for query in ("limit=0", "limit=1001", "limit=ten", "limit=-1"):
            with subtests.test(msg=f"{path}?{query}"):
                assert_error(api.get(f"{path}?{query}"), 400)
    for path in ("/v1/windows/w/history", "/v1/windows/w/admitted", "/v1/quarantine"):
        for query in ("after=-1", "after=abc"):
            with subtests.test(msg=f"{path}?{query}"):
                assert_error(api.get(f"{path}?{query}"), 400)


def test_a_cursor_beyond_any_offset_answers_an_empty_page_or_a_400_never_a_5xx(api, subtests):
    admit(api, "w", event("a"), event("a", {"changed": 1}))
    close(api, "w")
    for path in ("/v1/windows/w/history", "/v1/windows/w/admitted", "/v1/quarantine"):
        for after in (2**63 - 1, 2**63, 10**30):
            with subtests.test(msg=f"{path}?after={after}"):
                response = api.get(path, params={"after": after})
                if response.status_code == 200:
                    assert response.json() == {"items": [], "next": None}
                else:
                    assert_error(response, 400, context="a cursor past every offset")


def test_a_nul_character_in_a_query_parameter_is_never_a_5xx(api, subtests):
    admit(api, "w", event("a"))
    for path in (
        "/v1/windows?after=%00",
        "/v1/windows?after=w%00",
        "/v1/quarantine?window_id=%00",
        "/v1/quarantine?window_id=w%00x",
    ):
        with subtests.test(msg=path):
            response = api.get(path)
            assert response.status_code < 500, f"GET {path}: {response.status_code} {response.text}"
            if response.status_code >= 400:
                assert_error(response, response.status_code)


NUL_TEXT = [
    ("in the event_id", event("a\x00b")),
    ("in the source partition", event("s", source={"partition": "p\x00", "offset": 1})),
    ("in a payload value", event("v", {"s": "x\x00y"})),
    ("in a payload key", event("k", {"a\x00": 1})),
]


@pytest.mark.parametrize("item", [i for _, i in NUL_TEXT], ids=[n for n, _ in NUL_TEXT])
def test_text_holding_a_nul_character_is_refused_whole_or_kept_without_stopping_the_read_side(
    api, item
):
    """U+0000 is valid JSON text. Either the admission refuses it (400, nothing recorded) or it
    is admitted and every read keeps working: close answers PASS and later windows show up."""
    response = api.post("/v1/windows/w/admissions", json={"events": [item]})
    if response.status_code != 200:
        assert_error(response, 400, context="a NUL character")
        assert_error(api.get("/v1/windows/w/history"), 404)
        return
    assert response.json()["results"][0]["verdict"] == "ADMITTED"
    closed = api.post("/v1/windows/w/close")
    assert closed.status_code == 200, (
        f"close after admitting a NUL: {closed.status_code} {closed.text}"
    )
    assert closed.json()["status"] == "CLOSED"
    assert closed.json()["gate"] == "PASS"
    admitted = api.get("/v1/windows/w/admitted").json()["items"]
    assert [(a["event_id"], a["payload"], a["source"]) for a in admitted] == [
        (item["event_id"], item["payload"], item.get("source"))
    ]
    assert "next-window" in barrier(api, "next-window")


# --- health, metrics, OpenAPI (the pages: tests/e2e/test_pages.py) -------------------------


def test_health_answers_200_with_the_storage_and_the_bus_by_kind(api, backend):
    # Who sees what, the bounds and the failures: tests/e2e/test_health.py.
    response = api.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "storage": {"ok": True, "kind": "sqlite" if backend == "sqlite" else "postgresql"},
        "bus": {"ok": True, "kind": "embedded"},
    }


def _samples(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_metrics_are_served_in_prometheus_text_format(api):
    admit(api, "w", event("a"), event("b"), event("a"), event("b", {"changed": 1}))
    close(api, "w")
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name, kind in [
        ("ledger_admissions_total", "counter"),
        ("ledger_http_request_duration_seconds", "histogram"),
        ("ledger_pending_unknown", "gauge"),
        ("ledger_projection_lag_events", "gauge"),
        ("ledger_windows", "gauge"),
    ]:
        family = name.removesuffix("_total")
        assert re.search(rf"^# TYPE {family}(_total)? {kind}$", text, flags=re.M), name
    samples = _samples(text)
    assert samples['ledger_admissions_total{verdict="ADMITTED"}'] == 2
    assert samples['ledger_admissions_total{verdict="DUPLICATE"}'] == 1
    assert samples['ledger_admissions_total{verdict="QUARANTINED"}'] == 1
    assert samples["ledger_pending_unknown"] == 0
    assert samples['ledger_windows{gate="PASS"}'] == 1
    assert samples['ledger_windows{gate="BLOCKED"}'] == 0
    assert any(k.startswith("ledger_projection_lag_events{") for k in samples)
    assert any(
        k.startswith("ledger_http_request_duration_seconds_count{") and 'method="POST"' in k
        for k in samples
    )


def test_request_durations_are_labelled_with_the_full_route_of_each_endpoint(api):
    admit(api, "w", event("a"))
    for path in ("/v1/windows", "/v1/quarantine", "/", "/v1/windows/w/history"):
        assert api.get(path).status_code == 200
    text = api.get("/metrics").text
    routes = set(
        re.findall(
            r'^ledger_http_request_duration_seconds_count\{method="(\w+)",route="([^"]*)"',
            text,
            flags=re.M,
        )
    )
    # One label per endpoint: a dashboard can tell admissions from listing windows.
    assert any(
        m == "POST" and r.startswith("/v1/windows/") and "admissions" in r for m, r in routes
    ), routes
    assert any(m == "GET" and r.startswith("/v1/quarantine") for m, r in routes), routes
    assert any(m == "GET" and r.startswith("/v1/windows/") and "history" in r for m, r in routes), (
        routes
    )
    assert any(m == "GET" and r.rstrip("/") == "/v1/windows" for m, r in routes), routes
    assert ("GET", "/") in routes, routes


def test_the_openapi_document_lists_every_v1_endpoint(api):
    response = api.get("/schema/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    paths = {
        p: {m for m in ops if m in {"get", "post", "put", "patch", "delete"}}
        for p, ops in document["paths"].items()
    }
    v1 = {p: methods for p, methods in paths.items() if p.startswith("/v1")}
    assert v1 == V1_PATHS
    assert {"/health", "/metrics"} <= set(paths)


# --- authentication and scopes --------------------------------------------------------------


def test_without_a_token_or_with_an_unknown_one_every_call_is_401_and_records_nothing(secured):
    with as_token(secured, "admin-token") as admin:
        admit(admin, "w", event("a"))
        before = history(admin, "w")
    for client in (
        as_token(secured, None),
        as_token(secured, UNKNOWN_TOKEN),
        Authorized(secured, "Bearer"),
        Authorized(secured, "Basic admin-token"),
        Authorized(secured, "admin-token"),
    ):
        with client:
            for _, method, path, body in token_calls("w") + token_calls("new"):
                assert_error(client.request(method, path, json=body), 401, "unauthorized")
    with as_token(secured, "admin-token") as admin:
        assert history(admin, "w") == before
        assert_error(admin.get("/v1/windows/new/history"), 404)
        assert api_gate(admin, "w") == "OPEN"


def test_a_token_without_the_needed_scope_is_403_and_records_nothing(secured):
    with as_token(secured, "admin-token") as admin:
        admit(admin, "w", event("a"))
        before = history(admin, "w")
    scopes = {
        "admin-token": {"admit", "operate", "read"},
        "reader-token": {"read"},
        "admitter": {"admit"},
    }
    for token, granted in scopes.items():
        with as_token(secured, token) as client:
            for needed, method, path, body in token_calls("w"):
                if needed not in granted:
                    response = client.request(method, path, json=body)
                    assert_error(response, 403, "forbidden")
    with as_token(secured, "reader-token") as reader:
        assert_error(
            reader.post("/v1/windows/w/admissions", json={"events": [event("b")]}), 403, "forbidden"
        )
        assert history(reader, "w") == before
        assert api_gate(reader, "w") == "OPEN"
    with as_token(secured, "admitter") as admitter:
        assert_error(admitter.post("/v1/windows/w/close"), 403, "forbidden")
    with as_token(secured, "admin-token") as admin:
        assert history(admin, "w") == before


def test_an_admission_without_a_token_is_401_before_its_body_is_looked_at(secured):
    """The admissions route checks the token in its hook, not a guard (ADR 0039): first,
    before the nesting, the decoding budget or the decode."""
    headers = {"content-type": "application/json"}
    with as_token(secured, None) as anonymous:
        for body in (b"{not json", b"[" * 100 + b"]" * 100, b'{"events": "none"}'):
            response = anonymous.post("/v1/windows/w/admissions", content=body, headers=headers)
            assert_error(response, 401, "unauthorized")
    with as_token(secured, "reader-token") as reader:
        response = reader.post("/v1/windows/w/admissions", content=b"[" * 100, headers=headers)
        assert_error(response, 403, "forbidden")


def test_a_token_with_the_needed_scope_is_served(secured):
    with as_token(secured, "admitter") as admitter:
        body = admit(admitter, "w", event("a"), event("b"))
        assert body["counts"] == {"ADMITTED": 2}
    with as_token(secured, "admin-token") as admin:
        assert admin.post("/v1/windows/w/reconcile").status_code == 200
        assert close(admin, "w")["gate"] == "PASS"
    with as_token(secured, "reader-token") as reader:
        for _, method, path, _body in token_calls("w"):
            if method == "GET":
                response = reader.get(path)
                assert response.status_code == 200, (path, response.text[:300])
        assert len(reader.get("/v1/windows/w/admitted").json()["items"]) == 2


def test_health_and_the_openapi_document_answer_without_a_token_but_metrics_do_not(secured):
    with as_token(secured, None) as anonymous:
        assert anonymous.get("/health").status_code == 200
        assert anonymous.get("/health").json() == {"status": "ok"}
        assert anonymous.get("/schema/openapi.json").status_code == 200
        assert_error(anonymous.get("/metrics"), 401, "unauthorized")


# --- through a real NATS JetStream: the publish ambiguity and a refusing bus ----------------


@pytest.fixture
def over_nats(migrated: Settings, nats_server: AnyNats) -> Iterator[tuple[TestClient, AnyNats]]:
    """The service publishing to a nats-server of this test's own (which it may stop/kill)."""
    nats_server.require_control()
    stream, prefix = unique_stream()
    settings = dataclasses.replace(
        migrated,
        publisher=nats_server.url,
        nats_stream=stream,
        nats_subject_prefix=prefix,
        nats_publish_timeout_seconds=0.5,
    )
    services = build_services(settings)
    try:
        with in_process(settings, services) as client:
            try:
                yield client, nats_server
            finally:
                nats_server.cont()  # a stopped bus would hold the service's shutdown
    finally:
        release_event_loop(services)


def test_an_unknown_publish_blocks_the_gate_and_close_until_reconcile_resolves_it(over_nats):
    api, bus = over_nats
    assert admit(api, "w", event("a"))["counts"] == {"ADMITTED": 1}

    bus.stop()  # SIGSTOP: the publish times out, the outcome is unknown
    body = admit(api, "w", event("a"), event("u"))
    assert [(r["verdict"], r["offset"]) for r in body["results"]] == [
        ("DUPLICATE", 1),
        ("PUBLISH_UNKNOWN", None),
    ]
    pending = body["results"][1]["identity"]
    assert pending == identity_of("w", "order.created", "u")
    assert history(api, "w")[-1]["type"] == "PublishUnknown"

    gate = eventually(
        lambda: api.get("/v1/windows/w/gate"),
        lambda r: r.status_code == 200 and r.json()["status"] == "BLOCKED",
    )
    assert gate.json()["status"] == "BLOCKED"
    assert_error(api.get("/v1/windows/w/admitted"), 409, "gate_not_passed")
    before = history(api, "w")
    refused = assert_error(api.post("/v1/windows/w/close"), 409, "publish_unknown_pending")
    assert refused["pending"] == [pending]
    assert history(api, "w") == before

    bus.cont()
    reconciled = api.post("/v1/windows/w/reconcile")
    assert reconciled.status_code == 200, reconciled.text
    assert reconciled.json()["reconciled"] == [pending]
    assert reconciled.json()["still_unknown"] == []
    receipt = close(api, "w")
    assert receipt["gate"] == "PASS"
    assert receipt["counts"]["admitted"] == 2
    assert receipt["counts"]["publish_unknown"] == 1
    assert receipt["counts"]["reconciled"] == 1
    assert receipt["counts"]["pending_unknown"] == 0
    admitted = api.get("/v1/windows/w/admitted").json()["items"]
    assert [a["event_id"] for a in admitted] == ["a", "u"]


def test_when_the_bus_refuses_the_request_is_503_records_nothing_and_is_safe_to_retry(over_nats):
    api, bus = over_nats
    admit(api, "w", event("a"))
    before = history(api, "w")
    bus.kill()  # connection refused: nothing can have been sent
    batch = {"events": [event("a"), event("b")]}
    for window_id in ("w", "fresh"):
        response = api.post(f"/v1/windows/{window_id}/admissions", json=batch)
        assert_error(response, 503)
    assert history(api, "w") == before
    assert_error(api.get("/v1/windows/fresh/history"), 404)

    bus.restart()
    retried = eventually(
        lambda: api.post("/v1/windows/w/admissions", json=batch),
        lambda r: r.status_code != 503,
    )
    assert retried.status_code == 200, retried.text
    assert [r["verdict"] for r in retried.json()["results"]] == ["DUPLICATE", "ADMITTED"]
