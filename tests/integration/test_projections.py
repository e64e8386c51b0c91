"""The read side: quarantine queue, receipts and gate, admitted events, paging, concurrent
runners, the background follower. Every test runs on SQLite and on PostgreSQL (through the
`database_url` fixture)."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest
from sqlalchemy import text

from ledger.errors import PublishUnknownPending
from ledger.jcs import canonicalize, sha256_hex
from tests.support.builders import batch, event, identity
from tests.support.bus import ScriptedBus
from tests.support.legacy import store_v1_window
from tests.support.readside import checksums
from tests.support.services import wait_until
from tests.support.storage import tamper_stored_event


def payload_hash(payload: dict[str, Any]) -> str:
    return sha256_hex(canonicalize(payload))


def closing_summary(services, window_id: str) -> dict[str, Any]:
    (closed,) = [h for h in services.ledger.history(window_id) if h["type"] == "WindowClosed"]
    return closed["fields"]["summary"]


def all_pages(fetch, limit: int) -> list[dict[str, Any]]:
    """Follow `next` until it is None; fail if the cursor ever repeats (a page loop)."""
    items: list[dict[str, Any]] = []
    after = None
    seen_cursors = set()
    while True:
        page, after = fetch(after, limit)
        assert len(page) <= limit
        items.extend(page)
        if after is None:
            return items
        assert after not in seen_cursors, f"cursor {after!r} came back"
        seen_cursors.add(after)


# --- quarantine queue ---------------------------------------------------------------------


def test_the_quarantine_queue_groups_repeats_of_one_mismatch_into_one_row_with_occurrences(
    services,
):
    original, changed, other = {"v": 1}, {"v": 2}, {"v": 3}
    services.ledger.admit("w", batch("w", event("a", original), event("b")))
    services.catch_up()
    # The same mismatch arrives twice in one batch, then again in two later batches, each of
    # them projected on its own: occurrences add up across the runner's pages.
    services.ledger.admit("w", batch("w", event("a", changed), event("a", changed)))
    services.catch_up()
    services.ledger.admit("w", batch("w", event("a", changed)))
    services.catch_up()
    services.ledger.admit("w", batch("w", event("a", other), event("a", changed)))
    services.catch_up()

    items, next_cursor = services.read.quarantine_queue("w", None, None)
    assert next_cursor is None
    assert len(items) == 2
    by_hash = {item["received_hash"]: item for item in items}
    assert set(by_hash) == {payload_hash(changed), payload_hash(other)}

    mismatches = [h for h in services.ledger.history("w") if h["type"] == "MismatchQuarantined"]
    seen_changed = [
        h["recorded_at"]
        for h in mismatches
        if h["fields"]["received_hash"] == payload_hash(changed)
    ]
    repeated = by_hash[payload_hash(changed)]
    assert repeated == {
        "window_id": "w",
        "event_type": "order.created",
        "event_id": "a",
        "identity": identity("w", "a"),
        "original_hash": payload_hash(original),
        "original_payload": original,
        "received_hash": payload_hash(changed),
        "received_payload": changed,
        "occurrences": 4,
        "first_seen": seen_changed[0],
        "last_seen": seen_changed[-1],
        "late": False,
    }
    assert repeated["first_seen"] <= repeated["last_seen"]

    single = by_hash[payload_hash(other)]
    assert single["occurrences"] == 1
    assert single["first_seen"] == single["last_seen"]
    assert single["original_hash"] == payload_hash(original)
    assert single["original_payload"] == original
    assert single["received_payload"] == other
    # The queue lists the mismatch seen first first.
    assert [i["received_hash"] for i in items] == [payload_hash(changed), payload_hash(other)]
    assert services.receipt("w")["counts"]["quarantined"] == 5


def test_the_quarantine_queue_of_one_window_does_not_show_another_windows_mismatches(services):
    for window_id in ("w1", "w2"):
        services.ledger.admit(window_id, batch(window_id, event("a", {"v": 1})))
        services.ledger.admit(window_id, batch(window_id, event("a", {"v": window_id})))
    services.catch_up()
    for window_id in ("w1", "w2"):
        items, _ = services.read.quarantine_queue(window_id, None, None)
        assert [(i["window_id"], i["received_payload"]) for i in items] == [
            (window_id, {"v": window_id})
        ]
    everything, _ = services.read.quarantine_queue(None, None, None)
    assert [i["window_id"] for i in everything] == ["w1", "w2"]


# --- receipts and the closing summary ----------------------------------------------------------


def _busy_window(services, bus: ScriptedBus, window_id: str) -> None:
    """Admissions, duplicates, a quarantine, sources on two partitions, an unknown publish that
    is reconciled: every counter of the receipt moves."""
    stuck = identity(window_id, "u")
    bus.time_out_and_store.add(stuck)
    services.ledger.admit(
        window_id,
        batch(
            window_id,
            event("1", source={"partition": "p0", "offset": 10}),
            event("2", source={"partition": "p0", "offset": 4}),
            event("3", source={"partition": "p1", "offset": 7}),
            event("u", source={"partition": "p1", "offset": 99}),
            event("4"),
        ),
    )
    services.ledger.admit(
        window_id,
        batch(
            window_id,
            event("1", source={"partition": "p0", "offset": 11}),  # duplicate
            event("2", {"changed": True}),  # quarantined
            event("3"),  # duplicate
        ),
    )
    bus.heal()
    resolved = services.ledger.reconcile(window_id)
    assert (resolved["reconciled"], resolved["still_unknown"]) == ([stuck], [])


def test_the_receipt_equals_the_closing_summary_and_the_write_sides_receipt(make_services):
    bus = ScriptedBus()
    services = make_services(publisher=bus)
    _busy_window(services, bus, "w")
    receipt = services.close_window("w")

    summary = closing_summary(services, "w")
    history = services.ledger.history("w")
    assert receipt["status"] == "CLOSED"
    assert receipt["gate"] == "PASS"
    assert (
        receipt["counts"]
        == summary["counts"]
        == {
            "admitted": 5,
            "duplicates": 2,
            "quarantined": 1,
            "publish_unknown": 1,
            "reconciled": 1,
            "pending_unknown": 0,
        }
    )
    assert receipt["bus_offsets"] == summary["bus_offsets"]
    assert (
        receipt["source_offsets"]
        == summary["source_offsets"]
        == {
            "p0": {"min": 4, "max": 10},
            "p1": {"min": 7, "max": 99},
        }
    )
    assert receipt["opened_at"] == summary["opened_at"] == history[0]["recorded_at"]
    assert receipt["closed_at"] == history[-1]["recorded_at"]
    assert receipt["events"] == summary["events"] == len(history)
    assert receipt["chain_head"] == history[-1]["digest"]
    assert receipt["chain_head"] == services.ledger.verify("w").head

    write_side = services.ledger.receipt("w")
    assert write_side["gate"] == "PASS"
    # The receipt served is the write side's, plus the signature made at close over it.
    assert {k: v for k, v in receipt.items() if k not in ("gate", "signature")} == {
        k: v for k, v in write_side.items() if k != "gate"
    }
    assert receipt["signature"]["key_id"] == services.keys()[0]["key_id"]
    assert services.read.windows(None, None)[0] == [
        {
            "window_id": "w",
            "status": "CLOSED",
            "gate": "PASS",
            "counts": receipt["counts"],
            "opened_at": receipt["opened_at"],
            "closed_at": receipt["closed_at"],
        }
    ]


def test_the_receipt_of_an_open_window_matches_the_write_side_after_catch_up(make_services):
    bus = ScriptedBus()
    services = make_services(publisher=bus)
    _busy_window(services, bus, "w")
    bus.time_out_and_store.add(identity("w", "later"))
    services.ledger.admit("w", batch("w", event("later")))
    services.catch_up()
    receipt = services.receipt("w")
    write_side = services.ledger.receipt("w")
    assert receipt["status"] == "OPEN" and receipt["closed_at"] is None
    assert receipt["counts"]["pending_unknown"] == 1
    assert receipt == write_side
    assert receipt["events"] == len(services.ledger.history("w"))


# --- gate -----------------------------------------------------------------------------------


def test_the_gate_goes_open_then_blocked_then_open_then_pass(make_services):
    bus = ScriptedBus()
    services = make_services(publisher=bus)
    services.ledger.admit("w", batch("w", event("1")))
    services.catch_up()
    assert services.gate("w") == {
        "window_id": "w",
        "status": "OPEN",
        "reasons": ["window is not closed"],
    }

    stuck = identity("w", "2")
    bus.time_out_and_store.add(stuck)
    (result,) = services.ledger.admit("w", batch("w", event("2")))
    assert result.verdict.value == "PUBLISH_UNKNOWN"
    services.catch_up()
    gate = services.gate("w")
    assert gate["status"] == "BLOCKED"
    assert gate["reasons"] == ["1 identities have an unknown publish outcome"]
    assert services.receipt("w")["counts"]["pending_unknown"] == 1

    with pytest.raises(PublishUnknownPending) as refused:
        services.close_window("w")
    assert refused.value.extra["pending"] == [stuck]
    services.catch_up()
    assert services.gate("w")["status"] == "BLOCKED"
    assert services.receipt("w")["status"] == "OPEN"

    bus.heal()
    resolved = services.ledger.reconcile("w")
    assert (resolved["reconciled"], resolved["still_unknown"]) == ([stuck], [])
    services.catch_up()
    assert services.gate("w")["status"] == "OPEN"

    receipt = services.close_window("w")
    assert services.gate("w") == {"window_id": "w", "status": "PASS", "reasons": []}
    assert receipt["counts"]["admitted"] == 2
    assert receipt["counts"]["reconciled"] == 1


def test_the_gate_fails_naming_the_counts_when_the_read_side_disagrees_with_the_summary(services):
    services.ledger.admit("w", batch("w", event("1"), event("2"), event("1")))
    services.catch_up()
    with services.store.writer.begin() as conn:
        conn.execute(text("UPDATE rm_receipts SET admitted = admitted + 1 WHERE window_id = 'w'"))
    services.close_window("w")
    gate = services.gate("w")
    assert gate["status"] == "FAIL"
    assert len(gate["reasons"]) == 1
    assert "counts" in gate["reasons"][0]
    assert "'admitted': 3" in gate["reasons"][0]  # the read side's
    assert "'admitted': 2" in gate["reasons"][0]  # the closing summary's
    assert services.receipt("w")["gate"] == "FAIL"
    assert services.read.windows(None, None)[0][0]["gate"] == "FAIL"


def test_the_gate_fails_naming_the_hash_chain_when_history_was_edited_before_close(
    services, database_url
):
    services.ledger.admit(
        "w", batch("w", event("a", {"n": "a"}), event("b", {"n": "b"}), event("c", {"n": "c"}))
    )
    services.catch_up()
    tamper_stored_event(database_url, "w", 3, b'"payload":{"n":"b"}', b'"payload":{"n":"B"}')
    services.close_window("w")
    gate = services.gate("w")
    assert gate["status"] == "FAIL"
    assert any("hash chain" in reason and "3" in reason for reason in gate["reasons"]), gate
    summary = closing_summary(services, "w")
    assert summary["chain_verified"] is False
    assert summary["first_bad_version"] == 3


def test_an_unknown_window_has_no_receipt_and_no_gate(services):
    services.ledger.admit("w", batch("w", event("1")))
    services.catch_up()
    assert services.read.receipt("nope") is None
    assert services.read.gate("nope") is None


# --- admitted events ------------------------------------------------------------------------


def test_the_admitted_read_model_lists_admitted_events_in_offset_order_without_unknown_ones(
    make_services,
):
    bus = ScriptedBus()
    services = make_services(publisher=bus)
    # Offsets follow the batch order; identities (the primary key) are in no such order.
    ids = [f"e{n:02d}" for n in range(30, 0, -1)]
    bus.time_out_and_store.add(identity("w", "e17"))
    services.ledger.admit(
        "w",
        batch(
            "w",
            *[
                event(i, {"n": i}, source={"partition": "p", "offset": k})
                for k, i in enumerate(ids)
            ],
        ),
    )
    services.ledger.admit("w", batch("w", event("e05", {"n": "other"})))  # quarantined
    services.catch_up()

    items, next_cursor = services.read.admitted_events("w", None, None)
    assert next_cursor is None
    admitted_ids = [i for i in ids if i != "e17"]
    assert [item["event_id"] for item in items] == admitted_ids
    offsets = [item["offset"] for item in items]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    for k, item in enumerate(items):
        source_offset = ids.index(item["event_id"])
        assert item == {
            "offset": offsets[k],
            "event_type": "order.created",
            "event_id": item["event_id"],
            "identity": identity("w", item["event_id"]),
            "payload_hash": payload_hash({"n": item["event_id"]}),
            "payload": {"n": item["event_id"]},  # the original, not the quarantined one
            "source": {"partition": "p", "offset": source_offset},
            "version": item["version"],
        }
        # The version names the stored event that carries the payload.
        [carrier] = services.ledger.history("w", after=item["version"] - 1, limit=1)
        assert carrier["type"] == "EventAdmitted"
        assert carrier["fields"]["payload"] == item["payload"]
    # Exactly the bus offsets the write side handed out.
    history = services.ledger.history("w")
    assert offsets == [h["fields"]["offset"] for h in history if h["type"] == "EventAdmitted"]

    bus.heal()
    services.ledger.reconcile("w")
    services.catch_up()
    items, _ = services.read.admitted_events("w", None, None)
    assert "e17" in [item["event_id"] for item in items]
    assert len(items) == len(ids)
    offsets = [item["offset"] for item in items]
    assert offsets == sorted(offsets)


def test_the_admitted_read_model_keeps_awkward_payloads_sources_and_ids_exactly(services):
    # Rows reach PostgreSQL in one binary COPY a batch (ADR 0051; one JSON document before, ADR
    # 0032): quotes, backslashes, control characters and non-ASCII text must come back as
    # admitted, and nulls as null.
    awkward = [
        {
            "text": 'a "quoted" \\ back\\slash',
            "tab": "a\tb\nc",
            "unicode": "\u00e9\u4e2d\U0001f600",
        },
        {"nested": {"list": [1, 2.5, None, True, "x"], "empty": {}}, "big": 2**53 - 1},
        {"json_in_a_string": '{"k": [1, 2]}', "percent": "%s %(x)s ::json"},
    ]
    items_in = [
        event(f"e{n}", payload, source={"partition": 'p"q', "offset": n} if n != 1 else None)
        for n, payload in enumerate(awkward)
    ]
    services.ledger.admit(
        "w", batch("w", *[{k: v for k, v in i.items() if v is not None} for i in items_in])
    )
    services.ledger.admit("w", batch("w", event('id "with" \\ quotes', {"n": 1})))
    services.catch_up()

    items, _ = services.read.admitted_events("w", None, None)
    by_id = {item["event_id"]: item for item in items}
    assert len(items) == 4
    for n, payload in enumerate(awkward):
        assert by_id[f"e{n}"]["payload"] == payload
        assert by_id[f"e{n}"]["payload_hash"] == payload_hash(payload)
        assert by_id[f"e{n}"]["source"] == (None if n == 1 else {"partition": 'p"q', "offset": n})
    assert by_id['id "with" \\ quotes']["payload"] == {"n": 1}
    assert [item["offset"] for item in items] == [1, 2, 3, 4]


# --- paging ---------------------------------------------------------------------------------


def test_paging_windows_admitted_events_and_the_quarantine_queue_returns_every_item_once(services):
    windows = [f"w{n}" for n in range(11)]
    for window_id in windows:
        services.ledger.admit(window_id, batch(window_id, event("x")))
    events = [event(str(n), {"n": n}) for n in range(23)]
    services.ledger.admit("w3", batch("w3", *events))
    services.ledger.admit("w2", batch("w2", event("x", {"other": 1})))
    services.ledger.admit("w5", batch("w5", event("x", {"other": 1}), event("x", {"third": 1})))
    services.ledger.admit(
        "w3",
        batch(
            "w3",
            *[event(str(n), {"n": n, "changed": True}) for n in range(5)],
            event("x", {"other": 1}),
        ),
    )
    services.catch_up()

    for limit in (1, 2, 3, 100):
        listed = all_pages(lambda after, n: services.read.windows(after, n), limit)
        assert [w["window_id"] for w in listed] == sorted(windows)

        admitted = all_pages(
            lambda after, n: services.read.admitted_events(
                "w3", int(after) if after is not None else None, n
            ),
            limit,
        )
        assert len(admitted) == 24
        assert sorted(a["event_id"] for a in admitted) == sorted(["x", *map(str, range(23))])
        assert [a["offset"] for a in admitted] == list(range(1, 25))

        def queue(window_id):
            return lambda after, size: services.read.quarantine_queue(
                window_id, int(after) if after is not None else None, size
            )

        everything = all_pages(queue(None), limit)
        keys = [(q["window_id"], q["identity"], q["received_hash"]) for q in everything]
        assert len(keys) == len(set(keys)) == 1 + 6 + 2
        unpaged, none = services.read.quarantine_queue(None, None, 1000)
        assert none is None and everything == unpaged
        assert len(all_pages(queue("w3"), limit)) == 6
        assert len(all_pages(queue("w5"), limit)) == 2


# --- schema evolution -----------------------------------------------------------------------


def test_a_stored_version_one_history_projects_to_a_passing_receipt(services):
    window_id = store_v1_window(services.ledger.recorder)
    services.catch_up()
    assert services.gate(window_id) == {"window_id": window_id, "status": "PASS", "reasons": []}
    receipt = services.receipt(window_id)
    summary = closing_summary(services, window_id)
    history = services.ledger.history(window_id)
    assert receipt["counts"] == summary["counts"]
    assert receipt["counts"]["admitted"] == 2 and receipt["counts"]["duplicates"] == 1
    assert receipt["events"] == len(history) == 5
    assert receipt["chain_head"] == history[-1]["digest"]
    assert {k: v for k, v in receipt.items() if k != "gate"} == {
        k: v for k, v in services.ledger.receipt(window_id).items() if k != "gate"
    }
    items, _ = services.read.admitted_events(window_id, None, None)
    assert [i["offset"] for i in items] == [1, 2]


# --- runners --------------------------------------------------------------------------------


def _several_windows(services, windows: int = 6, per_window: int = 40) -> None:
    for w in range(windows):
        window_id = f"w{w}"
        services.ledger.admit(
            window_id,
            batch(
                window_id,
                *[
                    event(str(n), source={"partition": f"p{n % 3}", "offset": n})
                    for n in range(per_window)
                ],
            ),
        )
        services.ledger.admit(window_id, batch(window_id, event("0"), event("1", {"changed": w})))
        if w % 2 == 0:
            services.ledger.close_window(window_id)


def catch_up_at_once(runners: list[Any]) -> None:
    """Every runner catches up at the same moment, each in a thread of its own, in many small
    pages (many chances to collide); the first failure is re-raised here."""
    for s in runners:
        s.runner.page = 7
    start = threading.Barrier(len(runners))
    failures: list[BaseException] = []

    def run(s) -> None:
        try:
            start.wait()
            s.runner.run_until_caught_up()
        except BaseException as exc:  # re-raised in the test's thread below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads)
    if failures:
        raise failures[0]


def test_two_runners_stepping_at_once_apply_every_event_exactly_once(make_services, database_url):
    writer = make_services()
    _several_windows(writer)
    catch_up_at_once([make_services(), make_services()])

    head = writer.runner.head()
    assert set(writer.runner.positions().values()) == {head}
    after_concurrent = checksums(database_url)
    for w in range(6):
        receipt = writer.receipt(f"w{w}")
        assert receipt["counts"]["admitted"] == 40
        assert receipt["counts"]["duplicates"] == 1
        assert receipt["counts"]["quarantined"] == 1
        assert receipt["gate"] == ("PASS" if w % 2 == 0 else "OPEN")

    writer.runner.rebuild()  # a single clean run over the same log
    assert checksums(database_url) == after_concurrent


def test_two_runners_that_are_already_tracking_apply_new_windows_exactly_once(
    make_services, database_url
):
    writer = make_services()
    writer.ledger.admit("first", batch("first", event("1")))
    writer.catch_up()  # every projection has a tracking row from here on
    _several_windows(writer)  # new windows: their WindowOpened events reach both runners
    catch_up_at_once([make_services(), make_services()])

    after_concurrent = checksums(database_url)
    writer.runner.rebuild()
    assert checksums(database_url) == after_concurrent
    assert [w["counts"]["admitted"] for w in writer.read.windows(None, None)[0]] == [1] + [40] * 6


def followed_to_head(services: Any, what: str, timeout: float, head_of: Any = None) -> None:
    """Wait until `services`' follower has applied the log up to its head now (the head as
    `head_of` sees it: another process's services)."""
    head = (head_of or services).runner.head()
    wait_until(lambda: min(services.runner.positions().values()) >= head, timeout, what)


