"""The commands on one window: close, receipt, history, reconcile."""

from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm

from ledger.application.reconciliation import Reconciliation
from ledger.receipts import render_markdown
from service.cli.common import print_json, services


def cmd_close(args: argparse.Namespace) -> int:
    with services() as built:
        print_json(built.close_window(args.window), sys.stdout)
    return 0


def cmd_receipt(args: argparse.Namespace) -> int:
    with services() as built:
        built.catch_up()
        receipt = built.receipt(args.window)
        if args.format == "md":
            reasons = built.gate(args.window)["reasons"]
            sys.stdout.write(render_markdown(receipt, reasons))
        else:
            print_json(receipt, sys.stdout)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    with services() as built:
        for item in built.ledger.iter_history(args.window):
            sys.stdout.write(json.dumps(item, ensure_ascii=False) + "\n")
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Reconcile, showing the bounded steps as they go (a large backlog takes a while)."""
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
