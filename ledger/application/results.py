"""What the ledger's commands and checks answer: plain values, ready for JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from ledger.verdicts import Verdict


class AdmissionResult(NamedTuple):
    event_type: str
    event_id: str
    identity: str
    payload_hash: str
    verdict: Verdict
    offset: int | None

    def as_json(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "event_id": self.event_id,
            "identity": self.identity,
            "payload_hash": self.payload_hash,
            "verdict": self.verdict.value,
            "offset": self.offset,
        }


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    events: int
    head: str
    first_bad_version: int | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)
