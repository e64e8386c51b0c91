"""Group commit (ADR 0019), on each backend: concurrent admission requests, to one window and
to several, are written together and still get exactly what a serial run gives; a refusal
fails only its own request; a storage failure fails the whole group and records nothing."""

from __future__ import annotations

import random
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from typing import Any

import pytest

from ledger.admissions import Admission
from ledger.application import STREAM_CHUNK, AdmissionResult, Ledger, unit_of_work
from ledger.domain.window import Window
from ledger.errors import WindowClosed
from ledger.infrastructure.embedded import EmbeddedPublisher
from ledger.ports import LockedRead, Message, PublishOutcome
from service.composition import Services, build_ledger, build_services
from service.settings import Settings
from tests.support.builders import batch, event
from tests.support.builders import identity as identity_of
from tests.support.bus import ScriptedBus
from tests.support.storage import fail_inserts_after, heal_inserts
from tests.support.threads import concurrently

WINDOWS = ("g-1", "g-2", "g-3")


@pytest.fixture
def grouping(migrated: Settings) -> Iterator[Callable[..., Services]]:
    """Services whose group commit waits `wait_ms` (long, so concurrent requests surely meet)."""
    with ExitStack() as made:

        def make(wait_ms: float = 30.0, events: int = 1000) -> Services:
            settings = Settings(
                database_url=migrated.database_url,
                signing_key=migrated.signing_key,
                group_commit_ms=wait_ms,
                group_commit_events=events,
            )
            built = build_services(settings)
            made.callback(built.close)
            return built

        yield make


def random_requests(seed: int, n: int) -> list[tuple[str, list[Admission]]]:
    """Requests of 1-3 events over a few identities per window, payloads A or B: repeats,
    changed payloads and new identities, overlapping across requests."""
    rng = random.Random(seed)
    requests = []
    for _ in range(n):
        window_id = rng.choice(WINDOWS)
        items = [
            event(f"e{rng.randrange(12)}", {"v": rng.choice("AB")})
            for _ in range(rng.randint(1, 3))
        ]
        requests.append((window_id, batch(window_id, *items)))
    return requests


def test_concurrent_requests_get_exactly_the_verdicts_a_serial_run_in_commit_order_gives(
    grouping: Callable[..., Services],
) -> None:
    services = grouping()
    requests = random_requests(seed=7, n=48)
    answers = concurrently([lambda r=r: services.admit(*r) for r in requests])
    assert not [a for a in answers if isinstance(a, Exception)], answers
    assert services.ledger.committer.groups < len(requests)  # they were written together

    # Each request answered for its own events, in its own order.
    for (_, admissions), results in zip(requests, answers, strict=True):
        assert [r.event_id for r in results] == [a.event_id for a in admissions]
        assert [r.payload_hash for r in results] == [a.payload_hash for a in admissions]

    # Replay the history: it fixes the serial order the ledger chose; each identity's first
    # arrival there is its admission, every later one a duplicate (same hash) or quarantined.
    by_identity: dict[str, list[AdmissionResult]] = defaultdict(list)
    for results in answers:
        for r in results:
            by_identity[r.identity].append(r)
    for window_id in WINDOWS:
        history = services.ledger.history(window_id)
        first: dict[str, tuple[int, str, int]] = {}  # identity -> version, hash, offset
        for item in history:
            f = item["fields"]
            if item["type"] == "EventAdmitted":
                assert f["identity"] not in first, "admitted twice"
                first[f["identity"]] = (item["version"], f["payload_hash"], f["offset"])
            elif item["type"] in ("DuplicateAbsorbed", "MismatchQuarantined"):
                assert first[f["identity"]][0] < item["version"], "a repeat before its original"
        for identity, (_, truth, offset) in first.items():
            verdicts = [r.verdict.value for r in by_identity[identity]]
            assert verdicts.count("ADMITTED") == 1
            for r in by_identity[identity]:
                if r.verdict.value == "ADMITTED":
                    assert (r.payload_hash, r.offset) == (truth, offset)
                elif r.payload_hash == truth:
                    assert (r.verdict.value, r.offset) == ("DUPLICATE", offset)
                else:
                    assert r.verdict.value == "QUARANTINED"
        assert services.ledger.verify(window_id).ok
    assert sum(len(v) for v in by_identity.values()) == sum(len(a) for _, a in requests)


