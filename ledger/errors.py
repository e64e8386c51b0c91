"""One hierarchy of domain errors, each with a code and a human detail, and nothing of HTTP:
the API maps codes to statuses in one table (api/errors.py), the CLI to exit codes."""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    code = "ledger_error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def as_json(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail, **self.extra}


class InvalidAdmission(LedgerError):
    """Bad input: nothing of the request is recorded."""

    code = "invalid_admission"


class PayloadTooLarge(InvalidAdmission):
    code = "payload_too_large"


class NestingTooDeep(InvalidAdmission):
    """JSON nested deeper than a payload may be (`ledger.jcs.MAX_DEPTH`, ADR 0023)."""

    code = "nesting_too_deep"


class WindowNotFound(LedgerError):
    code = "window_not_found"


class WindowClosed(LedgerError):
    code = "window_closed"


class PublishUnknownPending(LedgerError):
    """Close refused: some identities have an unknown publish outcome (fail-closed)."""

    code = "publish_unknown_pending"

    def __init__(self, pending: list[str]) -> None:
        super().__init__(
            f"{len(pending)} identities have an unknown publish outcome; reconcile them first",
            pending=pending,
        )


class BusLedgerMismatch(LedgerError):
    """Close refused: the bus and the ledger disagree on how many messages the window has."""

    code = "bus_ledger_mismatch"

    def __init__(self, window_id: str, bus: int, ledger: int) -> None:
        super().__init__(
            f"the bus holds {bus} messages for window {window_id!r} but the ledger accounts "
            f"for {ledger} (admitted, plus extra messages an operator accepted); run reconcile "
            "(it adopts messages the ledger lacks and names extra ones) before closing; an "
            "extra message of an admitted identity with its payload can be accepted "
            "(ledger reconcile --accept-bus-duplicates)",
            bus=bus,
            ledger=ledger,
        )


class PublishRefused(LedgerError):
    """The bus definitely did not take the batch: nothing was recorded, retrying is safe."""

    code = "publish_refused"


class BusUnavailable(LedgerError):
    """The bus could not be asked (timeout, connection lost): nothing was recorded, retry."""

    code = "bus_unavailable"


class GateNotPassed(LedgerError):
    """No PASS, no read: the window's admitted events are served only when its gate is PASS."""

    code = "gate_not_passed"


class ChainBroken(LedgerError):
    """The window's stored history no longer verifies (a hole, an edit, a missing tail): it is
    reported, never built on and never guessed around."""

    code = "chain_broken"


class StorageUnavailable(LedgerError):
    """The database could not be reached: nothing was recorded, retrying is safe."""

    code = "storage_unavailable"


class StorageFull(StorageUnavailable):
    """The database refused the write for want of space: nothing was recorded, retry once
    space is freed."""

    code = "storage_full"


class Contention(LedgerError):
    """The window kept changing under us; nothing was recorded, retrying is safe."""

    code = "contention"
