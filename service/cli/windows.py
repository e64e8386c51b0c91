"""The commands on one window: close, receipt, history, verify, reconcile."""

from __future__ import annotations

import argparse
import json
import sys

from ledger.receipts import render_markdown
from service.cli.common import EXIT_FAILED, print_json, services


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


def cmd_verify(args: argparse.Namespace) -> int:
    with services() as built:
        verification = built.ledger.verify(args.window)
    print_json(verification.as_json(), sys.stdout)
    if not verification.ok:
        print(
            f"chain broken: first bad event is version {verification.first_bad_version}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    with services() as built:
        print_json(built.ledger.reconcile(args.window), sys.stdout)
    return 0
