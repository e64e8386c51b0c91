"""The `ledger` command line. Every command reads the same environment as the service."""

from __future__ import annotations

import argparse
import sys

from ledger.application.bus_duplicates import DEFAULT_REASON
from ledger.errors import InvalidAdmission, LedgerError
from ledger.infrastructure.signing import SigningKeyError
from projections.migrate import SchemaNotCurrent
from service.cli import evidence
from service.cli.admit import cmd_admit
from service.cli.common import EXIT_BAD_INPUT, EXIT_FAILED
from service.cli.database import cmd_db_upgrade, cmd_projections
from service.cli.serve import cmd_serve
from service.cli.windows import cmd_close, cmd_history, cmd_receipt, cmd_reconcile
from service.settings import SettingsError
from service.tokens import TokenError


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
    ]:
        command = sub.add_parser(name, help=text)
        command.add_argument("window")
        command.set_defaults(func=func)

    reconcile = sub.add_parser("reconcile", help="resolve unknown publish outcomes through the bus")
    reconcile.add_argument("window")
    reconcile.add_argument(
        "--accept-bus-duplicates",
        action="store_true",
        help="instead: record an operator's acceptance of the extra bus messages of identities "
        "the window admitted, with the admitted payload (the bus's duplicate window ended)",
    )
    reconcile.add_argument("--by", help="who accepts (default: the OS user)")
    reconcile.add_argument("--reason", help=f"why (default: {DEFAULT_REASON!r})")
    reconcile.set_defaults(func=cmd_reconcile)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers", type=int, default=1, help="processes serving one database (default 1)"
    )
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade"])
    db.set_defaults(func=cmd_db_upgrade)

    projections = sub.add_parser("projections", help="the read models")
    projections.add_argument("action", choices=["run", "rebuild", "status"])
    projections.add_argument("name", nargs="?", help="one projection (rebuild only)")
    projections.set_defaults(func=cmd_projections)

    evidence.add_commands(sub)

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
    except SigningKeyError as exc:
        print(f"error: signing key: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
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
