"""The hand-written contender of `benchmarks.http`: what a team would write instead of the ledger.

    python -m benchmarks.handwritten --host 127.0.0.1 --port N    # LEDGER_DATABASE_URL: PostgreSQL

A Litestar app under uvicorn (1 worker, the same uvicorn settings as `ledger serve`), a psycopg
connection pool (as many connections as the ledger's pool may open: 4 + 8), and per request one
transaction of `INSERT ... ON CONFLICT DO NOTHING` into a table of its own (`handwritten_dedupe`,
in the same database as the ledger). The body is the ledger's own (`AdmissionRequest`, decoded
strictly), validated and hashed by the ledger's own `prepare` (with the ledger's JCS fast path),
and the rows are those of `benchmarks.admission`'s baseline (a): window, identity, payload hash,
payload. The answer names each event's verdict (ADMITTED when its row was inserted, else
DUPLICATE: payloads are not compared) and the counts, in the ledger's shape.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from typing import Any

import anyio.to_thread
import msgspec
import uvicorn
from litestar import Litestar, Request, get, post
from litestar.exceptions import ClientException
from psycopg_pool import ConnectionPool

from api.schemas import AdmissionRequest
from benchmarks.admission import rows_of
from ledger.admissions import prepare
from ledger.errors import InvalidAdmission
from ledger.infrastructure import fastjson

TABLE = "handwritten_dedupe"
POOL_MIN, POOL_MAX = 4, 12  # the ledger's POSTGRES_POOL_SIZE and POOL_SIZE + MAX_OVERFLOW
CREATE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (window_id text NOT NULL, identity text PRIMARY KEY, "
    "payload_hash text NOT NULL, payload json NOT NULL)"
)
INSERT = (
    f"INSERT INTO {TABLE} (window_id, identity, payload_hash, payload) "
    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING identity"
)

_decode = msgspec.json.Decoder(AdmissionRequest).decode


def build_app(database_url: str) -> Litestar:
    fastjson.install()
    pool = ConnectionPool(database_url, min_size=POOL_MIN, max_size=POOL_MAX, open=False)

    def store(rows: list[tuple[str, str, str, str]]) -> set[str]:
        """One transaction: the rows inserted (their identities); the others existed."""
        inserted: set[str] = set()
        with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(INSERT, rows, returning=True)
            while True:
                row = cur.fetchone()
                if row is not None:
                    inserted.add(row[0])
                if not cur.nextset():
                    break
        return inserted

    def admit(window_id: str, body: bytes) -> dict[str, Any]:
        try:
            prepared = prepare(window_id, _decode(body).events)
        except (msgspec.ValidationError, msgspec.DecodeError, InvalidAdmission) as exc:
            raise ClientException(str(exc)) from None
        inserted = store(rows_of(prepared))
        results = [
            {
                "event_type": a.event_type,
                "event_id": a.event_id,
                "identity": a.identity,
                "payload_hash": a.payload_hash,
                "verdict": "ADMITTED" if a.identity in inserted else "DUPLICATE",
            }
            for a in prepared
        ]
        counts = Counter(r["verdict"] for r in results)
        return {"window_id": window_id, "results": results, "counts": dict(counts)}

    @post("/v1/windows/{window_id:str}/admissions", status_code=200)
    async def admissions(window_id: str, request: Request[Any, Any, Any]) -> dict[str, Any]:
        body = await request.body()
        # Validating, hashing and the transaction: in a thread, as the ledger's handler does.
        return await anyio.to_thread.run_sync(lambda: admit(window_id, body))

    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    def start() -> None:
        pool.open(wait=True)
        with pool.connection() as conn:
            conn.execute(CREATE)

    def stop() -> None:
        # Not `pool.close` itself: Litestar passes a hook that takes arguments the app, which
        # the pool took for its timeout (the shutdown failed with a TypeError).
        pool.close()

    return Litestar(
        route_handlers=[admissions, health],
        on_startup=[start],
        on_shutdown=[stop],
        debug=False,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.handwritten")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    url = os.environ.get("LEDGER_DATABASE_URL", "")
    if not url.startswith(("postgresql://", "postgres://")):
        print("error: LEDGER_DATABASE_URL must be a PostgreSQL URL", file=sys.stderr)
        return 2
    uvicorn.run(
        build_app(url), host=args.host, port=args.port, log_level="warning", access_log=False
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
