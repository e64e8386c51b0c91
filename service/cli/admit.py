"""`ledger admit WINDOW FILE.jsonl`: replay a file through the admission path, with progress."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

from tqdm import tqdm

from ledger.admissions import Admission, check_window_id, parse_line, prepare
from ledger.errors import InvalidAdmission
from ledger.verdicts import Verdict
from service.cli.common import EXIT_BAD_INPUT, services

CLI_BATCH = 500


class BadLine(Exception):
    def __init__(self, line_number: int, detail: str) -> None:
        super().__init__(f"line {line_number}: {detail}")
        self.line_number = line_number


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
    with services() as built, _open_input(args.file) as handle:
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
                    for result in built.admit(window_id, batch):
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
