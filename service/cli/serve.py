"""`ledger serve`: the HTTP service (uvicorn), started by the app factory's import string so
that this package never imports the API."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType

from ledger.infrastructure.embedded import EmbeddedPublisher
from service.cli.common import EXIT_BAD_INPUT
from service.composition import build_ledger, build_signer, prepare_schema
from service.settings import Settings
from service.tokens import parse_tokens

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
WORKER_HEALTHCHECK_SECONDS = 30


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.cli.connections import HTTP_PROTOCOL

    if args.workers < 1:
        print("error: --workers must be 1 or more", file=sys.stderr)
        return EXIT_BAD_INPUT
    # The follower runs beside the server in a child process of its own unless told otherwise
    # (ADR 0020); the workers read the same environment.
    os.environ.setdefault("LEDGER_FOLLOWER", "process")
    settings = Settings.from_env()
    tokens = parse_tokens(settings.api_tokens)
    if not tokens and args.host not in LOOPBACK:
        print(
            f"error: refusing to bind {args.host}: LEDGER_API_TOKENS is not set, so the API "
            "has no authentication and serves loopback only. Set tokens or use 127.0.0.1.",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    # Refuse before binding, with the command to run, when the schema needs a migration.
    prepare_schema(settings)
    print(f"ledger: data in {settings.describe_database()}", file=sys.stderr)
    print(f"ledger: publisher {settings.describe_publisher()}", file=sys.stderr)
    signer = build_signer(settings)
    made = "generated (mode 0600) at" if signer.created else "from"
    print(f"ledger: receipts signed with key {signer.key_id} {made} {signer.path}", file=sys.stderr)
    scrub = settings.scrub_interval_seconds
    print(
        f"ledger: closed windows scrubbed at start and every {scrub:g} s"
        if scrub > 0
        else "ledger: closed windows scrubbed at start only (LEDGER_SCRUB_INTERVAL_SECONDS=0)",
        file=sys.stderr,
    )
    if tokens:
        print(f"ledger: auth on ({len(tokens)} tokens)", file=sys.stderr)
    else:
        print("ledger: auth OFF (LEDGER_API_TOKENS unset): serving loopback only", file=sys.stderr)
    if args.workers > 1:
        # The workers start at once: the event tables are made here first, so that no two of
        # them race to create the same table.
        build_ledger(settings, EmbeddedPublisher()).close()
    print(
        f"ledger: {args.workers} worker process{'es' if args.workers > 1 else ''}; one process "
        "per database leads the projection follower and the scrub (each says below whether it "
        "leads)",
        file=sys.stderr,
    )
    print(
        f"ledger: listening on http://{args.host}:{args.port} (API docs at /schema/swagger)",
        file=sys.stderr,
    )
    print(
        f"ledger: bounds: {settings.max_inflight_body_mb:g} MiB of request bodies in flight per "
        f"process, bodies within {settings.body_timeout_seconds:g} s, headers within "
        f"{settings.header_timeout_seconds:g} s, idle connections closed after "
        f"{settings.keep_alive_seconds:g} s; SIGTERM finishes in-flight requests within "
        f"{settings.shutdown_timeout_seconds:g} s (a second SIGTERM exits at once)",
        file=sys.stderr,
    )
    # uvicorn re-raises the stop signal once it has stopped gracefully (which would end the
    # process by the signal): a stop, then, exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_0)
    # Each worker builds its own services from the app factory; with several, uvicorn's
    # supervisor forwards SIGTERM/SIGINT to them and exits once they have stopped.
    uvicorn.run(
        "api.app:serve_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        # The supervisor pings each worker every half second and kills one that does not answer
        # within this many seconds; uvicorn's 5 s killed workers still starting on a loaded
        # 2-core machine (their replacements then started as slowly).
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        log_level="warning",
        access_log=False,
        # Slow and idle clients (ADR 0029): headers within a deadline (the protocol), idle
        # kept-alive connections closed; the body's deadline is the app's (api/bounds.py).
        http=HTTP_PROTOCOL,  # by import path: each worker imports it
        timeout_keep_alive=settings.keep_alive_seconds,  # type: ignore[arg-type]
        # In-flight requests get this long after SIGTERM, then are cancelled.
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,  # type: ignore[arg-type]
    )
    return 0


def _exit_0(sig: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
