"""What the reviewer's pages compute to show data, as pure functions: which fields of two
payloads differ, a payload as marked lines, the arrivals chart as SVG, ages, key fields of a
history event. The templates only lay these out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

Path = tuple[str | int, ...]

# --- two payloads side by side -----------------------------------------------------------------


def differing_paths(original: Any, received: Any, path: Path = ()) -> set[Path]:
    """The paths at which two JSON values differ: a changed leaf, a key or item on one side
    only, a value whose type changed (1 and true and 1.0 are not the same)."""
    if isinstance(original, dict) and isinstance(received, dict):
        found: set[Path] = set()
        for key in original.keys() | received.keys():
            if key not in original or key not in received:
                found.add((*path, key))
            else:
                found |= differing_paths(original[key], received[key], (*path, key))
        return found
    if isinstance(original, list) and isinstance(received, list):
        found = set()
        for i in range(max(len(original), len(received))):
            if i >= len(original) or i >= len(received):
                found.add((*path, i))
            else:
                found |= differing_paths(original[i], received[i], (*path, i))
        return found
    if type(original) is not type(received) or original != received:
        return {path}
    return set()


def path_text(path: Path) -> str:
    """`amount_cents`, `items[0].sku`, or `(the whole payload)`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(the whole payload)"


@dataclass(frozen=True, slots=True)
class Line:
    indent: int
    text: str
    changed: bool


def marked_lines(value: Any, changed: set[Path]) -> list[Line]:
    """The value as indented JSON lines (keys sorted), each line marked when it shows a changed
    path or lies inside one."""
    lines: list[Line] = []

    def within(path: Path) -> bool:
        return any(path[: len(c)] == c for c in changed)

    def emit(v: Any, path: Path, prefix: str, indent: int, comma: str) -> None:
        mark = within(path)
        if isinstance(v, dict) and v:
            lines.append(Line(indent, prefix + "{", mark))
            keys = sorted(v)
            for i, k in enumerate(keys):
                emit(v[k], (*path, k), json.dumps(k) + ": ", indent + 1, _comma(i, keys))
            lines.append(Line(indent, "}" + comma, mark))
        elif isinstance(v, list) and v:
            lines.append(Line(indent, prefix + "[", mark))
            for i, item in enumerate(v):
                emit(item, (*path, i), "", indent + 1, _comma(i, v))
            lines.append(Line(indent, "]" + comma, mark))
        else:
            scalar = json.dumps(v, ensure_ascii=False, sort_keys=True)
            lines.append(Line(indent, prefix + scalar + comma, mark))

    emit(value, (), "", 0, "")
    return lines


def side_by_side(entry: dict[str, Any]) -> dict[str, Any]:
    """A quarantine entry with what its page shows: the differing paths in words, and both
    payloads as marked lines (no original when the read side lacks it)."""
    original, received = entry["original_payload"], entry["received_payload"]
    changed = differing_paths(original, received) if original is not None else set()
    return {
        **entry,
        "changed": sorted(path_text(p) for p in changed),
        "original_lines": None if original is None else marked_lines(original, changed),
        "received_lines": marked_lines(received, changed),
    }


def _comma(i: int, items: Any) -> str:
    return "," if i < len(items) - 1 else ""


# --- the arrivals chart ------------------------------------------------------------------------

VERDICT_ORDER = ("ADMITTED", "DUPLICATE", "QUARANTINED", "PUBLISH_UNKNOWN")
MAX_BARS = 60
_WIDTH, _HEIGHT, _LEFT, _BOTTOM = 640, 200, 48, 24