def test_the_background_follower_catches_up_without_being_asked(services):
    services.start_following()
    for w in range(3):
        window_id = f"w{w}"
        services.ledger.admit(window_id, batch(window_id, *[event(str(n)) for n in range(50)]))
    services.ledger.close_window("w0")
    followed_to_head(services, "the follower to reach the log head", 60)
    assert services.gate("w0")["status"] == "PASS"
    assert [w["counts"]["admitted"] for w in services.read.windows(None, None)[0]] == [50, 50, 50]
    # It keeps following: a later admission is applied too.
    services.ledger.admit("w1", batch("w1", event("late")))
    followed_to_head(services, "the follower to apply a later admission", 60)
    assert services.receipt("w1")["counts"]["admitted"] == 51


def test_a_committed_group_wakes_the_follower_itself_with_polling_turned_off(services):
    # The group committer wakes the read side once per group it commits (ADR 0044): the HTTP
    # handler no longer does. On SQLite (no notifications) nothing else would wake the
    # follower before its hour-long poll.
    services.ledger.admit("w0", batch("w0", event("before")))  # the direct path: no wake
    services.runner.poll_interval = 3600
    services.start_following()
    followed_to_head(services, "the follower's first step", 60)
    services.admit("w", batch("w", event("a"), event("b")))  # through the group committer
    followed_to_head(services, "the group commit to wake the follower", 20)
    assert services.receipt("w")["counts"]["admitted"] == 2
    assert services.ledger.committer.groups == 1


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgresql_a_notification_wakes_the_follower_even_with_polling_turned_off(
    make_services, database_url
):
    # SQLite has no notifications (it polls); on PostgreSQL the follower LISTENs on the events
    # table's channel, so with an hour-long poll interval only a NOTIFY can wake it.
    writer, follower = make_services(), make_services()
    follower.runner.poll_interval = 3600
    follower.start_following()

    def listening() -> bool:
        with follower.store.reader.connect() as conn:
            return bool(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND query LIKE 'LISTEN %'"
                    )
                ).scalar()
            )

    wait_until(listening, 30, "the follower to LISTEN")
    writer.ledger.admit("w", batch("w", *[event(str(n)) for n in range(5)]))
    followed_to_head(follower, "a NOTIFY to wake the follower", 60, head_of=writer)
    assert follower.receipt("w")["counts"]["admitted"] == 5


