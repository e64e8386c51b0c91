"""The fault suite's checker (tests/support/invariants.py) catches a broken build: a ledger
that admits a duplicate twice, an acknowledged admission that is missing, a bus that holds an
identity twice. Without this, a fault test passing could mean the checker sees nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ledger.application.judging import record_admitted
from service.composition import Services, build_services
from service.settings import Settings
from tests.support.builders import batch, event
from tests.support.invariants import window_problems


@pytest.fixture
def checked(migrated: Settings) -> Iterator[Services]:
    built = build_services(migrated)
    yield built
    built.close()


def test_a_correct_run_has_no_problems(checked: Services) -> None:
    window = "w.correct"
    first = checked.ledger.admit(window, batch(window, event("e1"), event("e2")))
    again = checked.ledger.admit(window, batch(window, event("e1"), event("e3", {"x": 1})))
    acknowledged = {r.identity: r.offset for r in [*first, *again] if r.offset is not None}
    assert window_problems(checked, window, acknowledged, bus_identities=acknowledged) == []


def test_the_checker_catches_a_ledger_that_admits_a_duplicate_twice(checked: Services) -> None:
    window = "w.broken"
    [first] = checked.ledger.admit(window, batch(window, event("e1")))
    assert window_problems(checked, window, {first.identity: first.offset}) == []

    # The broken build: the repeat judged without the identity index, recorded as new (through
    # the ledger's own save, so the chain stays intact and only the checker can tell).
    with checked.ledger.uow.lock(window):
        broken = checked.ledger.uow.window(window)
        [repeat] = batch(window, event("e1"))
        record_admitted(broken, repeat, 2, None)
        checked.ledger.save(broken)

    problems = window_problems(checked, window, {first.identity: first.offset})
    assert any("admitted more than once" in p for p in problems), problems


def test_the_checker_catches_a_lost_acknowledgement_and_a_doubled_bus_message(
    checked: Services,
) -> None:
    window = "w.lost"
    [first] = checked.ledger.admit(window, batch(window, event("e1")))
    [never] = batch(window, event("never-recorded"))
    problems = window_problems(
        checked,
        window,
        {first.identity: first.offset, never.identity: 7},
        bus_identities=[first.identity, first.identity],
    )
    assert any("acknowledged but not in the history" in p for p in problems), problems
    assert any("bus and ledger differ" in p for p in problems), problems
