"""A crash between a view update and its tracking position is impossible by construction: both
commit in one transaction. Kill `ledger projections run` mid-run, restart it, and the read models
are exactly what a clean rebuild of the same log gives. On SQLite and on PostgreSQL."""

from __future__ import annotations

import signal

from tests.support.builders import batch, event
from tests.support.cli import start_cli, stop_process
from tests.support.readside import PROJECTIONS, checksums, tracking_positions
from tests.support.services import wait_until

WINDOWS = 30
PER_WINDOW = 400


def _fill(services) -> int:
    """Many events, none projected yet; returns the log's head."""
    for w in range(WINDOWS):
        window_id = f"w{w:02d}"
        services.ledger.admit(
            window_id,
            batch(
                window_id,
                *[
                    event(str(n), {"n": n, "w": w}, source={"partition": f"p{n % 4}", "offset": n})
                    for n in range(PER_WINDOW)
                ],
            ),
        )
        if w % 3 == 0:
            services.ledger.admit(
                window_id,
                batch(window_id, event("1", {"n": "changed"}), event("2", {"n": 2, "w": w})),
            )
        if w % 2 == 0:
            services.ledger.close_window(window_id)
    head = services.runner.head()
    assert head > 10 * 1000  # many runner pages
    assert tracking_positions(services.settings.database_url) == {}
    return head


def test_killing_the_projection_runner_mid_run_and_restarting_it_loses_and_doubles_nothing(
    services, database_url, tmp_path
):
    head = _fill(services)
    stderr = tmp_path / "projections-run.stderr"

    def progress() -> tuple[int, int]:
        positions = tracking_positions(database_url)
        reached = [positions.get(name, 0) for name in PROJECTIONS]
        return min(reached), max(reached)

    kills = 0
    runner = start_cli(database_url, "projections", "run", stderr_path=stderr)
    try:
        # Kill it twice, each time once it has made some progress but is not done.
        for _ in range(2):
            start = progress()[1]
            wait_until(
                lambda start=start, runner=runner: (
                    progress()[1] > start or runner.poll() is not None
                ),
                120,
                "`ledger projections run` to apply a page",
            )
            assert runner.poll() is None, stderr.read_text()
            if progress()[0] >= head:
                break
            stop_process(runner, signal.SIGKILL)
            kills += 1
            assert progress()[1] > 0 and progress()[0] < head
            runner = start_cli(database_url, "projections", "run", stderr_path=stderr)
        assert kills >= 1, "the runner finished before it could be killed: add more events"

        wait_until(
            lambda: progress()[0] >= head or runner.poll() is not None,
            300,
            "the restarted runner to reach the log head",
        )
        assert runner.poll() is None, stderr.read_text()
        assert tracking_positions(database_url) == {name: head for name in PROJECTIONS}
    finally:
        code = stop_process(runner, signal.SIGTERM)
    assert code == 0, stderr.read_text()

    after_crashes = checksums(database_url)
    windows, _ = services.read.windows(None, 1000)
    assert len(windows) == WINDOWS
    for w in windows:
        n = int(w["window_id"][1:])
        assert w["counts"]["admitted"] == PER_WINDOW
        assert w["counts"]["duplicates"] == (1 if n % 3 == 0 else 0)
        assert w["counts"]["quarantined"] == (1 if n % 3 == 0 else 0)
        assert w["gate"] == ("PASS" if n % 2 == 0 else "OPEN")
    for window_id in ("w00", "w01", "w29"):
        assert {k: v for k, v in services.receipt(window_id).items() if k != "gate"} == {
            k: v for k, v in services.ledger.receipt(window_id).items() if k != "gate"
        }

    services.runner.rebuild()  # a clean, uninterrupted run over the same log
    assert checksums(database_url) == after_crashes
