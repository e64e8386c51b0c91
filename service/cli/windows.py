"""The commands on one window: close, receipt, history, reconcile."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys

from tqdm import tqdm

from ledger.application.bus_duplicates import DEFAULT_REASON
from ledger.application.reconciliation import Reconciliation
from service.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, print_json, services


def cmd_close(args: argparse.Namespace) -> int:
    with services() as built:
        print_json(built.close_window(args.window), sys.stdout)
    return 0


def cmd_receipt(args: argparse.Namespace) -> int:
    with services() as built:
        built.catch_up()
        if args.format == "md":
            sys.stdout.write(built.receipt_markdown(args.window))
        else:
            print_json(built.receipt(args.window), sys.stdout)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    with services() as built:
        for item in built.ledger.iter_history(args.window):
            sys.stdout.write(json.dumps(item, ensure_ascii=False) + "\n")
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Reconcile, showing the bounded steps as they go (a large backlog takes a while); with
    --accept-bus-duplicates, record the acceptance of the window's extra bus messages."""
    if args.accept_bus_duplicates:
        return accept_bus_duplicates(args)
    if args.by is not None or args.reason is not None:
        print("error: --by and --reason go with --accept-bus-duplicates", file=sys.stderr)
        return EXIT_BAD_INPUT
    with (
        services() as built,
        tqdm(desc=f"reconciling {args.window}", unit="msg", file=sys.stderr) as bar,
    ):

        def show(done: Reconciliation) -> None:
            if done.bus_messages is not None and bar.total is None:
                bar.total = done.bus_messages
            settled = len(done.reconciled) + len(done.still_unknown)
            bar.n = max(done.read_up_to, settled)
            bar.set_postfix(
                reconciled=len(done.reconciled),
                still_unknown=len(done.still_unknown),
                adopted=len(done.adopted),
                unadoptable=len(done.unadoptable),
            )

        result = built.reconcile(args.window, show)
    print_json(result, sys.stdout)
    return 0


def accept_bus_duplicates(args: argparse.Namespace) -> int:
    """One `BusDuplicateAccepted` per acceptable extra message (ADR 0028); exit 1 when some
    extra message was refused (another payload: not a duplicate)."""
    by = (args.by or "").strip() or os_user()
    reason = (args.reason or "").strip() or DEFAULT_REASON
    with services() as built:
        result = built.accept_bus_duplicates(args.window, accepted_by=by, reason=reason)
    print_json(result, sys.stdout)
    return EXIT_FAILED if result["refused"] else 0


def os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no name for this uid (a bare container)
        return f"uid {os.getuid()}"
