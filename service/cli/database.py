"""`ledger db upgrade` and `ledger projections run|rebuild|status`: the schema and the read side."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from tqdm import tqdm

from projections.migrate import current_revision, upgrade
from service.cli.common import services
from service.composition import Services, build_ledger, build_read_store
from service.settings import Settings


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    store = build_read_store(settings)
    try:
        before = current_revision(store)
        upgrade(store)
        print(
            f"read-model schema: {before or 'empty'} -> {current_revision(store)} "
            f"({settings.describe_database()})"
        )
    finally:
        store.dispose()
    # The write side's tables are created by its recorders; building the ledger makes them.
    build_ledger(settings).close()
    return 0


def cmd_projections(args: argparse.Namespace) -> int:
    with services() as built:
        runner = built.runner
        if args.action == "status":
            _print_status(runner.status())
        elif args.action == "rebuild":
            with tqdm(
                total=runner.head(),
                unit="ev",
                desc=f"rebuilding {args.name or 'all'}",
                file=sys.stderr,
            ) as bar:

                def progress(n: int) -> None:
                    if bar.n + n > bar.total:  # rebuilding several: one pass each
                        bar.total += runner.head()
                    bar.update(n)

                runner.rebuild(args.name, progress)
            _print_status(runner.status())
        else:
            return _follow(built)
    return 0


def _print_status(rows: list[dict[str, Any]]) -> None:
    print(f"{'projection':<12} {'position':>10} {'head':>10} {'lag':>8}")
    for row in rows:
        print(f"{row['name']:<12} {row['position']:>10} {row['head']:>10} {row['lag']:>8}")


def _follow(services: Services) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(
        f"following the ledger in {services.settings.describe_database()}; Ctrl-C stops",
        file=sys.stderr,
    )
    services.start_following()
    while not stop.wait(5.0):
        lag = max(row["lag"] for row in services.runner.status())
        print(f"lag {lag}", file=sys.stderr)
    return 0
