"""The stored event state's transcoder: what it writes, it reads back exactly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ledger.domain import format_recorded_at
from ledger.infrastructure.transcoder import JSONStateTranscoder


@pytest.mark.parametrize("microsecond", [0, 1, 100, 120000, 500000, 999999])
def test_stored_timestamps_round_trip_exactly_so_recorded_at_recomputes(microsecond: int) -> None:
    stamp = datetime(2024, 2, 29, 23, 59, 59, microsecond, tzinfo=UTC)
    transcoder = JSONStateTranscoder()
    decoded = transcoder.decode(transcoder.encode({"timestamp": stamp}))["timestamp"]
    assert decoded == stamp
    assert format_recorded_at(decoded) == format_recorded_at(stamp)
    assert format_recorded_at(decoded) == f"2024-02-29T23:59:59.{microsecond:06d}Z"