def test_a_refused_request_fails_alone_and_the_rest_of_its_group_is_recorded(
    grouping: Callable[..., Services],
) -> None:
    services = grouping(wait_ms=200.0)
    services.ledger.admit("closed", batch("closed", event("x")))
    services.ledger.close_window("closed")
    calls = [
        lambda: services.admit("closed", batch("closed", event("new"))),  # refused: closed
        lambda: services.admit("open-1", batch("open-1", event("a"), event("b"))),
        lambda: services.admit("open-2", batch("open-2", event("a"))),
        lambda: services.admit("closed", batch("closed", event("x"))),  # a duplicate: answered
    ]
    refused, first, second, duplicate = concurrently(calls)
    assert isinstance(refused, WindowClosed)
    assert [r.verdict.value for r in first] == ["ADMITTED", "ADMITTED"]
    assert [r.verdict.value for r in second] == ["ADMITTED"]
    assert [r.verdict.value for r in duplicate] == ["DUPLICATE"]
    assert services.ledger.committer.groups == 1
    assert [h["type"] for h in services.ledger.history("open-1")][1:] == ["EventAdmitted"] * 2


def test_each_committed_group_is_told_once_and_a_failing_wake_fails_no_request(
    grouping: Callable[..., Services], caplog: pytest.LogCaptureFixture
) -> None:
    """The writer wakes the read side once per committed group (ADR 0044); the wake is an
    optimisation: when it fails, the group has still committed and its requests are answered,
    and the writer goes on."""
    services = grouping(wait_ms=200.0)
    told: list[int] = []

    def failing_wake() -> None:
        told.append(services.ledger.committer.groups)
        raise OSError("the follower's pipe is gone")

    services.ledger.committer.on_commit = failing_wake
    calls = [lambda n=n: services.admit("woken", batch("woken", event(f"e{n}"))) for n in range(4)]
    answers = concurrently(calls)
    assert [[r.verdict.value for r in a] for a in answers] == [["ADMITTED"]] * 4
    assert told == [1]  # one group of four requests: one wake
    later = services.admit("woken", batch("woken", event("later")))
    assert [r.verdict.value for r in later] == ["ADMITTED"]
    assert told == [1, 2]
    assert "waking the read side failed" in caplog.text


