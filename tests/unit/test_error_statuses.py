"""Every domain error has its HTTP status in one table (api/errors.py), the contract's.

The core's errors carry a code and a detail only (`ledger.errors`); `api.errors.status_of` gives
the status of an error by its class, the most specific entry of the table winning, and the
handler answers `{"error": code, "detail": sentence, **extra}` with it (contract s.4, s.6).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar import get
from litestar.testing import create_test_client

from api.errors import EXCEPTION_HANDLERS, STATUS_OF, status_of
from ledger import errors

# The contract's statuses, by error code (s.6 for bad input and reads, s.4 for close and the
# gate, s.3 and s.6 for "a 5xx recorded nothing, retry").
CONTRACT_STATUS = {
    "invalid_admission": 400,
    "payload_too_large": 413,
    "nesting_too_deep": 400,
    "window_not_found": 404,
    "window_closed": 409,
    "publish_unknown_pending": 409,
    "bus_ledger_mismatch": 409,
    "gate_not_passed": 409,
    "chain_broken": 409,
    "publish_refused": 503,
    "bus_unavailable": 503,
    "contention": 503,
    "storage_unavailable": 503,
    "storage_full": 503,  # issue 11: the database has no space (ADR 0027)
}


def _subclasses(cls: type[errors.LedgerError]) -> Iterator[type[errors.LedgerError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


# Every error the ledger defines (not the abstract root, not the ones tests define).
LEDGER_ERRORS = sorted(
    {cls for cls in _subclasses(errors.LedgerError) if cls.__module__ == errors.__name__},
    key=lambda cls: cls.code,
)


def example(cls: type[errors.LedgerError]) -> errors.LedgerError:
    """One instance of each error, made the way the ledger makes it."""
    if cls is errors.PublishUnknownPending:
        return errors.PublishUnknownPending(["a" * 64, "b" * 64])
    if cls is errors.BusLedgerMismatch:
        return errors.BusLedgerMismatch("w1", bus=3, ledger=2)
    return cls(f"something about {cls.__name__}")


def test_the_ledger_defines_every_error_code_of_the_contract_and_no_other() -> None:
    assert sorted(cls.code for cls in LEDGER_ERRORS) == sorted(CONTRACT_STATUS)


@pytest.mark.parametrize("cls", LEDGER_ERRORS, ids=lambda cls: cls.__name__)
def test_every_ledger_error_has_its_own_entry_in_the_status_table(
    cls: type[errors.LedgerError],
) -> None:
    assert cls in STATUS_OF
    assert status_of(example(cls)) == STATUS_OF[cls]


@pytest.mark.parametrize("code", sorted(CONTRACT_STATUS))
def test_each_error_code_answers_the_status_the_contract_gives_it(code: str) -> None:
    [cls] = [cls for cls in LEDGER_ERRORS if cls.code == code]
    assert status_of(example(cls)) == CONTRACT_STATUS[code]


def test_a_payload_too_large_is_413_although_it_is_an_invalid_admission() -> None:
    too_large = errors.PayloadTooLarge("events[0].payload is 2000000 bytes")
    assert isinstance(too_large, errors.InvalidAdmission)
    assert status_of(too_large) == 413


@pytest.mark.parametrize(
    ("parent", "status"),
    [
        (errors.WindowClosed, 409),
        (errors.InvalidAdmission, 400),
        (errors.PayloadTooLarge, 413),
        (errors.StorageUnavailable, 503),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else str(value),
)
def test_an_error_defined_later_answers_its_parents_status(
    parent: type[errors.LedgerError], status: int
) -> None:
    class Narrower(parent):  # type: ignore[misc, valid-type]
        code = "narrower"

    assert status_of(Narrower("a narrower refusal")) == status


def test_an_error_with_no_entry_above_it_is_a_500() -> None:
    class Unmapped(errors.LedgerError):
        code = "unmapped"

    assert status_of(Unmapped("nobody mapped this")) == 500


def test_an_errors_json_is_its_code_its_detail_and_its_extra_fields() -> None:
    assert errors.WindowNotFound("no window 'w9'").as_json() == {
        "error": "window_not_found",
        "detail": "no window 'w9'",
    }
    assert errors.GateNotPassed("the gate is OPEN", gate={"status": "OPEN"}).as_json() == {
        "error": "gate_not_passed",
        "detail": "the gate is OPEN",
        "gate": {"status": "OPEN"},
    }
    pending = errors.PublishUnknownPending(["a" * 64, "b" * 64]).as_json()
    assert pending["error"] == "publish_unknown_pending"
    assert pending["pending"] == ["a" * 64, "b" * 64]
    assert "2 identities" in pending["detail"]
    mismatch = errors.BusLedgerMismatch("w1", bus=3, ledger=2).as_json()
    assert (mismatch["error"], mismatch["bus"], mismatch["ledger"]) == ("bus_ledger_mismatch", 3, 2)
    assert "reconcile" in mismatch["detail"]


@pytest.mark.parametrize("cls", LEDGER_ERRORS, ids=lambda cls: cls.__name__)
def test_the_api_answers_a_ledger_error_with_its_status_and_its_json(
    cls: type[errors.LedgerError],
) -> None:
    error = example(cls)

    @get("/fails", sync_to_thread=False)
    def fails() -> dict[str, Any]:
        raise error

    with create_test_client([fails], exception_handlers=EXCEPTION_HANDLERS, debug=False) as client:
        response = client.get("/fails")

    assert response.status_code == CONTRACT_STATUS[cls.code]
    assert response.json() == {"error": cls.code, "detail": error.detail, **error.extra}
