"""Small chunks of several windows written together (ADR 0038), on each backend: a group of
single events over several windows records each window's events and index rows as separate
statements would, so a process that never saw them judges repeats the same way."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from service.composition import Services, build_services
from service.settings import Settings
from tests.support.builders import batch, event
from tests.support.threads import concurrently

WINDOWS = ("held-1", "held-2", "held-3", "held-4")


@pytest.fixture
def services_on(migrated: Settings) -> Iterator[Callable[[], Services]]:
    """A new Services on the same database each call: nothing cached, every judgement of a
    repeat comes from the stored identity index."""
    with ExitStack() as made:

        def make() -> Services:
            settings = Settings(
                database_url=migrated.database_url,
                signing_key=migrated.signing_key,
                group_commit_ms=200.0,  # the concurrent requests surely meet in one group
            )
            built = build_services(settings)
            made.callback(built.close)
            return built

        yield make


def test_a_group_of_single_events_over_four_windows_is_judged_again_from_the_stored_index(
    services_on: Callable[[], Services],
) -> None:
    first = services_on()
    requests = [(w, batch(w, event(f"e{n}", {"n": n}))) for n in range(3) for w in WINDOWS]
    answers = concurrently([lambda r=r: first.admit(*r) for r in requests])
    assert not [a for a in answers if isinstance(a, Exception)], answers
    assert [r.verdict.value for a in answers for r in a] == ["ADMITTED"] * len(requests)
    assert first.ledger.committer.groups == 1  # one transaction: the chunks were held together

    recorder = first.ledger.recorder
    for window_id in WINDOWS:
        # Each window's index rows carry its own window, not a neighbour's.
        assert recorder.count_identities(window_id) == {"ADMITTED": 3}
        assert first.ledger.verify(window_id).ok
    # In the log, each window's events follow each other in version order.
    log = recorder.select_notifications(start=1, limit=100)
    assert len(log) == len(WINDOWS) * 4  # WindowOpened and 3 admissions each
    seen: dict[object, list[int]] = {}
    for n in log:
        seen.setdefault(n.originator_id, []).append(n.originator_version)
    assert sorted(seen.values()) == [[1, 2, 3, 4]] * len(WINDOWS)

    # A process with nothing cached: exact repeats are duplicates, changed ones quarantined.
    second = services_on()
    for window_id in WINDOWS:
        again = second.admit(
            window_id, batch(window_id, event("e0", {"n": 0}), event("e1", {"n": "changed"}))
        )
        assert [r.verdict.value for r in again] == ["DUPLICATE", "QUARANTINED"]
        assert second.ledger.recorder.count_identities(window_id) == {"ADMITTED": 3}
