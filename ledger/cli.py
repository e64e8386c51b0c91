"""The `ledger` command line. Every command reads the same environment as the service."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from tqdm import tqdm

from api.auth import TokenError
from ledger.admissions import Admission, check_window_id, parse_line, prepare
from ledger.bootstrap import Services, build_ledger, build_services
from ledger.errors import InvalidAdmission, LedgerError
from ledger.receipts import render_markdown
from ledger.settings import Settings, SettingsError
from ledger.verdicts import Verdict
from projections.migrate import SchemaNotCurrent, current_revision, upgrade
from projections.store import create_read_store

CLI_BATCH = 500
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class BadLine(Exception):
    def __init__(self, line_number: int, detail: str) -> None:
        super().__init__(f"line {line_number}: {detail}")
        self.line_number = line_number


@contextmanager
def _services() -> Iterator[Services]:
    services = build_services(Settings.from_env())
    try:
        yield services
    finally:
        services.close()


def _print_json(value: Any, out: IO[str]) -> None:
    out.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


@contextmanager
def _open_input(path: str) -> Iterator[IO[bytes]]:
    if path == "-":
        yield sys.stdin.buffer
    else:
        with open(path, "rb") as handle:
            yield handle


def _batches(
    window_id: str, lines: IO[bytes], on_bytes: Callable[[int], None]
) -> Iterator[list[Admission]]:
    """Validated batches of up to CLI_BATCH admissions; a bad line stops before its batch."""
    batch: list[Admission] = []
    for number, raw in enumerate(lines, start=1):
        on_bytes(len(raw))
        if not raw.strip():
            continue
        try:
            batch.extend(prepare(window_id, [parse_line(raw)]))
        except InvalidAdmission as exc:
            raise BadLine(number, exc.detail.replace("events[0].", "")) from None
        if len(batch) == CLI_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def cmd_admit(args: argparse.Namespace) -> int:
    window_id = check_window_id(args.window)
    verdicts: Counter[str] = Counter()
    with _services() as services, _open_input(args.file) as handle:
        total = None
        if args.file != "-":
            handle.seek(0, 2)
            total = handle.tell()
            handle.seek(0)
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc=f"admitting to {window_id}",
            disable=args.quiet,
            file=sys.stderr,
        ) as bar:
            try:
                for batch in _batches(window_id, handle, bar.update):
                    for result in services.ledger.admit(window_id, batch):
                        verdicts[result.verdict.value] += 1
                    bar.set_postfix(admissions=sum(verdicts.values()), refresh=False)
            except BadLine as exc:
                bar.close()
                print(f"error: {exc}", file=sys.stderr)
                print(
                    "nothing of that line's batch was recorded; earlier batches were. "
                    "Fix the line and run the same command again: what was recorded "
                    "comes back as DUPLICATE.",
                    file=sys.stderr,
                )
                _print_counts(verdicts)
                return EXIT_BAD_INPUT
    _print_counts(verdicts)
    return 0


def _print_counts(verdicts: Counter[str]) -> None:
    print(f"{sum(verdicts.values())} admissions")
    for verdict in Verdict:
        print(f"  {verdict.value:<16} {verdicts[verdict.value]}")


def cmd_close(args: argparse.Namespace) -> int:
    with _services() as services:
        _print_json(services.close_window(args.window), sys.stdout)
    return 0


def cmd_receipt(args: argparse.Namespace) -> int:
    with _services() as services:
        services.catch_up()
        receipt = services.receipt(args.window)
        if args.format == "md":
            reasons = services.gate(args.window)["reasons"]
            sys.stdout.write(render_markdown(receipt, reasons))
        else:
            _print_json(receipt, sys.stdout)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    with _services() as services:
        for item in services.ledger.iter_history(args.window):
            sys.stdout.write(json.dumps(item, ensure_ascii=False) + "\n")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    with _services() as services:
        verification = services.ledger.verify(args.window)
    _print_json(verification.as_json(), sys.stdout)
    if not verification.ok:
        print(
            f"chain broken: first bad event is version {verification.first_bad_version}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    with _services() as services:
        _print_json(services.ledger.reconcile(args.window), sys.stdout)
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    store = create_read_store(settings)
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
    with _services() as services:
        runner = services.runner
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
            return _follow(services)
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


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api import create_app
    from api.auth import parse_tokens

    settings = Settings.from_env()
    tokens = parse_tokens(settings.api_tokens)
    if not tokens and args.host not in LOOPBACK:
        print(
            f"error: refusing to bind {args.host}: LEDGER_API_TOKENS is not set, so the API "
            "has no authentication and serves loopback only. Set tokens or use 127.0.0.1.",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    print(f"ledger: data in {settings.describe_database()}", file=sys.stderr)
    print(f"ledger: publisher {settings.describe_publisher()}", file=sys.stderr)
    if tokens:
        print(f"ledger: auth on ({len(tokens)} tokens)", file=sys.stderr)
    else:
        print("ledger: auth OFF (LEDGER_API_TOKENS unset): serving loopback only", file=sys.stderr)
    print(
        f"ledger: listening on http://{args.host}:{args.port} (API docs at /schema/swagger)",
        file=sys.stderr,
    )
    uvicorn.run(
        create_app(settings), host=args.host, port=args.port, log_level="warning", access_log=False
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ledger",
        description="The admission ledger. Reads LEDGER_DATABASE_URL and LEDGER_PUBLISHER.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    admit = sub.add_parser("admit", help="replay a JSON-lines file through the admission path")
    admit.add_argument("window")
    admit.add_argument("file", help="one admission object per line; - for stdin")
    admit.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    admit.set_defaults(func=cmd_admit)

    for name, func, text in [
        ("close", cmd_close, "close a window (refused while publishes are unknown)"),
        ("history", cmd_history, "the window's events as JSON lines, with digests"),
        ("verify", cmd_verify, "recompute the hash chain; exit 1 when it is broken"),
        ("reconcile", cmd_reconcile, "resolve unknown publish outcomes through the bus"),
    ]:
        command = sub.add_parser(name, help=text)
        command.add_argument("window")
        command.set_defaults(func=func)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade"])
    db.set_defaults(func=cmd_db_upgrade)

    projections = sub.add_parser("projections", help="the read models")
    projections.add_argument("action", choices=["run", "rebuild", "status"])
    projections.add_argument("name", nargs="?", help="one projection (rebuild only)")
    projections.set_defaults(func=cmd_projections)

    receipt = sub.add_parser("receipt", help="the window's receipt")
    receipt.add_argument("window")
    receipt.add_argument("--format", choices=["json", "md"], default="json")
    receipt.set_defaults(func=cmd_receipt)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except InvalidAdmission as exc:
        print(f"error: {exc.code}: {exc.detail}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except LedgerError as exc:
        print(f"error: {exc.code}: {exc.detail}", file=sys.stderr)
        if "pending" in exc.extra:
            for identity in exc.extra["pending"]:
                print(f"  pending: {identity}", file=sys.stderr)
        return EXIT_FAILED
    except SchemaNotCurrent as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TokenError as exc:
        print(f"error: configuration: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SettingsError as exc:
        print(f"error: configuration: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return code


if __name__ == "__main__":
    sys.exit(main())
