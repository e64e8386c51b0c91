"""Any interleaving of admissions, repeats, mismatches, publish outcomes, reconciles, closes and
restarts keeps the contract (sections 3-5), on a real ledger over a fresh SQLite file per example.

The test's model, from the contract alone: each identity's state (ABSENT, ADMITTED(offset),
UNKNOWN), the events each command must record, and the bus (message id = identity; a timeout may
keep or drop the message). After every step each window's history must be exactly the model's
events, its chain must recompute, its receipt must equal a fold of that history made here, and its
identity index must hold the model's states. Left open by the contract, so chosen here: offsets
come in the order the ledger asked the bus (what it asks is checked as a set), and `bus_offsets`
is the lowest and highest offset admitted.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from api.errors import status_of
from ledger import errors
from ledger.application import Ledger, Verification
from ledger.ports import Message, PublishOutcome
from ledger.receipts import COUNT_KEYS
from service.composition import build_ledger
from service.settings import Settings
from tests.support.builders import TYPE, batch, event
from tests.support.bus import ScriptedBus
from tests.support.client import client_identity, client_payload_hash, recompute_chain

WINDOWS = ("w1", "w2")
EVENT_IDS = ("a", "b", "c", "d")
# 1 and 1.0 are one JCS number, key order is not part of the hash: two hashes in four payloads,
# the first three times as likely (a repeat is a duplicate more often than a mismatch).
PAYLOADS: list[dict[str, Any]] = [{"v": 1}, {"v": 1.0}, {"a": "x", "v": 2}, {"v": 2, "a": "x"}]
PAYLOAD_CHOICES = (0, 0, 0, 1, 1, 1, 2, 3)
ACK, STORE, DROP = "acked", "unknown, message stored", "unknown, message dropped"
SNAPSHOT_INTERVAL = 7  # small, so that restarts load windows from snapshots too
MISSING = object()
SLOW = [HealthCheck.too_slow]
SUMMED = ("counts", "bus_offsets", "source_offsets")  # what WindowClosed's summary holds

COUNTED = {
    "DuplicateAbsorbed": "duplicates",
    "MismatchQuarantined": "quarantined",
    "PublishUnknown": "publish_unknown",
    "PublishReconciled": "reconciled",
}
Arrival = tuple[str, int, dict[str, Any] | None]  # event_id, payload index, source
Modes = dict[str, str]  # event_id -> what the bus does with that identity in this step

sources = st.fixed_dictionaries({"partition": st.sampled_from("pq"), "offset": st.integers(0, 9)})
arrivals = st.lists(
    st.tuples(st.sampled_from(EVENT_IDS), st.sampled_from(PAYLOAD_CHOICES), st.none() | sources),
    min_size=1,
    max_size=5,
)
modes = st.fixed_dictionaries({e: st.sampled_from([ACK, ACK, ACK, STORE, DROP]) for e in EVENT_IDS})
refusals = st.sampled_from([False, False, False, True])  # the bus refuses the whole call
windows = st.sampled_from(WINDOWS)


class RecordingBus(ScriptedBus):
    """The scripted bus, keeping which identities the ledger asked it to publish."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def publish(
        self, window_id: str, messages: Sequence[Message], next_sequence: int
    ) -> list[PublishOutcome]:
        self.asked.extend(m.identity for m in messages)
        return super().publish(window_id, messages, next_sequence)


@dataclass
class Known:
    state: str  # ADMITTED or UNKNOWN (ABSENT: not in the model's map)
    payload_hash: str
    offset: int | None = None


@dataclass
class ModelWindow:
    states: dict[str, Known] = field(default_factory=dict)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    receipt: dict[str, Any] | None = None  # what the first close answered

    def record(self, kind: str, **fields: Any) -> None:
        self.events.append((kind, fields))

    @property
    def exists(self) -> bool:
        return bool(self.events)

    @property
    def closed(self) -> bool:
        return self.exists and self.events[-1][0] == "WindowClosed"

    @property
    def pending(self) -> list[str]:
        return sorted(i for i, k in self.states.items() if k.state == "UNKNOWN")

    @property
    def gate(self) -> str:
        return "PASS" if self.closed else "BLOCKED" if self.pending else "OPEN"


