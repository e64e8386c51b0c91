"""The health report by part (`service.health`; ADR 0024): bounded, by kind, never a message."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from service.health import HealthProbe

WAIT = 0.2


def fine() -> None:
    return None


def refused(*_args: object) -> None:
    raise ConnectionRefusedError("connection to nats://10.1.2.3:4222 refused")


@pytest.fixture
def hanging() -> Iterator[tuple[Callable[[], None], list[int], threading.Event]]:
    """A check that does not answer until released (at teardown at the latest), and a count
    of its runs."""
    release = threading.Event()
    runs: list[int] = []

    def check() -> None:
        runs.append(1)
        release.wait(30)

    yield check, runs, release
    release.set()


def test_storage_and_bus_up_is_ok_with_each_part_by_kind() -> None:
    probe = HealthProbe("postgresql", fine, "nats", lambda timeout: None, wait_seconds=WAIT)
    assert probe.report() == {
        "status": "ok",
        "storage": {"ok": True, "kind": "postgresql"},
        "bus": {"ok": True, "kind": "nats"},
    }


def test_a_bus_down_with_the_storage_up_is_degraded_and_names_the_failure_by_kind_only() -> None:
    report = HealthProbe("sqlite", fine, "nats", refused, wait_seconds=WAIT).report()
    assert report == {
        "status": "degraded",
        "storage": {"ok": True, "kind": "sqlite"},
        "bus": {"ok": False, "kind": "nats", "detail": "ConnectionRefusedError"},
    }


def test_a_storage_down_is_unavailable_and_the_embedded_bus_with_it() -> None:
    report = HealthProbe("postgresql", refused, "embedded", None, wait_seconds=WAIT).report()
    assert report["status"] == "unavailable"
    assert report["storage"] == {
        "ok": False,
        "kind": "postgresql",
        "detail": "ConnectionRefusedError",
    }
    assert report["bus"]["ok"] is False and report["bus"]["kind"] == "embedded"
    assert "10.1.2.3" not in str(report)


def test_the_embedded_bus_is_up_exactly_when_the_storage_is() -> None:
    report = HealthProbe("sqlite", fine, "embedded", None, wait_seconds=WAIT).report()
    assert report["bus"] == {"ok": True, "kind": "embedded"}


def test_a_storage_check_that_hangs_is_unavailable_after_the_wait_and_is_not_run_again(
    hanging: tuple[Callable[[], None], list[int], threading.Event],
) -> None:
    check, runs, release = hanging
    probe = HealthProbe("postgresql", check, "embedded", None, wait_seconds=WAIT)

    started = time.monotonic()
    first = probe.report()
    assert time.monotonic() - started < WAIT + 1.0
    assert first["status"] == "unavailable"
    assert first["storage"]["detail"] == f"no answer within {WAIT:g} s"

    # Still hanging: the next report waits no longer, and starts no second run.
    started = time.monotonic()
    assert probe.report()["status"] == "unavailable"
    assert time.monotonic() - started < WAIT
    assert runs == [1]

    release.set()  # it answers at last: ok again
    deadline = time.monotonic() + 10
    while probe.report()["status"] != "ok":
        assert time.monotonic() < deadline, "the check never answered again"


def test_a_bus_check_that_hangs_leaves_the_report_bounded_and_degraded(
    hanging: tuple[Callable[[], None], list[int], threading.Event],
) -> None:
    check, _runs, _release = hanging
    probe = HealthProbe("sqlite", fine, "nats", lambda timeout: check(), wait_seconds=WAIT)
    started = time.monotonic()
    report = probe.report()
    assert time.monotonic() - started < WAIT + 1.0
    assert report["status"] == "degraded"
    assert report["bus"] == {"ok": False, "kind": "nats", "detail": f"no answer within {WAIT:g} s"}
