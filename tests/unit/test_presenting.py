"""What the reviewer's pages compute before laying it out: which fields differ, payload lines
marked, the chart's bars, ages and a history row's key fields."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from api.presenting import (
    MAX_BARS,
    age,
    bars,
    chart_svg,
    differing_paths,
    key_fields,
    marked_lines,
    path_text,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3)
    ),
    max_leaves=12,
)


def test_a_changed_leaf_deep_inside_is_named_by_its_path() -> None:
    original = {"amount_cents": 300, "items": [{"sku": "A", "qty": 1}], "currency": "EUR"}
    received = {"amount_cents": 999, "items": [{"sku": "A", "qty": 2}], "currency": "EUR"}
    changed = differing_paths(original, received)
    assert changed == {("amount_cents",), ("items", 0, "qty")}
    assert sorted(path_text(p) for p in changed) == ["amount_cents", "items[0].qty"]


def test_a_key_on_one_side_only_and_a_changed_type_both_differ() -> None:
    assert differing_paths({"a": 1}, {"a": 1, "note": "x"}) == {("note",)}
    assert differing_paths({"a": 1}, {"a": True}) == {("a",)}
    assert differing_paths({"a": 1}, {"a": 1.0}) == {("a",)}
    assert differing_paths([1, 2], [1]) == {(1,)}
    assert path_text(()) == "(the whole payload)"


@given(json_values)
def test_a_value_never_differs_from_itself(value: object) -> None:
    assert differing_paths(value, value) == set()


@given(json_values, json_values)
def test_two_values_differ_somewhere_exactly_when_they_are_not_equal(a: object, b: object) -> None:
    same = a == b and repr(a) == repr(b)  # 1 == True == 1.0, but they are different JSON
    assert (differing_paths(a, b) == set()) == same


def test_marked_lines_mark_only_the_lines_that_show_a_change() -> None:
    received = {"amount_cents": 999, "currency": "EUR", "items": [{"qty": 2, "sku": "A"}]}
    changed = {("amount_cents",), ("items", 0, "qty")}
    lines = marked_lines(received, changed)
    marked = [line.text.strip() for line in lines if line.changed]
    assert marked == ['"amount_cents": 999,', '"qty": 2,']
    assert "".join(line.text for line in lines).replace(" ", "") == (
        '{"amount_cents":999,"currency":"EUR","items":[{"qty":2,"sku":"A"}]}'
    )


def test_a_whole_object_added_on_one_side_is_marked_from_its_first_line_to_its_last() -> None:
    lines = marked_lines({"a": 1, "extra": {"b": [1, 2]}}, {("extra",)})
    # {  "a": 1,  "extra": {  "b": [  1,  2  ]  }  }
    assert [line.changed for line in lines] == [False, False, *[True] * 6, False]


def test_bars_fold_many_minutes_into_at_most_sixty_bars_and_keep_every_count() -> None:
    rows = [
        {"minute": f"2026-11-29T{h:02d}:{m:02d}", "verdict": v, "n": 3}
        for h in range(0, 5)
        for m in range(0, 60)
        for v in ("ADMITTED", "DUPLICATE")
    ]
    chart = bars(rows)
    assert len(chart) <= MAX_BARS
    assert chart[0].start == "2026-11-29T00:00" and chart[0].minutes == 5
    assert sum(b.counts.get("ADMITTED", 0) for b in chart) == 5 * 60 * 3
    assert sum(b.total for b in chart) == 2 * 5 * 60 * 3


def test_quiet_minutes_between_arrivals_are_empty_bars() -> None:
    rows = [
        {"minute": "2026-11-29T10:00", "verdict": "ADMITTED", "n": 2},
        {"minute": "2026-11-29T10:03", "verdict": "QUARANTINED", "n": 1},
    ]
    chart = bars(rows)
    assert [b.total for b in chart] == [2, 0, 0, 1]
    svg = chart_svg(chart, "Arrivals <window>")
    assert svg.startswith("<svg") and 'role="img"' in svg
    assert "Arrivals &lt;window&gt;" in svg  # the title is escaped
    assert svg.count('class="v-ADMITTED"') == 1 and svg.count('class="v-QUARANTINED"') == 1
    assert bars([]) == []


def test_an_age_reads_in_the_largest_units_that_fit() -> None:
    now = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
    assert age("2026-11-29T11:59:18.000000Z", now) == "42 s"
    assert age("2026-11-29T11:53:00.000000Z", now) == "7 min"
    assert age("2026-11-29T08:55:00.000000Z", now) == "3 h 5 min"
    assert age("2026-11-27T08:00:00.000000Z", now) == "2 d 4 h"
    assert age("2026-11-29T12:00:05.000000Z", now) == "0 s"  # a clock ahead is not negative


def test_a_history_row_shows_its_types_key_fields_with_hashes_shortened() -> None:
    admitted = {
        "identity": "a" * 64,
        "event_type": "order.created",
        "event_id": "o-1",
        "payload": {"x": 1},
        "payload_hash": "b" * 64,
        "offset": 7,
        "source": None,
    }
    assert key_fields("EventAdmitted", admitted) == [
        ("event_type", "order.created"),
        ("event_id", "o-1"),
        ("offset", "7"),
        ("payload_hash", "b" * 12),
    ]
    closed = {
        "summary": {"counts": {"admitted": 3, "duplicates": 1, "quarantined": 0}, "events": 6}
    }
    assert key_fields("WindowClosed", closed) == [
        ("admitted", "3"),
        ("duplicates", "1"),
        ("quarantined", "0"),
        ("events", "6"),
    ]
    assert key_fields("SomethingNew", {"a": 1, "b": {"c": 2}, "d": "x"}) == [("a", "1"), ("d", "x")]
