"""The commands on one window: close, receipt, history, reconcile."""

from __future__ import annotations

import argparse
import json
import sys

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
    with services() as built:
        print_json(built.reconcile(args.window), sys.stdout)
    return 0
