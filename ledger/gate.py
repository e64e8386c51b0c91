"""The gate rule (contract s.4): one function and its reason texts, for both sides.

The write side judges a window from the aggregate and a fresh chain check; the read side from
its receipt row and the closing summary. Both give the same statuses with the same words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

OPEN = "OPEN"
BLOCKED = "BLOCKED"
PASS = "PASS"
FAIL = "FAIL"
STATUSES = (OPEN, BLOCKED, PASS, FAIL)


def judge(
    *, closed: bool, pending_unknown: int, problems: Sequence[str] = ()
) -> tuple[str, list[str]]:
    """The gate's status and reasons. `problems`: the checks of a closed window that failed."""
    if not closed:
        if pending_unknown:
            return BLOCKED, [f"{pending_unknown} identities have an unknown publish outcome"]
        return OPEN, ["window is not closed"]
    return (FAIL, list(problems)) if problems else (PASS, [])


def chain_broken(first_bad_version: int | None) -> str:
    return f"hash chain broken at version {first_bad_version}"


def disagreements(read_side: Mapping[str, Any], summary: Mapping[str, Any]) -> list[str]:
    """What keeps a closed window from PASS on the read side: where the read side differs from
    the closing summary, and a chain that did not verify at close.

    `read_side` holds `counts`, `bus_offsets`, `source_offsets` and `events` as the receipt
    does."""
    problems = []
    if read_side["counts"] != summary["counts"]:
        problems.append(
            f"read-side counts {read_side['counts']} differ from the closing summary "
            f"{summary['counts']}"
        )
    if read_side["bus_offsets"] != summary["bus_offsets"]:
        problems.append(
            f"read-side bus offsets {read_side['bus_offsets']} differ from the closing summary "
            f"{summary['bus_offsets']}"
        )
    if read_side["source_offsets"] != summary["source_offsets"]:
        problems.append("read-side source offsets differ from the closing summary")
    if read_side["events"] != summary["events"]:
        problems.append(
            f"read side applied {read_side['events']} events, "
            f"the closing summary says {summary['events']}"
        )
    if not summary.get("chain_verified", False):
        problems.append(
            "hash chain did not verify at close "
            f"(first bad version {summary.get('first_bad_version')})"
        )
    return problems