def fold(window_id: str, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The receipt (contract s.5, without the gate) from the window's history alone."""
    counts = dict.fromkeys(COUNT_KEYS, 0)
    pending: set[str] = set()
    offsets: list[int] = []
    sources: dict[str, list[int]] = {}
    for item in history:
        kind, fields = item["type"], item["fields"]
        if kind in COUNTED:
            counts[COUNTED[kind]] += 1
        if kind in ("EventAdmitted", "PublishUnknown") and fields["source"] is not None:
            sources.setdefault(fields["source"]["partition"], []).append(fields["source"]["offset"])
        if kind == "PublishUnknown":
            pending.add(fields["identity"])
        elif kind == "PublishReconciled":
            pending.discard(fields["identity"])
        if kind == "EventAdmitted" or fields.get("outcome") == "published":
            counts["admitted"] += 1
            offsets.append(fields["offset"])
    counts["pending_unknown"] = len(pending)
    closed = bool(history) and history[-1]["type"] == "WindowClosed"
    return {
        "window_id": window_id,
        "status": "CLOSED" if closed else "OPEN",
        "counts": counts,
        "bus_offsets": {"first": min(offsets, default=None), "last": max(offsets, default=None)},
        "source_offsets": {p: {"min": min(o), "max": max(o)} for p, o in sorted(sources.items())},
        "opened_at": history[0]["recorded_at"] if history else None,
        "closed_at": history[-1]["recorded_at"] if closed else None,
        "events": len(history),
        "chain_head": history[-1]["digest"] if history else "0" * 64,
    }


def refused(error: type[errors.LedgerError], status: int, call: Any, *args: Any) -> Any:
    """The command's refusal, which the HTTP API answers with `status` and the error's code."""
    with pytest.raises(error) as caught:
        call(*args)
    assert status_of(caught.value) == status
    assert caught.value.as_json()["error"] == error.code
    return caught.value


@settings(max_examples=100, stateful_step_count=30, deadline=None, suppress_health_check=SLOW)
class WindowMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="window-machine-"))
        self.bus = RecordingBus()
        self.ledger = self.build()
        self.model = {w: ModelWindow() for w in WINDOWS}
        self.on_bus: dict[str, int] = {}  # the model of the bus: message id -> offset
        self.event_of = {client_identity(w, TYPE, e): e for w in WINDOWS for e in EVENT_IDS}

    def build(self) -> Ledger:
        url = f"sqlite:///{self.directory / 'ledger.db'}"
        return build_ledger(
            Settings(database_url=url, snapshot_interval=SNAPSHOT_INTERVAL), self.bus
        )

    def teardown(self) -> None:
        self.ledger.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def script_bus(self, step_modes: Modes, refuse: bool) -> None:
        self.bus.asked.clear()
        self.bus.refuse = refuse
        self.bus.time_out_and_store = {
            i for i, e in self.event_of.items() if step_modes[e] == STORE
        }
        self.bus.time_out_and_drop = {i for i, e in self.event_of.items() if step_modes[e] == DROP}

    def published(self, step_modes: Modes) -> dict[str, int | None]:
        """The model bus's answers (an offset when acked), in the order the ledger asked."""
        for i in self.bus.asked:
            if step_modes[self.event_of[i]] != DROP:
                self.on_bus.setdefault(i, len(self.on_bus) + 1)
        return {
            i: self.on_bus[i] if step_modes[self.event_of[i]] == ACK else None
            for i in self.bus.asked
        }

    @rule(window=windows, items=arrivals, step_modes=modes, refuse=refusals)
    def admit(self, window: str, items: list[Arrival], step_modes: Modes, refuse: bool) -> None:
        made = [event(e, dict(PAYLOADS[p]), **({"source": s} if s else {})) for e, p, s in items]
        admissions = batch(window, *made)
        seen = [
            (client_identity(window, TYPE, e), client_payload_hash(PAYLOADS[p]), e, p, s)
            for e, p, s in items
        ]
        mw = self.model[window]
        self.script_bus(step_modes, refuse)
        try:
            if mw.closed:
                self.admit_after_close(window, admissions, seen)
                return
            wanted = {
                i
                for i, h, *_ in seen
                if (k := mw.states.get(i)) is None or (k.state == "UNKNOWN" and k.payload_hash == h)
            }
            if wanted and refuse:  # nothing recorded, not even WindowOpened
                refused(errors.PublishRefused, 503, self.ledger.admit, window, admissions)
                assert set(self.bus.asked) == wanted
                return
            results = self.ledger.admit(window, admissions)
        finally:
            self.bus.heal()
        assert set(self.bus.asked) == wanted  # exactly the ABSENT and same-hash UNKNOWN ones
        outcomes = self.published(step_modes)
        expected = []
        if not mw.exists:
            mw.record("WindowOpened", window_id=window)
        for i, h, e, p, s in seen:
            k = mw.states.get(i)
            verdict: tuple[str, int | None]
            if k is None:
                offset = outcomes.pop(i)
                base = {"identity": i, "payload": PAYLOADS[p], "payload_hash": h, "source": s}
                if offset is not None:
                    mw.states[i] = Known("ADMITTED", h, offset)
                    mw.record("EventAdmitted", **base, event_type=TYPE, event_id=e, offset=offset)
                    verdict = ("ADMITTED", offset)
                else:
                    mw.states[i] = Known("UNKNOWN", h)
                    mw.record("PublishUnknown", **base)
                    verdict = ("PUBLISH_UNKNOWN", None)
            elif k.payload_hash != h:
                got = {"received_hash": h, "received_payload": PAYLOADS[p], "source": s}
                mw.record("MismatchQuarantined", identity=i, original_hash=k.payload_hash, **got)
                verdict = ("QUARANTINED", None)
            elif k.state == "ADMITTED":
                mw.record(
                    "DuplicateAbsorbed", identity=i, payload_hash=h, offset=k.offset, source=s
                )
                verdict = ("DUPLICATE", k.offset)
            elif (offset := outcomes.pop(i, None)) is not None:  # UNKNOWN, same hash, now acked
                mw.states[i] = Known("ADMITTED", h, offset)
                mw.record("PublishReconciled", identity=i, outcome="published", offset=offset)
                verdict = ("ADMITTED", offset)
            else:  # UNKNOWN, same hash, still unknown: nothing new
                verdict = ("PUBLISH_UNKNOWN", None)
            expected.append((e, i, h, *verdict))
        answered = [
            (r.event_id, r.identity, r.payload_hash, r.verdict.value, r.offset) for r in results
        ]
        assert answered == expected

    def admit_after_close(self, window: str, admissions: Any, seen: list[Any]) -> None:
        """Exact duplicates are answered and nothing is recorded; anything else refuses it all."""
        states = self.model[window].states
        duplicates = [
            (i, states[i].offset)
            for i, h, *_ in seen
            if i in states and (states[i].state, states[i].payload_hash) == ("ADMITTED", h)
        ]
        if len(duplicates) < len(seen):
            refused(errors.WindowClosed, 409, self.ledger.admit, window, admissions)
        else:
            results = self.ledger.admit(window, admissions)
            answered = [(r.identity, r.verdict.value, r.offset) for r in results]
            assert answered == [(i, "DUPLICATE", o) for i, o in duplicates]
        assert self.bus.asked == []

    @rule(window=windows, step_modes=modes, refuse=refusals)
    def reconcile(self, window: str, step_modes: Modes, refuse: bool) -> None:
        mw = self.model[window]
        pending = mw.pending if mw.exists and not mw.closed else []
        self.script_bus(step_modes, refuse)
        try:
            if not mw.exists:
                refused(errors.WindowNotFound, 404, self.ledger.reconcile, window)
                return
            if pending and refuse:
                refused(errors.PublishRefused, 503, self.ledger.reconcile, window)
                assert sorted(self.bus.asked) == pending
                return
            answer = self.ledger.reconcile(window)
        finally:
            self.bus.heal()
        assert sorted(self.bus.asked) == pending  # a closed window asks the bus nothing
        settled = []
        for i, offset in self.published(step_modes).items():
            if offset is not None:
                mw.states[i].state, mw.states[i].offset = "ADMITTED", offset
                mw.record("PublishReconciled", identity=i, outcome="published", offset=offset)
                settled.append(i)
        assert sorted(answer["reconciled"]) == sorted(settled)
        assert sorted(answer["still_unknown"]) == sorted(set(pending) - set(settled))

    @rule(window=windows)
    def close(self, window: str) -> None:
        mw = self.model[window]
        if not mw.exists:
            refused(errors.WindowNotFound, 404, self.ledger.close_window, window)
        elif mw.closed:
            assert self.ledger.close_window(window) == mw.receipt  # and nothing recorded
        elif mw.pending:
            error = refused(errors.PublishUnknownPending, 409, self.ledger.close_window, window)
            assert error.extra["pending"] == mw.pending
        else:
            mw.receipt = self.ledger.close_window(window)
            mw.record("WindowClosed")
            assert (mw.receipt["status"], mw.receipt["gate"]) == ("CLOSED", "PASS")

    @rule()
    def restart(self) -> None:
        """A new process on the same database: nothing cached, windows loaded from storage."""
        self.ledger.close()
        self.ledger = self.build()

    @invariant()
    def every_window_keeps_the_contract(self) -> None:
        assert self.bus.stored == self.on_bus  # one message per identity, no more
        for window in WINDOWS:
            self.check_window(window)

    def check_window(self, window: str) -> None:
        mw = self.model[window]
        if not mw.exists:
            refused(errors.WindowNotFound, 404, self.ledger.history, window)
            refused(errors.WindowNotFound, 404, self.ledger.receipt, window)
            assert self.ledger.index.count_identities(window) == {}
            return
        assert self.ledger.has_window(window)
        history = list(self.ledger.iter_history(window))
        recorded = [
            (item["type"], {k: item["fields"].get(k, MISSING) for k in expected})
            for item, (_, expected) in zip(history, mw.events, strict=False)
        ]
        assert (len(history), recorded) == (len(mw.events), mw.events)
        head = recompute_chain(history)
        assert self.ledger.verify(window) == Verification(True, len(history), head, None)
        once = [
            h["fields"]["identity"]
            for h in history
            if h["type"] == "EventAdmitted" or h["fields"].get("outcome") == "published"
        ]
        assert len(once) == len(set(once))  # no identity is admitted twice
        receipt = self.ledger.receipt(window)
        assert receipt == fold(window, history) | {"gate": mw.gate}
        if mw.closed:
            assert receipt == mw.receipt
            summary = history[-1]["fields"]["summary"]
            before = fold(window, history[:-1])
            assert [summary[k] for k in SUMMED] == [before[k] for k in SUMMED]
            assert summary["events"] == len(history)
        mine = [client_identity(window, TYPE, e) for e in EVENT_IDS]
        known = self.ledger.index.lookup_identities(window, mine)
        indexed = {i: (k.state.value, k.payload_hash, k.offset) for i, k in known.items()}
        assert indexed == {i: (k.state, k.payload_hash, k.offset) for i, k in mw.states.items()}