def test_a_step_applies_at_most_page_bytes_of_the_log_and_at_most_a_page_of_events(services):
    """Small events go a page a step; events of 10 KB go as many as fit in `page_bytes`, and
    one larger than it goes alone, so a step's memory is bounded whatever the payloads weigh,
    even where heavy events follow light ones (ADR 0037)."""
    runner = services.runner
    runner.page, runner.page_bytes = 50, 64 * 1024
    services.ledger.admit("small", batch("small", *[event(f"s{n}") for n in range(120)]))
    heavy = [event(f"h{n}", {"pad": "x" * 10_000}) for n in range(30)]
    services.ledger.admit("heavy", batch("heavy", *heavy))
    services.ledger.admit("huge", batch("huge", event("x", {"pad": "y" * 100_000})))
    sizes = {n.id: len(n.state) for n in runner.read(0, 1000)}
    ends = [0]
    while runner.step():
        ends.append(min(runner.positions().values()))
    order = sorted(sizes)
    pages = [[i for i in order if a < i <= b] for a, b in itertools.pairwise(ends)]
    assert ends[-1] == order[-1]  # the whole log, each event once
    assert [len(page) for page in pages[:2]] == [50, 50]  # light events: a page a step
    for page in pages:
        # What came before a page's last event fit in page_bytes; the last may pass it.
        assert 1 <= len(page) <= 50 and sum(sizes[i] for i in page[:-1]) < 64 * 1024, page
    assert max(len(page) for page in pages[3:]) <= 7  # ~10 KB events: six or so a page
    assert pages[-1][-1] == order[-1] and sizes[order[-1]] > 64 * 1024  # the huge one, at last
    items, _ = services.read.admitted_events("heavy", None, 100)
    assert [i["event_id"] for i in items] == [f"h{n}" for n in range(30)]
