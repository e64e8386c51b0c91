"""Validating incoming admissions and computing their identity and payload hash."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, overload

import msgspec

from ledger.errors import InvalidAdmission, NestingTooDeep, PayloadTooLarge
from ledger.jcs import (
    MAX_DEPTH,
    MAX_SAFE_INTEGER,
    CanonicalizationError,
    canonicalize,
    nested_deeper_than,
    sha256_hex,
    text_nested_deeper_than,
)

# (?!\n) before $: Python's $ also matches before a final newline ("abc\n" must not pass);
# the pattern stays valid ECMAScript for the OpenAPI document.
NAME_PATTERN = r"^[A-Za-z0-9._:-]{1,128}(?!\n)$"
_NAME = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MAX_EVENT_ID = 256
MAX_BATCH = 1000
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
# The levels of JSON around each payload: a request body `{"events": [{..., "payload": ...}]}`
# has 3, a line of `ledger admit` (one admission object) 1. Text may nest MAX_DEPTH more.
BODY_LEVELS = 3
LINE_LEVELS = 1

Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
# No NUL: PostgreSQL text cannot hold it, and an identity part nobody can type is a bug upstream.
NO_NUL = "^[^\\u0000]*$"
MAX_PARTITION = 256
EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_EVENT_ID, pattern=NO_NUL)]
Partition = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PARTITION, pattern=NO_NUL)]


class SourceIn(msgspec.Struct, forbid_unknown_fields=True):
    partition: Partition
    # Bounded like every integer the ledger hashes: it is part of the chained event.
    offset: Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE_INTEGER)]


class AdmissionIn(msgspec.Struct, forbid_unknown_fields=True):
    event_type: Name
    event_id: EventId
    payload: dict[str, Any]
    source: SourceIn | None = None


# A frozen msgspec Struct, not a frozen dataclass: one is made per admission, and a frozen
# dataclass's __init__ sets each of its eight fields through object.__setattr__ (ADR 0040).
class Admission(msgspec.Struct, frozen=True):
    window_id: str
    event_type: str
    event_id: str
    payload: dict[str, Any]
    source: dict[str, Any] | None
    identity: str
    payload_hash: str
    # canonicalize(payload), kept from hashing: the chain digest embeds it instead of
    # encoding the payload again.
    canonical_payload: bytes | None = None


def _check_name(what: str, value: object) -> None:
    if not isinstance(value, str) or _NAME.fullmatch(value) is None:
        shown = value[:140] if isinstance(value, str) else type(value).__name__
        raise InvalidAdmission(f"{what} {shown!r} must match [A-Za-z0-9._:-]{{1,128}}")


def check_window_id(window_id: str) -> str:
    _check_name("window_id", window_id)
    return window_id


def _check_item(index: int, item: AdmissionIn) -> None:
    """The same rules the JSON decoder applies, for callers that build AdmissionIn in Python."""
    _check_name(f"events[{index}].event_type", item.event_type)
    if (
        not isinstance(item.event_id, str)
        or not 1 <= len(item.event_id) <= MAX_EVENT_ID
        or "\x00" in item.event_id
    ):
        raise InvalidAdmission(
            f"events[{index}].event_id must be 1 to {MAX_EVENT_ID} characters, without NUL"
        )
    if not isinstance(item.payload, dict):
        raise InvalidAdmission(f"events[{index}].payload must be a JSON object")
    source = item.source
    if source is not None and not (
        isinstance(source, SourceIn)
        and isinstance(source.partition, str)
        and 1 <= len(source.partition) <= MAX_PARTITION
        and "\x00" not in source.partition
        and type(source.offset) is int
        and 0 <= source.offset <= MAX_SAFE_INTEGER
    ):
        raise InvalidAdmission(
            f'events[{index}].source must be {{"partition": 1 to {MAX_PARTITION} characters '
            f'without NUL, "offset": integer from 0 to {MAX_SAFE_INTEGER}}}'
        )


def check_nesting(text: bytes, around: int) -> None:
    """Refuse JSON text that nests deeper than its payloads may (MAX_DEPTH below the `around`
    levels of the request), before a decoder recurses into it: near 1,000 levels the decoder
    itself fails with a RecursionError (ADR 0023)."""
    if text_nested_deeper_than(text, MAX_DEPTH + around):
        raise NestingTooDeep(
            f"JSON nested deeper than {MAX_DEPTH} levels (the limit for a payload)"
        )


def identity_of(window_id: str, event_type: str, event_id: str) -> str:
    return sha256_hex(canonicalize([window_id, event_type, event_id]))


def prepare(
    window_id: str,
    items: Sequence[AdmissionIn],
    *,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> list[Admission]:
    """Validate a whole batch (it is taken whole or refused whole) and hash each item once."""
    check_window_id(window_id)
    _check_size(items)
    return _prepared(window_id, items, max_payload_bytes, None)


def _check_size(items: Sequence[AdmissionIn]) -> None:
    if not 1 <= len(items) <= MAX_BATCH:
        raise InvalidAdmission(f"a batch holds 1 to {MAX_BATCH} events, not {len(items)}")


def _prepared(
    window_id: str,
    items: Sequence[AdmissionIn],
    max_payload_bytes: int,
    identities: Sequence[str] | None,
) -> list[Admission]:
    """`prepare`'s loop. `identities`: the items were checked and their identities made
    already (`PreparedOnUse`), so only their payloads and sources are left."""
    prepared = []
    for index, item in enumerate(items):
        if identities is None:
            _check_item(index, item)
        # Before canonicalizing: its serializer and encoders recurse once a level.
        if nested_deeper_than(item.payload, MAX_DEPTH):
            raise NestingTooDeep(
                f"events[{index}].payload nested deeper than {MAX_DEPTH} levels (the limit)"
            )
        try:
            canonical = canonicalize(item.payload)
        except CanonicalizationError as exc:
            raise InvalidAdmission(f"events[{index}].payload: {exc}") from None
        if identities is None:
            try:
                identity = identity_of(window_id, item.event_type, item.event_id)
            except CanonicalizationError as exc:
                raise InvalidAdmission(f"events[{index}].event_id: {exc}") from None
        else:
            identity = identities[index]
        if len(canonical) > max_payload_bytes:
            raise PayloadTooLarge(
                f"events[{index}].payload is {len(canonical)} bytes in canonical form; "
                f"the limit is {max_payload_bytes}"
            )
        source = None
        if item.source is not None:
            source = {"partition": item.source.partition, "offset": item.source.offset}
            try:
                canonicalize(source)  # it is chained with the event: it must have a JCS form
            except CanonicalizationError as exc:
                raise InvalidAdmission(f"events[{index}].source: {exc}") from None
        prepared.append(
            Admission(
                window_id=window_id,
                event_type=item.event_type,
                event_id=item.event_id,
                payload=item.payload,
                source=source,
                identity=identity,
                payload_hash=sha256_hex(canonical),
                canonical_payload=canonical,
            )
        )
    return prepared


class PreparedOnUse(Sequence[Admission]):
    """A batch for `Ledger.admit` from one caller, prepared in two steps (ADR 0040).

    Made, it has checked the window id, the batch's size and each item's names and made their
    identities: what the ledger's lookup needs. Its payloads are checked, canonicalized and
    hashed when it is first used, which `Ledger.admit` does while the database looks those
    identities up, so the larger part of `prepare` costs no wall time. Either step refuses
    exactly as `prepare` would (the same error for the same first bad item), the second when
    the batch is used: a batch refused then records nothing, like one refused by `prepare`.

    Not for the group commit: a refusal there would fail the other requests of its window."""

    __slots__ = ("_admissions", "_items", "_max_payload_bytes", "identities", "window_id")

    def __init__(
        self,
        window_id: str,
        items: Sequence[AdmissionIn],
        *,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        check_window_id(window_id)
        _check_size(items)
        try:
            identities = []
            for index, item in enumerate(items):
                _check_item(index, item)
                identities.append(identity_of(window_id, item.event_type, item.event_id))
        except (InvalidAdmission, CanonicalizationError):
            # Whatever `prepare` says of the batch: an earlier item's payload may be bad too.
            prepare(window_id, items, max_payload_bytes=max_payload_bytes)
            raise
        self.window_id = window_id
        self.identities: list[str] = identities
        self._items = items
        self._max_payload_bytes = max_payload_bytes
        self._admissions: list[Admission] | None = None

    def admissions(self) -> list[Admission]:
        """The prepared batch (made on the first call)."""
        if self._admissions is None:
            self._admissions = _prepared(
                self.window_id, self._items, self._max_payload_bytes, self.identities
            )
        return self._admissions

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> Admission: ...

    @overload
    def __getitem__(self, index: slice) -> list[Admission]: ...

    def __getitem__(self, index: int | slice) -> Admission | list[Admission]:
        return self.admissions()[index]

    def __iter__(self) -> Iterator[Admission]:
        return iter(self.admissions())


def identities_of(admissions: Sequence[Admission]) -> Sequence[str]:
    """The batch's identities, in order, without preparing a `PreparedOnUse` batch."""
    if isinstance(admissions, PreparedOnUse):
        return admissions.identities
    return [a.identity for a in admissions]


_line_decoder = msgspec.json.Decoder(AdmissionIn)


def parse_line(line: bytes | str) -> AdmissionIn:
    """One admission object from a JSON line (the CLI's input format)."""
    check_nesting(
        line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line, LINE_LEVELS
    )
    try:
        return _line_decoder.decode(line)
    except msgspec.DecodeError as exc:
        raise InvalidAdmission(str(exc)) from None
