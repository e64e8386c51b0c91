"""How a streamed save cuts a batch into chunks (ADR 0011)."""

from __future__ import annotations

# Events per chunk of a streamed save: small enough to overlap, large enough that a statement
# per chunk costs little.
STREAM_CHUNK = 50
LAST_CHUNK = 10


def chunk_bounds(n: int) -> list[tuple[int, int]]:
    """Chunks of STREAM_CHUNK, the last one cut short: what the server still has to do after
    Python made the last chunk is all the caller waits for."""
    bounds = [(start, min(start + STREAM_CHUNK, n)) for start in range(0, n, STREAM_CHUNK)]
    start, stop = bounds[-1]
    if stop - start > LAST_CHUNK:
        bounds[-1:] = [(start, stop - LAST_CHUNK), (stop - LAST_CHUNK, stop)]
    return bounds
