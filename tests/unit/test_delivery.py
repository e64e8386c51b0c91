"""The group commit's answers handed to the event loop (ADR 0046): answers that arrive together
wake the loop once; each request's future gets exactly its own outcome, a failure or a
cancellation included; a request that stopped waiting leaves the writer's future alone."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any

import pytest

from api.delivery import Deliveries


def run_counting_wakes(body: Any) -> tuple[Any, int, list[dict[str, Any]]]:
    """Run `body(deliveries)` on a fresh event loop; what it returned, how many times the loop
    was woken from outside (`call_soon_threadsafe`), and the errors its callbacks raised."""
    wakes = 0
    errors: list[dict[str, Any]] = []

    async def main() -> Any:
        nonlocal wakes
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: errors.append(context))
        real = loop.call_soon_threadsafe

        def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal wakes
            wakes += 1
            return real(*args, **kwargs)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        # Bounded: an answer never handed over would otherwise hang the test, not fail it.
        outcome = await asyncio.wait_for(body(Deliveries(loop)), 10)
        await asyncio.sleep(0.01)  # let any late drain run (and report)
        return outcome

    return asyncio.run(main()), wakes, errors


def test_answers_that_arrive_together_wake_the_loop_once_and_each_gets_its_own() -> None:
    async def body(deliveries: Deliveries) -> list[int]:
        pending: list[Future[int]] = [Future() for _ in range(32)]
        answers = [deliveries.watch(p) for p in pending]
        for n, p in enumerate(pending):  # a group answered at once, before the loop runs again
            p.set_result(n)
        return list(await asyncio.gather(*answers))

    results, wakes, errors = run_counting_wakes(body)
    assert results == list(range(32))
    assert wakes == 1
    assert errors == []


def test_answers_set_by_another_thread_all_arrive_in_order_of_their_requests() -> None:
    async def body(deliveries: Deliveries) -> list[int]:
        pending: list[Future[int]] = [Future() for _ in range(500)]
        answers = [deliveries.watch(p) for p in pending]

        def writer() -> None:
            for n, p in enumerate(pending):
                p.set_result(n)

        thread = threading.Thread(target=writer)
        thread.start()
        results = list(await asyncio.gather(*answers))
        thread.join()
        return results

    results, wakes, errors = run_counting_wakes(body)
    assert results == list(range(500))
    assert 1 <= wakes <= 500
    assert errors == []


def test_a_failure_and_a_cancellation_reach_their_own_requests_only() -> None:
    async def body(deliveries: Deliveries) -> list[Any]:
        failed, cancelled, fine = Future[int](), Future[int](), Future[int]()
        answers = [deliveries.watch(f) for f in (failed, cancelled, fine)]
        failed.set_exception(RuntimeError("storage is down"))
        cancelled.cancel()
        fine.set_result(7)
        return list(await asyncio.gather(*answers, return_exceptions=True))

    (failure, cancellation, result), _, errors = run_counting_wakes(body)
    assert isinstance(failure, RuntimeError) and str(failure) == "storage is down"
    assert isinstance(cancellation, asyncio.CancelledError)
    assert result == 7
    assert errors == []


def test_a_request_that_stopped_waiting_leaves_the_writers_future_alone() -> None:
    async def body(deliveries: Deliveries) -> tuple[bool, int]:
        pending: Future[int] = Future()
        answer = deliveries.watch(pending)
        answer.cancel()  # the request's task was cancelled, or its check timer fired
        await asyncio.sleep(0)
        still_open = not pending.cancelled()
        pending.set_result(3)  # the writer answers later: nothing to hand over, no error
        again = await deliveries.watch(pending)  # already done: answered at once
        return still_open, again

    (still_open, again), _, errors = run_counting_wakes(body)
    assert still_open
    assert again == 3
    assert errors == []


@pytest.mark.parametrize("answers", [1, 3])
def test_a_future_answered_before_it_is_watched_is_handed_over_at_once(answers: int) -> None:
    async def body(deliveries: Deliveries) -> list[str]:
        done: list[Future[str]] = [Future() for _ in range(answers)]
        for n, f in enumerate(done):
            f.set_result(f"r{n}")
        return list(await asyncio.gather(*(deliveries.watch(f) for f in done)))

    results, wakes, errors = run_counting_wakes(body)
    assert results == [f"r{n}" for n in range(answers)]
    assert wakes == 1
    assert errors == []
