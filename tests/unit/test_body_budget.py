"""The in-flight body budget (api/bounds.py, ADR 0029) on its own: who waits, who gets in, and
that nothing stays taken when a waiter gives up or is cancelled."""

from __future__ import annotations

import asyncio

import pytest

from api.bounds import BodyBudget


def test_a_body_that_does_not_fit_waits_and_gets_in_when_another_gives_back() -> None:
    async def scenario() -> tuple[bool, int]:
        budget = BodyBudget(10)
        assert await budget.take(8, 1.0)
        waiting = asyncio.ensure_future(budget.take(5, 1.0))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        budget.give(8)
        return await waiting, budget.used

    assert asyncio.run(scenario()) == (True, 5)


def test_a_body_that_waits_too_long_is_refused_and_takes_nothing() -> None:
    async def scenario() -> tuple[bool, int, int]:
        budget = BodyBudget(10)
        await budget.take(8, 1.0)
        refused = await budget.take(5, 0.05)
        budget.give(8)
        return refused, budget.used, len(budget._waiters)

    assert asyncio.run(scenario()) == (False, 0, 0)


def test_a_body_larger_than_the_budget_gets_in_alone_and_a_cancelled_waiter_takes_nothing() -> None:
    async def scenario() -> tuple[bool, int]:
        budget = BodyBudget(10)
        assert await budget.take(50, 0.05)  # alone: let in
        waiting = asyncio.ensure_future(budget.take(1, 5.0))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        budget.give(50)
        return await budget.take(10, 0.05), budget.used

    assert asyncio.run(scenario()) == (True, 10)