def test_a_group_of_many_requests_to_one_window_keeps_one_copy_of_it_not_one_a_request(
    grouping: Callable[..., Services], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a group keeps to put back after a lost race is a copy of each window's state,
    pending identities included (all of a window's admissions while the bus is down): one copy
    a window, however many of the group's requests name it (one a request made the writer's
    cost per request grow with the window's pending set)."""
    services = grouping(wait_ms=200.0)
    services.admit("kept", batch("kept", event("first")))  # cached from here on
    copies: list[str] = []
    real_copy = unit_of_work.copy_window

    def counted_copy(window: Window) -> Window:
        copies.append(window.window_id)
        return real_copy(window)

    monkeypatch.setattr(unit_of_work, "copy_window", counted_copy)
    groups = services.ledger.committer.groups
    calls = [lambda n=n: services.admit("kept", batch("kept", event(f"e{n}"))) for n in range(8)]
    answers = concurrently(calls)
    assert [[r.verdict.value for r in a] for a in answers] == [["ADMITTED"]] * 8
    assert services.ledger.committer.groups == groups + 1  # the eight went in one group
    assert copies == ["kept"]


def test_a_group_holds_at_most_its_events_and_what_is_queued_beyond_goes_in_the_next(
    grouping: Callable[..., Services],
) -> None:
    services = grouping(wait_ms=200.0, events=3)
    services.admit("bounded", batch("bounded", event("first")))
    groups, requests = services.ledger.committer.groups, services.ledger.committer.requests
    calls = [
        lambda n=n: services.admit("bounded", batch("bounded", event(f"e{n}"))) for n in range(8)
    ]
    answers = concurrently(calls)
    assert [[r.verdict.value for r in a] for a in answers] == [["ADMITTED"]] * 8
    assert services.ledger.committer.requests == requests + 8
    assert services.ledger.committer.groups - groups >= 3  # at most three events a group


class _TrackedBatch(list[Admission]):
    """A batch whose release can be watched (a list subclass takes a weak reference)."""


def test_a_written_group_is_let_go_once_answered_not_kept_until_the_next_request(
    grouping: Callable[..., Services],
) -> None:
    """A 15 MiB batch's admissions are several times its body: kept by the writer thread until
    the next request came, they outlived their answer and the in-flight body budget that
    accounted for them (ADR 0034)."""
    services = grouping(wait_ms=1.0)
    admissions = _TrackedBatch(batch("let-go", event("a"), event("b")))
    watched = weakref.ref(admissions)
    pending = services.submit_admission("let-go", admissions)
    assert pending is not None
    assert [r.verdict.value for r in pending.result(timeout=60)] == ["ADMITTED", "ADMITTED"]
    del admissions, pending
    deadline = time.monotonic() + 30.0  # the writer thread lets go just after answering
    while watched() is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert watched() is None, "the writer thread still holds the answered group"


def test_a_storage_failure_fails_every_request_of_the_group_and_records_nothing(
    grouping: Callable[..., Services], database_url: str
) -> None:
    services = grouping(wait_ms=200.0)
    services.ledger.admit("w", batch("w", event("seed")))  # versions 1-2
    fail_inserts_after(database_url, 2)
    calls = [
        lambda i=i, w=w: services.admit(w, batch(w, event(f"e{i}")))
        for i, w in enumerate(["w", "w", "other", "third"])
    ]
    answers = concurrently(calls)
    assert all(isinstance(a, Exception) for a in answers), answers
    assert [h["version"] for h in services.ledger.history("w")] == [1, 2]
    assert not services.ledger.has_window("other") and not services.ledger.has_window("third")

    heal_inserts(database_url)
    again = concurrently(calls)  # the retry the 5xx invited: recorded once
    assert [[r.verdict.value for r in a] for a in again] == [["ADMITTED"]] * 4
    assert len(services.ledger.history("w")) == 4
    assert services.ledger.verify("w").ok


class _Rival:
    """While the ledger publishes (after it read the window, before it writes), another
    process writes into the same window, once: the ledger's streamed write then loses the
    version race in its first chunk, with more chunks already on their way."""

    rival: Callable[[], Any] | None = None

    def publish(
        self, window_id: str, messages: Sequence[Message], next_sequence: int
    ) -> list[PublishOutcome]:
        rival, self.rival = self.rival, None
        if rival is not None:
            rival()
        published: list[PublishOutcome] = super().publish(  # type: ignore[misc]
            window_id, messages, next_sequence
        )
        return published


class _RacingBus(_Rival, ScriptedBus):
    """A scripted bus (its answers kept, so a re-run under the lock uses them)."""


class _RacingEmbedded(_Rival, EmbeddedPublisher):
    """The embedded bus (offsets from the window's own count: asked again under the lock)."""


def racing_ledgers(made: ExitStack, settings: Settings) -> tuple[Ledger, Ledger, _RacingBus]:
    """A ledger whose bus lets a rival ledger (default settings) write the window just before
    its transaction."""
    bus = _RacingBus()
    ledger = build_ledger(settings, bus)
    made.callback(ledger.close)
    rival = build_ledger(
        Settings(database_url=settings.database_url, signing_key=settings.signing_key),
        ScriptedBus(),
    )
    made.callback(rival.close)
    return ledger, rival, bus


@pytest.fixture
def racing(migrated: Settings) -> Iterator[tuple[Ledger, Ledger, _RacingBus]]:
    with ExitStack() as made:
        yield racing_ledgers(made, migrated)


def test_a_race_lost_in_the_middle_of_a_streamed_group_re_runs_it_and_records_each_once(
    racing: tuple[Ledger, Ledger, _RacingBus],
) -> None:
    ledger, rival, bus = racing
    ledger.admit("w", batch("w", event("seed")))
    many = [event(f"e{i}") for i in range(3 * STREAM_CHUNK)]  # several chunks
    bus.rival = lambda: rival.admit("w", batch("w", event("rival")))
    results = ledger.admit_with_others("w", batch("w", *many))
    assert [r.verdict.value for r in results] == ["ADMITTED"] * len(many)
    assert ledger.uow.reruns == 1
    history = ledger.history("w")
    admitted = [h["fields"]["event_id"] for h in history if h["type"] == "EventAdmitted"]
    assert admitted == ["seed", "rival", *(e["event_id"] for e in many)]
    assert ledger.verify("w").ok


def test_a_lost_race_puts_the_window_back_and_the_re_run_reads_only_the_rivals_events(
    racing: tuple[Ledger, Ledger, _RacingBus],
) -> None:
    """Adding a process never costs a reload: after a lost race the window goes back to its
    state before the attempt and catches up by the events it lacks (ADR 0020), instead of being
    loaded again from its snapshot and tail."""
    ledger, rival, bus = racing
    ledger.admit("w", batch("w", *(event(f"seed{i}") for i in range(40))))
    loads_before = ledger.loader.events_read
    bus.rival = lambda: rival.admit("w", batch("w", event("rival")))
    results = ledger.admit_with_others("w", batch("w", event("mine"), event("seed3")))
    assert [r.verdict.value for r in results] == ["ADMITTED", "DUPLICATE"]
    assert ledger.uow.reruns == 1
    assert ledger.loader.events_read == loads_before  # nothing loaded again
    cached = ledger.uow.cached("w")
    assert cached is not None
    assert (cached.version, cached.admitted) == (ledger.get_window("w").version, 42)
    assert cached.pending_events == []
    history = ledger.history("w")
    admitted = [h["fields"]["event_id"] for h in history if h["type"] == "EventAdmitted"]
    assert admitted[-2:] == ["rival", "mine"]
    assert ledger.verify("w").ok


def test_a_groups_stale_windows_catch_up_together_and_judge_what_another_process_wrote(
    migrated: Settings,
) -> None:
    """The windows of one group are brought up to date in one read (ADR 0020): another
    process's admissions into two cached windows are seen, without a re-run or a reload."""
    slow = Settings(
        database_url=migrated.database_url, signing_key=migrated.signing_key, group_commit_ms=300
    )
    with ExitStack() as made:
        ledger = build_ledger(slow, ScriptedBus())
        made.callback(ledger.close)
        rival = build_ledger(migrated, ScriptedBus())
        made.callback(rival.close)
        for window_id in ("g-1", "g-2"):
            ledger.admit(window_id, batch(window_id, event("mine")))
            rival.admit(window_id, batch(window_id, event("theirs"), event("mine")))
        loads_before = ledger.loader.events_read
        first = ledger.submit_with_others("g-1", batch("g-1", event("theirs"), event("new")))
        second = ledger.submit_with_others("g-2", batch("g-2", event("theirs", {"changed": True})))
        assert [r.verdict.value for r in first.result(timeout=60)] == ["DUPLICATE", "ADMITTED"]
        assert [r.verdict.value for r in second.result(timeout=60)] == ["QUARANTINED"]
        assert ledger.committer.groups == 1  # both requests in one transaction
        assert ledger.uow.reruns == 0
        assert ledger.loader.events_read == loads_before
        for window_id in ("g-1", "g-2"):
            assert ledger.verify(window_id).ok


def test_a_window_another_process_writes_during_every_publish_is_admitted_on_the_first_re_run(
    racing: tuple[Ledger, Ledger, _RacingBus],
) -> None:
    """After a lost race the re-run is judged under the table lock (ADR 0022): a rival that
    writes the window while every attempt asks the bus cannot make it lose again (before, it
    lost every attempt until `Contention`)."""
    ledger, rival, bus = racing
    ledger.admit("w", batch("w", event("seed")))
    writes = iter(range(100))

    def rival_writes_again() -> None:
        rival.admit("w", batch("w", event(f"rival{next(writes)}")))
        bus.rival = rival_writes_again

    bus.rival = rival_writes_again
    results = ledger.admit_with_others("w", batch("w", event("mine"), event("rival0")))
    bus.rival = None
    assert [r.verdict.value for r in results] == ["ADMITTED", "DUPLICATE"]
    assert ledger.uow.reruns == 1
    history = ledger.history("w")
    admitted = [h["fields"]["event_id"] for h in history if h["type"] == "EventAdmitted"]
    assert admitted == ["seed", "rival0", "rival1", "mine"]
    assert ledger.verify("w").ok
    assert rival.verify("w").ok


def test_after_a_lost_race_the_next_groups_are_judged_under_the_lock_at_once_and_lose_none(
    racing: tuple[Ledger, Ledger, _RacingBus],
) -> None:
    """Another process writing the same windows makes nearly every optimistic attempt lose
    (3 servers, requests spread): for a while after a lost race the writer takes the table lock
    before judging, instead of judging, losing and judging again (ADR 0033)."""
    ledger, rival, bus = racing
    ledger.committer.contended_seconds = 600.0  # "a while", however slow this machine is
    ledger.admit("w", batch("w", event("seed")))
    bus.rival = lambda: rival.admit("w", batch("w", event("rival0")))
    assert [r.verdict.value for r in ledger.admit_with_others("w", batch("w", event("a")))] == [
        "ADMITTED"
    ]
    assert (ledger.uow.reruns, ledger.committer.judged_under_lock) == (1, 0)
    for n in (1, 2, 3):
        # The rival writes while each request asks the bus, as before: it can no longer win.
        bus.rival = lambda n=n: rival.admit("w", batch("w", event(f"rival{n}")))
        results = ledger.admit_with_others("w", batch("w", event(f"b{n}"), event(f"rival{n}")))
        assert [r.verdict.value for r in results] == ["ADMITTED", "DUPLICATE"]
    assert ledger.uow.reruns == 1  # none lost since the first
    assert ledger.committer.judged_under_lock == 3
    history = ledger.history("w")
    admitted = [h["fields"]["event_id"] for h in history if h["type"] == "EventAdmitted"]
    assert admitted == ["seed", "rival0", "a", "rival1", "b1", "rival2", "b2", "rival3", "b3"]
    assert ledger.verify("w").ok


def test_once_the_contention_is_over_groups_are_judged_before_the_lock_again(
    racing: tuple[Ledger, Ledger, _RacingBus],
) -> None:
    ledger, rival, bus = racing
    ledger.committer.contended_seconds = 0.0  # over at once
    ledger.admit("w", batch("w", event("seed")))
    for n in (0, 1):
        bus.rival = lambda n=n: rival.admit("w", batch("w", event(f"rival{n}")))
        results = ledger.admit_with_others("w", batch("w", event(f"a{n}")))
        assert [r.verdict.value for r in results] == ["ADMITTED"]
    # Each optimistic attempt lost to the rival and was re-run: none was locked from the start.
    assert (ledger.uow.reruns, ledger.committer.judged_under_lock) == (2, 0)
    assert ledger.verify("w").ok


def test_a_group_judged_under_the_lock_reads_its_windows_in_the_round_trip_taking_the_lock(
    migrated: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the lock every window's catch-up and lookup are made by the recorder, in the
    round trip that takes the lock (ADR 0033): the lock is held for no read of its own, and
    not for one a window."""
    slow = Settings(
        database_url=migrated.database_url, signing_key=migrated.signing_key, group_commit_ms=300
    )
    with ExitStack() as made:
        ledger, rival, bus = racing_ledgers(made, slow)
        ledger.committer.contended_seconds = 600.0
        for window_id in WINDOWS:
            ledger.admit(window_id, batch(window_id, event("seed")))
        bus.rival = lambda: rival.admit("g-1", batch("g-1", event("rival")))
        ledger.admit_with_others("g-1", batch("g-1", event("lost-a-race")))
        assert ledger.uow.reruns == 1
        for window_id in WINDOWS:  # another process writes every window
            rival.admit(window_id, batch(window_id, event(f"theirs-{window_id}")))

        outside: list[list[str]] = []  # reads made apart from the recorder's write
        locked: list[LockedRead | None] = []
        writing = threading.local()
        real_read = ledger.index.catch_up_and_look_up_many
        real_write = ledger._admitting.recorder.insert_event_stream

        def read(lookups: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
            if not getattr(writing, "now", False):
                outside.append(sorted(lookup.window_id for lookup in lookups))
            return real_read(lookups, *args, **kwargs)

        def write(chunks: Any, lock_first: bool = False, read: LockedRead | None = None) -> None:
            locked.append(read)
            writing.now = True
            try:
                real_write(chunks, lock_first, read)
            finally:
                writing.now = False

        monkeypatch.setattr(ledger.index, "catch_up_and_look_up_many", read)
        monkeypatch.setattr(ledger._admitting.recorder, "insert_event_stream", write)
        groups = ledger.committer.groups
        futures = [
            ledger.submit_with_others(w, batch(w, event("mine"), event(f"theirs-{w}")))
            for w in WINDOWS
        ]
        for future in futures:
            assert [r.verdict.value for r in future.result(timeout=60)] == [
                "ADMITTED",
                "DUPLICATE",
            ]
        assert ledger.committer.groups == groups + 1  # one transaction
        assert ledger.committer.judged_under_lock == 1
        assert outside == [sorted(WINDOWS)]  # before the lock (the bus is asked from it)
        (under,) = locked
        assert under is not None and under.found is not None
        assert sorted(lookup.window_id for lookup in under.lookups) == sorted(WINDOWS)
        for lookup in under.lookups:
            w = lookup.window_id
            assert sorted(lookup.identities) == sorted(
                [identity_of(w, "mine"), identity_of(w, f"theirs-{w}")]
            )
        # Nothing was written in between: the read before the lock had caught them up.
        assert [len(newer) for newer, _ in under.found] == [0, 0, 0]
        assert ledger.uow.reruns == 1
        for window_id in WINDOWS:
            assert ledger.verify(window_id).ok


@pytest.fixture
def racing_embedded(migrated: Settings) -> Iterator[tuple[Ledger, Ledger, _RacingEmbedded]]:
    bus = _RacingEmbedded()
    with ExitStack() as made:
        ledger = build_ledger(migrated, bus)
        made.callback(ledger.close)
        rival = build_ledger(migrated, EmbeddedPublisher())
        made.callback(rival.close)
        ledger.committer.contended_seconds = 600.0
        ledger.admit("w", batch("w", event("seed")))
        bus.rival = lambda: rival.admit("w", batch("w", event("rival")))
        ledger.admit_with_others("w", batch("w", event("lost-a-race")))
        assert ledger.uow.reruns == 1  # contended from now on
        yield ledger, rival, bus


def test_while_contended_the_embedded_bus_needs_no_read_before_the_lock(
    racing_embedded: tuple[Ledger, Ledger, _RacingEmbedded],
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
) -> None:
    """With the ledger as its own bus, everything a group needs is read under the lock (ADR
    0033): the read before it is skipped, and what another process wrote is still judged."""
    ledger, rival, _ = racing_embedded
    rival.admit("w", batch("w", event("theirs")))
    reads: list[Any] = []
    real = ledger.index.catch_up_and_look_up_many

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(ledger.index, "catch_up_and_look_up_many", counted)
    results = ledger.admit_with_others("w", batch("w", event("mine"), event("theirs")))
    assert [(r.verdict.value, r.offset) for r in results] == [("ADMITTED", 5), ("DUPLICATE", 4)]
    assert ledger.committer.judged_under_lock == 1
    assert ledger.uow.reruns == 1  # no race lost
    # PostgreSQL reads in the round trip that takes the lock, nothing before it; SQLite (in
    # process) makes the same read the usual way, once, while holding its lock.
    assert len(reads) == (0 if backend == "postgres" else 1)
    history = ledger.history("w")
    admitted = [h["fields"]["event_id"] for h in history if h["type"] == "EventAdmitted"]
    assert admitted == ["seed", "rival", "lost-a-race", "theirs", "mine"]
    assert ledger.verify("w").ok


def test_while_contended_a_window_closed_by_another_process_is_answered_as_closed(
    racing_embedded: tuple[Ledger, Ledger, _RacingEmbedded],
) -> None:
    """The group skipped its read before the lock; under it, it finds the window closed: the
    attempt ends as a lost race and the re-run (reading first) answers as after a close."""
    ledger, rival, _ = racing_embedded
    rival.close_window("w")
    duplicate = ledger.admit_with_others("w", batch("w", event("seed")))
    assert [r.verdict.value for r in duplicate] == ["DUPLICATE"]
    with pytest.raises(WindowClosed):
        ledger.admit_with_others("w", batch("w", event("new-after-close")))
    history = ledger.history("w")
    assert history[-1]["type"] == "WindowClosed"
    assert ledger.verify("w").ok
