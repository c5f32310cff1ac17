"""suppressions sync: SendGrid's lists mark members (with audit rows) and never reactivate."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from newsletter.db import Database
from newsletter.members.suppressions import PAGE_SIZE, sync_suppressions
from newsletter.models import AuditEntry, Subscriber


class FakeClient:
    def __init__(self, lists: dict[str, list[str]]) -> None:
        self.lists = lists
        self.calls: list[tuple[str, int, int]] = []

    def page(self, name: str, limit: int, offset: int) -> list[dict[str, Any]]:
        self.calls.append((name, limit, offset))
        return [{"email": e, "created": 1, "reason": "x"} for e in self.lists.get(name, [])[offset:offset + limit]]


def _add(db: Database, email: str, status: str = "active") -> None:
    with db.session() as session:
        session.add(Subscriber(email=email, email_key=email.lower(), status=status))


def _status(db: Database) -> dict[str, str]:
    with db.session() as session:
        return dict(session.execute(select(Subscriber.email, Subscriber.status)).all())


def test_lists_mark_members_with_audit_rows(db: Database) -> None:
    for e in ("a@x.org", "b@x.org", "c@x.org", "d@x.org", "e@x.org", "f@x.org"):
        _add(db, e)
    _add(db, "gone@x.org", "unsubscribed")
    client = FakeClient({"spam_reports": ["A@x.org"], "unsubscribes": ["b@x.org", "gone@x.org"], "bounces": ["c@x.org"],
                         "blocks": ["d@x.org", "a@x.org"], "invalid_emails": ["e@x.org", "nobody@x.org"]})
    result = sync_suppressions(db, client)
    assert _status(db) == {"a@x.org": "complained", "b@x.org": "unsubscribed", "c@x.org": "bounced",
                           "d@x.org": "bounced", "e@x.org": "bounced", "f@x.org": "active",
                           "gone@x.org": "unsubscribed"}
    assert result.marked == {"complained": 1, "unsubscribed": 1, "bounced": 3}
    assert result.unknown == 1 and result.already_inactive == 2
    with db.session() as session:
        audit = session.execute(select(AuditEntry.actor, AuditEntry.old_status, AuditEntry.new_status)).all()
    assert len(audit) == 5 and all(a == ("sendgrid-sync", "active", a[2]) for a in audit)
    # running again changes nothing
    assert sum(sync_suppressions(db, client).marked.values()) == 0


def test_pages_through_long_lists(db: Database) -> None:
    emails = [f"m{i}@x.org" for i in range(PAGE_SIZE + 3)]
    for e in emails[:5] + emails[-2:]:
        _add(db, e)
    client = FakeClient({"bounces": emails})
    result = sync_suppressions(db, client)
    assert [c for c in client.calls if c[0] == "bounces"] == [("bounces", PAGE_SIZE, 0), ("bounces", PAGE_SIZE, PAGE_SIZE)]
    assert result.seen["bounces"] == PAGE_SIZE + 3 and result.marked["bounced"] == 7
