"""Close reads its own write (issue 11; ADR 0024): when the read side has not applied the close
by the end of the bounded wait, the answer is the closed window's signed receipt with the
write side's gate, never the stale projected one (which said OPEN, closed_at null)."""

from __future__ import annotations

from typing import Any

from service.composition import Services
from tests.support.builders import batch, event

# The wait for the read side, short: the follower is stopped, it would never end otherwise.
LAG_WAIT_SECONDS = 0.2


def lagging(services: Services) -> Services:
    """The running service's way of waiting for the read side, with the follower stopped."""
    services.start_following()
    assert services.leadership is not None and services.leadership.leading
    services.runner.stop()
    services.read_wait_seconds = LAG_WAIT_SECONDS
    return services


def assert_is_the_closed_windows_receipt(
    services: Services, window_id: str, receipt: dict[str, Any]
) -> None:
    history = services.ledger.history(window_id, after=0, limit=1000)
    assert history[-1]["type"] == "WindowClosed"
    assert receipt["status"] == "CLOSED"
    assert receipt["closed_at"] is not None
    assert receipt["events"] == len(history)
    assert receipt["chain_head"] == history[-1]["digest"]
    signed = services.evidence.store.signed(window_id)
    assert signed is not None
    assert receipt["signature"] == signed["signature"]
    assert {k: v for k, v in receipt.items() if k != "gate"} == signed


def test_a_close_while_the_read_side_lags_answers_the_closed_windows_receipt(services):
    services.admit("w", batch("w", event("a"), event("b"), event("a", {"changed": 1})))
    services.catch_up()  # the read side has the window, open
    lagging(services)

    receipt = services.close_window("w")

    assert services.read.receipt("w")["status"] == "OPEN"  # the read side did lag
    assert_is_the_closed_windows_receipt(services, "w", receipt)
    assert receipt["counts"]["admitted"] == 2 and receipt["counts"]["quarantined"] == 1
    # The write side's own judgement: nothing pending and the chain verified at close.
    assert receipt["gate"] == "PASS"


def test_a_close_answers_the_receipt_when_the_read_side_has_never_seen_the_window(services):
    lagging(services)
    services.admit("w", batch("w", event("a")))

    receipt = services.close_window("w")  # not a 404 for a window the read side lacks

    assert services.read.receipt("w") is None
    assert_is_the_closed_windows_receipt(services, "w", receipt)


def test_once_the_read_side_catches_up_it_serves_what_the_lagging_close_answered(services):
    services.admit("w", batch("w", event("a"), event("b")))
    lagging(services)
    at_close = services.close_window("w")

    services.runner.run_until_caught_up()

    assert services.receipt("w") == at_close
    assert services.gate("w")["status"] == "PASS"
    # Closing again answers the same receipt, from the read side now.
    assert services.close_window("w") == at_close
