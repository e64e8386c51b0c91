"""`ledger admit WINDOW FILE.jsonl`: replay a file through the admission path, with progress.

The replay does what the library-level path does (`PreparedOnUse` and `Ledger.admit`, a batch
of CLI_BATCH at a time) plus reading and decoding the file, and nothing else per batch: a batch
is prepared in one call (its payloads while the ledger looks up its identities, ADR 0040); it
is written alone, after the services' guard (a set lookup for an open window), not through the
service's group commit (ADR 0019: that waits for concurrent requests to join, and here there
are none); the progress bar moves once a batch; and the cycle collector is tuned for the
replay (`_replay_collections`). `python -m benchmarks.admission --cli` measures it against the
library-level rate; where the time goes: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from tqdm import tqdm

from ledger.admissions import (
    AdmissionIn,
    PreparedOnUse,
    check_window_id,
    parse_line,
    prepare,
)
from ledger.application import AdmissionResult, Ledger
from ledger.errors import InvalidAdmission
from ledger.verdicts import Verdict
from service.cli.common import EXIT_BAD_INPUT, services

CLI_BATCH = 500
# Allocations (net, of objects the cycle collector tracks) between two young collections
# during the replay; Python's default is 700.
GC_YOUNG = 100_000


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


def _bad(line_number: int, exc: InvalidAdmission) -> BadLine:
    """The line's error as that line alone gets it (index 0 of a batch of one)."""
    return BadLine(line_number, exc.detail.replace("events[0].", ""))


def _raise_first_bad(window_id: str, numbered: list[tuple[int, AdmissionIn]]) -> None:
    """A refused batch's first bad line, as that line alone is refused (if one is)."""
    for line_number, item in numbered:
        try:
            prepare(window_id, [item])
        except InvalidAdmission as exc:
            raise _bad(line_number, exc) from None


def _prepared(window_id: str, numbered: list[tuple[int, AdmissionIn]]) -> PreparedOnUse:
    """The lines checked in one batch; their payloads are prepared when `Ledger.admit` uses
    the batch, while it looks up their identities (ADR 0040). Refused either time, the first
    bad line is found by preparing them one at a time, to be reported as it would be alone."""
    try:
        return PreparedOnUse(window_id, [item for _, item in numbered])
    except InvalidAdmission:
        _raise_first_bad(window_id, numbered)
        raise


Batch = tuple[list[tuple[int, AdmissionIn]], PreparedOnUse | None, int]


def _batches(window_id: str, lines: IO[bytes]) -> Iterator[Batch]:
    """Batches of up to CLI_BATCH admissions (their lines, the batch, None if there are none,
    and the bytes read for them, blank lines included). The first bad line in the file's
    order (one that does not decode or does not validate) raises BadLine before its batch is
    yielded; a payload that does not validate, when the batch is used (`_admit`)."""
    numbered: list[tuple[int, AdmissionIn]] = []
    read = 0
    for line_number, raw in enumerate(lines, start=1):
        read += len(raw)
        if not raw.strip():
            continue
        try:
            numbered.append((line_number, parse_line(raw)))
        except InvalidAdmission as exc:
            if numbered:
                _raise_first_bad(window_id, numbered)  # an earlier line may be bad too
            raise _bad(line_number, exc) from None
        if len(numbered) == CLI_BATCH:
            yield numbered, _prepared(window_id, numbered), read
            numbered, read = [], 0
    if numbered or read:
        yield numbered, (_prepared(window_id, numbered) if numbered else None), read


def _admit(
    ledger: Ledger, window_id: str, numbered: list[tuple[int, AdmissionIn]], batch: PreparedOnUse
) -> list[AdmissionResult]:
    try:
        return ledger.admit(window_id, batch)
    except InvalidAdmission:  # a payload, prepared while the identities were looked up
        _raise_first_bad(window_id, numbered)
        raise


@contextmanager
def _replay_collections() -> Iterator[None]:
    """The cycle collector, tuned for the replay. What exists once the services are built
    (modules, the services, the database pools) lives until exit: frozen, so that no full
    collection walks it again. A batch makes some ten tracked objects an admission, nearly all
    freed by reference counting when the batch is done: at Python's default threshold they
    were collected several times a batch and promoted to older generations for nothing (the
    replay makes next to no cycles; a 300,000-line replay spent 1.0-1.7 s of 8-10 s in the
    collector). A young collection every GC_YOUNG allocations leaves them to reference
    counting and still reclaims any cycle within a bounded number of allocations."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def cmd_admit(args: argparse.Namespace) -> int:
    window_id = check_window_id(args.window)
    verdicts: Counter[str] = Counter()
    with services() as built, _open_input(args.file) as handle, _replay_collections():
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
                for numbered, batch, read in _batches(window_id, handle):
                    if batch is not None:
                        # `Services.admit` without its group commit (ADR 0019): that is for
                        # concurrent callers, and the replay is the only one here.
                        built.evidence.guard(window_id)
                        results = _admit(built.ledger, window_id, numbered, batch)
                        verdicts.update([result.verdict.value for result in results])
                        bar.set_postfix(admissions=sum(verdicts.values()), refresh=False)
                    bar.update(read)
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
