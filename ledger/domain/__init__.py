"""The domain: the run-window aggregate, its events and their hash chain.

Imports only the standard library and `eventsourcing.domain`. Stored events name their classes
by topic; those written before the domain became a package name `ledger.domain:Window...`, which
these re-exports keep resolvable.
"""

from ledger.domain.chain import (
    GENESIS_DIGEST,
    META_KEYS,
    chain_digest,
    chain_digest_of,
    format_recorded_at,
)
from ledger.domain.forms import AdmittedForm
from ledger.domain.window import Window, window_uuid

__all__ = [
    "GENESIS_DIGEST",
    "META_KEYS",
    "AdmittedForm",
    "Window",
    "chain_digest",
    "chain_digest_of",
    "format_recorded_at",
    "window_uuid",
]
