"""The fault suite's invariants, checked after a fault from what a reviewer can read: the
window's history (the chain recomputed with nothing of the ledger's), its receipt, the bus.

`window_problems` lists what is wrong (empty when all hold), so a test of the checker can show
it catches a broken build:
- each identity admitted at most once (EventAdmitted or PublishReconciled(published)),
- every acknowledged admission present, at the offset it was acknowledged with,
- the receipt's counts and event count equal a fold over the history,
- the chain recomputes and the service's verify agrees,
- optionally, the bus holds each admitted identity exactly once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from service.composition import Services
from tests.support.client import recompute_chain


def admitted_offsets(history: list[dict[str, Any]]) -> Counter[str]:
    """How often each identity was admitted in the history (it must be once)."""
    times: Counter[str] = Counter()
    for item in history:
        fields = item["fields"]
        if item["type"] == "EventAdmitted" or (
            item["type"] == "PublishReconciled" and fields.get("outcome") == "published"
        ):
            times[fields["identity"]] += 1
    return times


def folded_counts(history: list[dict[str, Any]]) -> dict[str, int]:
    """The receipt's counts (contract s.5) folded from the history alone."""
    types = Counter(item["type"] for item in history)
    published = sum(
        1
        for item in history
        if item["type"] == "PublishReconciled" and item["fields"].get("outcome") == "published"
    )
    return {
        "admitted": types["EventAdmitted"] + published,
        "duplicates": types["DuplicateAbsorbed"],
        "quarantined": types["MismatchQuarantined"],
        "publish_unknown": types["PublishUnknown"],
        "reconciled": types["PublishReconciled"],
        "pending_unknown": types["PublishUnknown"] - types["PublishReconciled"],
    }


def window_problems(
    services: Services,
    window_id: str,
    acknowledged: Mapping[str, int | None] = {},
    bus_identities: Iterable[str] | None = None,
) -> list[str]:
    problems: list[str] = []
    history = list(services.ledger.iter_history(window_id))
    times = admitted_offsets(history)
    twice = sorted(i for i, n in times.items() if n > 1)
    if twice:
        problems.append(f"admitted more than once: {twice}")
    offsets = {
        item["fields"]["identity"]: item["fields"].get("offset")
        for item in history
        if item["type"] in ("EventAdmitted", "PublishReconciled")
    }
    for identity, offset in acknowledged.items():
        if identity not in offsets:
            problems.append(f"acknowledged but not in the history: {identity}")
        elif offset is not None and offsets[identity] != offset:
            problems.append(f"{identity} acknowledged at {offset}, recorded at {offsets[identity]}")
    try:
        head = recompute_chain(history)
    except AssertionError as exc:
        problems.append(f"the chain does not recompute: {exc}")
        head = None
    check = services.ledger.verify(window_id)
    if not check.ok or (head is not None and check.head != head):
        problems.append(f"verify disagrees: {check}")
    receipt = services.ledger.receipt(window_id)
    if receipt["events"] != len(history):
        problems.append(f"receipt events {receipt['events']} != history {len(history)}")
    if receipt["counts"] != folded_counts(history):
        problems.append(f"receipt counts {receipt['counts']} != {folded_counts(history)}")
    if bus_identities is not None:
        on_bus = Counter(list(bus_identities))  # a mapping would count by its values
        extra = sorted(i for i, n in on_bus.items() if n > 1 or i not in times)
        missing = sorted(i for i in times if i not in on_bus)
        if extra or missing:
            problems.append(f"bus and ledger differ: extra {extra}, missing {missing}")
    return problems
