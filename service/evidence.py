"""Evidence that outlives the database (contract s.9): the fail-closed gate, signed receipts,
checks on verify, at start and by a background scrub, and checked admitted pages.

The checks themselves are pure (`ledger.application.evidence`); this module runs them against
the live store and keeps their outcome where no rebuild reaches it (`projections.evidence`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ledger.application import Ledger, Verification
from ledger.application.evidence import (
    ChainWalk,
    first_bad_version,
    problems_against,
    signed_bytes,
)
from ledger.errors import ChainBroken, WindowNotFound
from ledger.gate import FAIL
from ledger.jcs import CanonicalizationError, canonicalize, sha256_hex
from ledger.ports import ReceiptSigner, ReceiptWitness
from projections.evidence import EvidenceStore
from projections.queries import ReadModels

log = logging.getLogger("ledger.evidence")

SCRUB_PAGE = 200
# The background scrub shares the process with admissions (one interpreter): it works at most
# this share of the time, resting in proportion to what it did (python -m benchmarks.scrub).
SCRUB_SHARE = 0.2
# A receipt's status CLOSED, or a gate's PASS or FAIL: the window is closed.
CLOSED_OR_JUDGED = frozenset({"CLOSED", "PASS", "FAIL"})
# What the follower saw can not be seen again in the store (a replaced event): it stays.
STICKY_SOURCES = frozenset({"follower"})
READ_MODEL_PAGE = 1000


class Evidence:
    def __init__(
        self, ledger: Ledger, store: EvidenceStore, read: ReadModels, signer: ReceiptSigner
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.read = read
        self.signer = signer
        self._sealed: set[str] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- checks ---------------------------------------------------------------------------

    def check(
        self, window_id: str, source: str, pace: Callable[[], None] = lambda: None
    ) -> tuple[Verification, list[str]]:
        """Hold the stored history to its chain, its close and its signed receipt, and the
        admitted read model to the history; keep the outcome as the window's latest check. The
        verification is the history's (naming the first version that does not stand); the
        reasons cover the read model too."""
        signed = self.store.signed(window_id)
        row = self.read.receipt(window_id)
        try:
            walk = self.ledger.reader.walk(window_id, pace)
        except WindowNotFound:
            if signed is None and row is None:
                raise
            walk = ChainWalk()  # a window the service knows, whose history is gone: none stands
        sealed = signed is not None or (row is not None and row["status"] == "CLOSED")
        problems = problems_against(walk, signed, sealed)
        verification = walk.verification()
        if problems:  # the history itself does not stand
            first_bad = first_bad_version(walk, signed, sealed)
            verification = Verification(False, walk.events, walk.head, first_bad)
        if sealed:  # the read side must serve what the history holds
            problems += self._read_model_problems(window_id, walk.events, pace)
        earlier = self.store.latest(window_id)
        if earlier and not earlier["ok"] and earlier["source"] in STICKY_SOURCES:
            problems += [r for r in earlier["reasons"] if r not in problems]
            source = earlier["source"]
        self.store.record(
            window_id,
            ok=not problems,
            reasons=problems,
            source=source,
            events=walk.events,
            head=walk.head,
        )
        return verification, problems

    def _read_model_problems(
        self, window_id: str, events: int, pace: Callable[[], None]
    ) -> list[str]:
        """The admitted read model held to the stored chain, a page at a time: what
        `GET .../admitted` would serve (the first problem found). Pages are ranges of
        READ_MODEL_PAGE versions, so each read is bounded whatever plan the database picks;
        the last one takes whatever lies beyond the history's `events` (none should)."""
        low = 0
        while True:
            high = low + READ_MODEL_PAGE if low < events else None
            page = self.read.admitted_by_version(window_id, low, READ_MODEL_PAGE, up_to=high)
            pace()
            stored = self.ledger.reader.items_at(window_id, [item["version"] for item in page])
            for item in page:
                problem = _page_problem(item, stored.get(item["version"]))
                if problem:
                    return [
                        f"admitted event {item['identity']} (version {item['version']}) in the "
                        f"read model: {problem}"
                    ]
            if high is None:
                return []
            low = high

    def verify(self, window_id: str) -> tuple[Verification, list[str]]:
        return self.check(window_id, "verify")

    def scrub(self, source: str = "scrub") -> int:
        """Check every closed window, a page at a time; return how many were checked."""
        checked, after = 0, None
        pace = _Pacer(self._stop)
        while not self._stop.is_set():
            page = self.store.closed_windows(after, SCRUB_PAGE)
            for window_id in page:
                if self._stop.is_set():
                    break
                try:
                    self.check(window_id, source, pace)
                    pace()
                except ScrubStopped:
                    return checked
                except Exception:  # one window's trouble must not stop the scrub of the rest
                    log.exception("scrub of window %r failed", window_id)
                checked += 1
            if len(page) < SCRUB_PAGE:
                break
            after = page[-1]
        self._sealed = None  # reloaded from the signed receipts on next use
        return checked

    def start(self, interval_seconds: float) -> None:
        """Scrub at start (in the background), then every interval (0: only at start)."""

        def run() -> None:
            source = "start"
            while not self._stop.is_set():
                try:
                    self.scrub(source)
                except Exception:
                    log.exception("scrub failed; next try in %.0f s", interval_seconds)
                if interval_seconds <= 0 or self._stop.wait(interval_seconds):
                    return
                source = "scrub"

        self._thread = threading.Thread(target=run, name="scrub", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # --- the gate, fail-closed --------------------------------------------------------------

    def sealed(self) -> set[str]:
        if self._sealed is None:
            self._sealed = self.store.sealed_windows()
        return self._sealed

    def is_sealed(self, window_id: str) -> bool:
        """Closed and signed by this service (from memory once loaded)."""
        return window_id in self.sealed()

    def guard(self, window_id: str) -> None:
        """A sealed window whose stored history no longer ends closed takes no command."""
        if window_id in self.sealed() and not self.ledger.get_window(window_id).is_closed:
            _, problems = self.check(window_id, "verify")
            raise ChainBroken(
                f"window {window_id!r} was closed and signed; its stored history no longer "
                f"stands: {'; '.join(problems)}"
            )

    def overrule(self, items: Iterable[dict[str, Any]], key: str = "gate") -> None:
        """Turn the gate of each closed window whose latest check failed to FAIL (in place), and
        add the check's reasons to a gate's (an open window's too: FAIL is for closed ones);
        `key` names the gate's field ("gate" in receipts and lists, "status" in a gate)."""
        listed = {item["window_id"]: item for item in items}
        if not listed:
            return
        for window_id, reasons in self.store.failures(list(listed)).items():
            item = listed[window_id]
            if item.get("status") in CLOSED_OR_JUDGED or window_id in self.sealed():
                item[key] = FAIL
            if "reasons" in item:
                item["reasons"] = [*item["reasons"], *reasons]

    # --- signing ------------------------------------------------------------------------

    def seal(self, window_id: str, at_close: dict[str, Any]) -> dict[str, Any]:
        """The window's signed receipt: signed now from the receipt made at close, the first
        time; the kept one after. With a witness bus, a copy goes there too."""
        signed = self.store.signed(window_id)
        if signed is None:
            body = {k: v for k, v in at_close.items() if k not in ("gate", "signature")}
            body["signature"] = {
                "alg": self.signer.alg,
                "key_id": self.signer.key_id,
                "value": self.signer.sign(signed_bytes(body)),
            }
            self.store.keep_signed(window_id, body, self.signer.key_id)
            signed = self.store.signed(window_id)
            assert signed is not None
        self.sealed().add(window_id)
        bus = self.ledger.publisher
        if isinstance(bus, ReceiptWitness):
            try:
                bus.witness(window_id, canonicalize(signed))
            except Exception:  # the receipt is kept; the witness copy is sent at the next close
                log.warning("could not publish the receipt of %r to the bus", window_id)
        return signed

    def keys(self) -> list[dict[str, str]]:
        return [{"key_id": self.signer.key_id, "public_key_pem": self.signer.public_key_pem}]

    # --- admitted pages -------------------------------------------------------------------

    def check_page(self, window_id: str, items: list[dict[str, Any]]) -> None:
        """Serve no payload whose hash differs from the payload_hash of its event in the stored
        chain: each payload is hashed, and held to its stored event, whose own digest must
        recompute."""
        reason = self._tail_problem(window_id)
        stored = self.ledger.reader.items_at(window_id, [item["version"] for item in items])
        for item in items:
            if reason:
                break
            problem = _page_problem(item, stored.get(item["version"]))
            if problem:
                reason = f"admitted event {item['identity']} (version {item['version']}): {problem}"
        if reason:
            self.store.record(window_id, ok=False, reasons=[reason], source="admitted")
            raise ChainBroken(f"window {window_id!r}: {reason}", gate={"status": FAIL})

    def _tail_problem(self, window_id: str) -> str | None:
        """The stored history's newest event against the signed receipt (one read): a deleted,
        truncated or rewritten tail shows here before any scrub runs."""
        signed = self.store.signed(window_id)
        if signed is None:
            return None
        last = self.ledger.reader.last_item(window_id)
        if last is None or (last["version"], last["type"], last["digest"]) != (
            signed["events"],
            "WindowClosed",
            signed["chain_head"],
        ):
            version = None if last is None else last["version"]
            return (
                f"the stored history ends at version {version} ({last and last['type']}), not at "
                f"the signed receipt's WindowClosed, version {signed['events']}, head "
                f"{signed['chain_head']}"
            )
        return None


def _page_problem(item: dict[str, Any], event: dict[str, Any] | None) -> str | None:
    if event is None:
        return "its event is missing from the stored history"
    fields = event["fields"]
    try:
        served_hash = sha256_hex(canonicalize(item["payload"]))
    except CanonicalizationError:
        return "the served payload cannot be canonicalized"
    if served_hash != item["payload_hash"] or fields.get("payload_hash") != item["payload_hash"]:
        return "the payload served differs from the payload_hash in the stored chain"
    if sha256_hex(canonicalize(fields.get("payload"))) != item["payload_hash"]:
        return "the stored event's payload does not hash to its payload_hash"
    if not event["intact"]:
        return "the stored event's digest does not recompute"
    return None


class ScrubStopped(Exception):
    """The service is stopping: the background check in progress is left unfinished."""


class _Pacer:
    """Called between pieces of background work: rests long enough that the work since the
    last call was at most SCRUB_SHARE of the time; stops the work when the service stops."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._since = time.perf_counter()

    def __call__(self) -> None:
        worked = time.perf_counter() - self._since
        if self._stop.wait(worked * (1 - SCRUB_SHARE) / SCRUB_SHARE):
            raise ScrubStopped
        self._since = time.perf_counter()
