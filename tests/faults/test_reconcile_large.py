"""Reconcile adopting a large backlog never wedges the ledger (issue 11, finding 1; ADR 0026).

Messages the ledger lacks on a window's subject (what lost acks leave behind) used to be
adopted in one transaction: about 14 MB or more of them and the write hung inside the
pipelined insert while holding the event store's table lock, so admissions to every other
window hung behind it. Adoption now goes in bounded steps, each its own short transaction,
and the other windows keep answering while it runs.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from service.composition import Services
from tests.support.builders import batch, event
from tests.support.invariants import window_problems
from tests.support.nats import publish_many
from tests.support.natsledger import Bus, admission_body, verdicts

ORPHANS = 1_000
BLOB = 50_000  # 1,000 x 50 KB: the 50 MB of the acceptance
RECONCILE_BOUND_SECONDS = 240.0
ANSWER_BOUND_SECONDS = 10.0  # a liveness bound for the other windows, not a benchmark


def test_reconcile_adopts_50_mb_of_orphans_while_other_windows_keep_answering(
    nats_services: Services, bus: Bus
) -> None:
    ledger, window = nats_services.ledger, "w.orphans"
    assert verdicts(ledger.admit(window, batch(window, event("first")))) == ["ADMITTED"]
    orphans = [
        admission_body(window, f"o{i}", {"id": i, "blob": "y" * BLOB})[::-1] for i in range(ORPHANS)
    ]
    stored = publish_many(bus.url, bus.stream, bus.subject(window), orphans)
    assert stored == ORPHANS

    outcome: dict[str, Any] = {}

    def reconcile() -> None:
        try:
            outcome["result"] = ledger.reconcile(window)
        except BaseException as exc:  # reported by the assertions below
            outcome["error"] = exc

    worker = threading.Thread(target=reconcile, daemon=True)
    worker.start()
    slowest, answered = 0.0, 0
    while worker.is_alive() and answered < 200:
        other = f"w.other-{answered}"
        started = time.monotonic()
        assert verdicts(ledger.admit(other, batch(other, event("e")))) == ["ADMITTED"]
        slowest = max(slowest, time.monotonic() - started)
        answered += 1
    worker.join(RECONCILE_BOUND_SECONDS)

    assert not worker.is_alive(), "reconcile did not finish: the ledger is wedged"
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert len(result["adopted"]) == ORPHANS
    assert result["unadoptable"] == [] and result["still_unknown"] == []
    assert answered > 0
    assert slowest < ANSWER_BOUND_SECONDS, f"an admission elsewhere took {slowest:.1f} s"

    assert bus.count(window) == ORPHANS + 1
    receipt = nats_services.close_window(window)
    assert receipt["counts"]["admitted"] == ORPHANS + 1
    assert nats_services.gate(window)["status"] == "PASS"
    assert window_problems(nats_services, window, bus_identities=bus.msg_ids(window)) == []
