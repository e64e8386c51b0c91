"""The receipt (contract s.5): its JSON shape, and its Markdown for a reviewer who does not read
code. Both sides make receipts through `receipt_json`, so the shape is written once."""

from __future__ import annotations

from typing import Any

COUNT_KEYS = (
    "admitted",
    "duplicates",
    "quarantined",
    "publish_unknown",
    "reconciled",
    "pending_unknown",
)


def receipt_json(
    *,
    window_id: str,
    status: str,
    gate: str,
    counts: dict[str, int],
    bus_offsets: dict[str, int | None],
    source_offsets: dict[str, dict[str, int]],
    opened_at: str | None,
    closed_at: str | None,
    events: int,
    chain_head: str,
) -> dict[str, Any]:
    return {
        "window_id": window_id,
        "status": status,
        "gate": gate,
        "counts": counts,
        "bus_offsets": bus_offsets,
        "source_offsets": source_offsets,
        "opened_at": opened_at,
        "closed_at": closed_at,
        "events": events,
        "chain_head": chain_head,
    }


COUNT_LABELS = [
    ("admitted", "Admitted (published once, reconciled ones included)"),
    ("duplicates", "Exact duplicates absorbed"),
    ("quarantined", "Quarantined (same identity, different payload)"),
    ("publish_unknown", "Publish outcome unknown (ever recorded)"),
    ("reconciled", "Unknown outcomes reconciled"),
    ("pending_unknown", "Still unknown now"),
]

BUS_DUPLICATES_LABEL = (
    "Extra bus messages accepted by an operator (the bus's duplicate window had ended; "
    "each a `BusDuplicateAccepted` in the history)"
)

GATE_MEANING = {
    "PASS": "closed, read side agrees with the closing summary, hash chain verified: "
    "downstream may read it",
    "FAIL": "closed, but a check failed: do not read it",
    "BLOCKED": "open with unknown publish outcomes: reconcile before closing",
    "OPEN": "still open: downstream must wait for close",
}


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def render_markdown(
    receipt: dict[str, Any], reasons: list[str] | None = None, bus_duplicates_accepted: int = 0
) -> str:
    """`bus_duplicates_accepted`: extra bus messages an operator accepted (ADR 0028): not one
    of the receipt's counts (their shape is the contract's), shown when there are some."""
    gate = receipt["gate"]
    lines = [
        f"# Receipt for window `{receipt['window_id']}`",
        "",
        f"- **Status:** {receipt['status']}",
        f"- **Gate:** {gate} ({GATE_MEANING.get(gate, '')})",
        f"- **Opened:** {_or_dash(receipt['opened_at'])}",
        f"- **Closed:** {_or_dash(receipt['closed_at'])}",
        "",
        "## Counts",
        "",
        "| what | count |",
        "|---|---:|",
    ]
    lines += [f"| {label} | {receipt['counts'][key]} |" for key, label in COUNT_LABELS]
    if bus_duplicates_accepted:
        lines.append(f"| {BUS_DUPLICATES_LABEL} | {bus_duplicates_accepted} |")
    bus = receipt["bus_offsets"]
    lines += [
        "",
        "## Offsets",
        "",
        f"- **Bus offsets:** {_or_dash(bus['first'])} to {_or_dash(bus['last'])}",
    ]
    sources = receipt["source_offsets"]
    if sources:
        lines += ["", "| source partition | min offset | max offset |", "|---|---:|---:|"]
        lines += [f"| `{p}` | {r['min']} | {r['max']} |" for p, r in sources.items()]
    else:
        lines.append("- **Source offsets:** none given by the producers")
    lines += [
        "",
        "## Evidence",
        "",
        f"- **Events in the window's history:** {receipt['events']}",
        f"- **Chain head (digest of the last event):** `{receipt['chain_head']}`",
        "- Recompute it from the history: each digest is "
        "sha256(prev_digest + JCS({version, type, recorded_at, fields})).",
    ]
    lines += _signature_lines(receipt)
    if reasons:
        lines += ["", "## Gate reasons", ""] + [f"- {r}" for r in reasons]
    return "\n".join(lines) + "\n"


def _signature_lines(receipt: dict[str, Any]) -> list[str]:
    signature = receipt.get("signature")
    if not signature:
        return ["- **Signature:** none yet (a receipt is signed when its window closes)"]
    window = receipt["window_id"]
    return [
        f"- **Signature:** {signature['alg']} by key `{signature['key_id']}`",
        f"- **Signature value:** `{signature['value']}`",
        "",
        "## Keep this receipt",
        "",
        "A PASS is a claim about the stored history now. To check this window later without "
        "trusting the database it lives in:",
        "",
        f"1. `ledger export {window} -o {window}.bundle.jsonl` (the signed receipt and the whole "
        "history, one JSON line each);",
        "2. the public key: `GET /v1/keys` (the entry with the key id above);",
        f"3. `ledger verify --bundle {window}.bundle.jsonl --public-key key.pem`: every digest, "
        "the head and event count against this receipt, and the signature (no database, no "
        "service needed); exit 0 when all hold;",
        f"4. `ledger verify {window} --receipt {window}.bundle.jsonl` holds the live history to "
        "a receipt kept earlier (it catches a truncated or rewritten tail).",
    ]