TestAnyInterleavingOfAdmissionsReconcilesAndClosesKeepsTheContract = WindowMachine.TestCase


# --- the checker catches a model that expects the wrong thing ----------------------------------


A, B = client_identity("w1", TYPE, "a"), client_identity("w1", TYPE, "b")
WRONG_MODELS = {
    "a duplicate forgotten": lambda m: m.model["w1"].events.pop(),
    "a refused batch opening w2": lambda m: m.model["w2"].record("WindowOpened"),
    "an offset shifted": lambda m: setattr(m.model["w1"].states[A], "offset", 2),
    "an unknown forgotten": lambda m: m.model["w1"].states.pop(B),
}


@pytest.mark.parametrize("wrong", WRONG_MODELS.values(), ids=WRONG_MODELS.keys())
def test_the_checker_fails_on_a_model_that_expects_the_wrong_thing(wrong: Any) -> None:
    machine = WindowMachine()
    try:
        acked = dict.fromkeys(EVENT_IDS, ACK)
        machine.admit("w1", [("a", 0, None), ("b", 2, None)], acked | {"b": DROP}, False)
        machine.admit("w2", [("c", 0, None)], acked, True)  # refused: w2 stays ABSENT
        machine.admit("w1", [("a", 1, {"partition": "p0", "offset": 1})], acked, True)
        machine.every_window_keeps_the_contract()  # the right model passes
        wrong(machine)
        with pytest.raises(AssertionError):
            machine.every_window_keeps_the_contract()
    finally:
        machine.teardown()