@dataclass(frozen=True, slots=True)
class Bar:
    start: str  # first minute of the bar, YYYY-MM-DDTHH:MM (UTC)
    minutes: int
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def bars(rows: list[dict[str, Any]], max_bars: int = MAX_BARS) -> list[Bar]:
    """Per-minute counts grouped into at most `max_bars` bars of equal length, from the first
    minute with arrivals to the last (quiet minutes between are empty bars)."""
    if not rows:
        return []
    by_minute: dict[datetime, dict[str, int]] = {}
    for r in rows:
        at = datetime.strptime(r["minute"], "%Y-%m-%dT%H:%M")
        counts = by_minute.setdefault(at, {})
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + int(r["n"])
    first, last = min(by_minute), max(by_minute)
    span = int((last - first) / timedelta(minutes=1)) + 1
    width = -(-span // max_bars)  # minutes per bar, rounded up
    grouped: list[dict[str, int]] = [{} for _ in range(-(-span // width))]
    for at, counts in by_minute.items():
        bucket = grouped[int((at - first) / timedelta(minutes=1)) // width]
        for verdict, n in counts.items():
            bucket[verdict] = bucket.get(verdict, 0) + n
    return [
        Bar((first + timedelta(minutes=i * width)).strftime("%Y-%m-%dT%H:%M"), width, counts)
        for i, counts in enumerate(grouped)
    ]


def chart_svg(chart: list[Bar], title: str) -> str:
    """Stacked bars, one colour (and one legend entry, in words) per verdict; every bar carries
    its figures as a tooltip; the same figures are in a table next to the chart."""
    peak = max((b.total for b in chart), default=0) or 1
    plot_w, plot_h = _WIDTH - _LEFT - 8, _HEIGHT - _BOTTOM - 8
    step = min(plot_w / max(len(chart), 1), 48.0)  # one bar stays a bar, not a wall
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'role="img" aria-labelledby="chart-title" class="chart">'
        f'<title id="chart-title">{escape(title)}</title>',
        f'<line x1="{_LEFT}" y1="{8 + plot_h}" x2="{_WIDTH - 8}" y2="{8 + plot_h}" class="axis"/>',
        f'<text x="{_LEFT - 6}" y="14" text-anchor="end" class="tick">{peak:,}</text>',
        f'<text x="{_LEFT - 6}" y="{8 + plot_h}" text-anchor="end" class="tick">0</text>',
    ]
    for i, b in enumerate(chart):
        y = float(8 + plot_h)
        x = _LEFT + i * step + step * 0.1
        w = max(step * 0.8, 1)
        tip = f"{b.start} UTC, {b.minutes} min: " + ", ".join(
            f"{v.lower().replace('_', ' ')} {b.counts.get(v, 0):,}" for v in VERDICT_ORDER
        )
        parts.append(f"<g><title>{escape(tip)}</title>")
        for verdict in VERDICT_ORDER:
            n = b.counts.get(verdict, 0)
            if not n:
                continue
            h = plot_h * n / peak
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{max(h, 0.5):.1f}" '
                f'class="v-{verdict}"/>'
            )
        parts.append("</g>")
    if chart:
        parts.append(
            f'<text x="{_LEFT}" y="{_HEIGHT - 6}" class="tick">{escape(chart[0].start)}</text>'
        )
    if len(chart) > 1:  # the last bar's start, under the last bar
        parts.append(
            f'<text x="{_LEFT + len(chart) * step:.1f}" y="{_HEIGHT - 6}" text-anchor="end" '
            f'class="tick">{escape(chart[-1].start)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


# --- times, digests, history rows --------------------------------------------------------------


def age(since: str, now: datetime | None = None) -> str:
    """How long ago a recorded_at text was, in words: `42 s`, `7 min`, `3 h 5 min`, `2 d 4 h`."""
    then = datetime.fromisoformat(since.replace("Z", "+00:00"))
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours < 1:
        return f"{minutes} min"
    if days < 1:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


def short(digest: str | None, keep: int = 12) -> str:
    return "" if not digest else digest[:keep]


# The fields a history row shows, by event type (the rest is one click away, as JSON).
KEY_FIELDS = {
    "WindowOpened": ("window_id",),
    "EventAdmitted": ("event_type", "event_id", "offset", "payload_hash"),
    "DuplicateAbsorbed": ("identity", "offset"),
    "MismatchQuarantined": ("event_type", "event_id", "original_hash", "received_hash"),
    "PublishUnknown": ("event_type", "event_id", "reason"),
    "PublishReconciled": ("identity", "outcome", "offset"),
    "WindowClosed": ("admitted", "duplicates", "quarantined", "events"),
}
_HASHES = ("payload_hash", "original_hash", "received_hash", "identity")


def key_fields(event_type: str, fields: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, text) pairs for a history row: the type's key fields, hashes shortened; an event
    type without a list shows its first few scalar fields."""
    source = fields
    if event_type == "WindowClosed" and isinstance(fields.get("summary"), dict):
        summary = fields["summary"]
        source = {**summary.get("counts", {}), "events": summary.get("events")}
    names = (
        KEY_FIELDS.get(event_type)
        or tuple(k for k, v in fields.items() if not isinstance(v, dict | list))[:4]
    )
    shown = []
    for name in names:
        if name not in source:
            continue
        value = source[name]
        text = short(value) if name in _HASHES and isinstance(value, str) else str(value)
        shown.append((name, "-" if value is None else text))
    return shown
