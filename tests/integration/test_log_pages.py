"""The read side's pages of the log (ADR 0037, ADR 0043) hold what the library's own
notification reads hold: the same events, ids, versions, topics and stored bytes, in order, on
each backend; on PostgreSQL each originator id is the text of the window's UUID."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.persistence import Notification

from ledger.domain import window_uuid
from ledger.infrastructure.logpages import notification
from service.composition import build_ledger
from service.settings import Settings
from tests.support.builders import batch, event


def test_a_page_of_the_log_holds_what_the_librarys_read_of_it_holds(migrated: Settings) -> None:
    ledger = build_ledger(migrated)
    try:
        for window_id in ("pages-a", "pages-b"):
            ledger.admit(window_id, batch(window_id, *(event(f"e{n}", {"n": n}) for n in range(5))))
        recorder = ledger.recorder
        library = recorder.select_notifications(start=1, limit=100)
        page = recorder.select_notifications_within(0, 100, 1 << 20)  # type: ignore[attr-defined]
        assert len(page) == len(library) == 12  # two windows: opened and 5 admissions each
        assert [
            (n.id, str(n.originator_id), n.originator_version, n.topic, n.state) for n in page
        ] == [(n.id, str(n.originator_id), n.originator_version, n.topic, n.state) for n in library]
        assert {str(n.originator_id) for n in page} == {
            str(window_uuid("pages-a")),
            str(window_uuid("pages-b")),
        }
        # From the middle, as a follower resumes.
        assert (
            [n.id for n in recorder.select_notifications_within(page[5].id, 3, 1 << 20)]
            == [  # type: ignore[attr-defined]
                n.id for n in library[6:9]
            ]
        )
    finally:
        ledger.close()


def test_a_notification_made_directly_equals_the_librarys() -> None:
    made = notification(7, UUID(int=1), 3, "a.topic", memoryview(b"{}"))
    assert made == Notification(
        id=7, originator_id=UUID(int=1), originator_version=3, topic="a.topic", state=b"{}"
    )
    assert type(made.state) is bytes
