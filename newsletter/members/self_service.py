"""What members do for themselves (from a link in an email): unsubscribe, change their details or
region, pause, resume, resubscribe, get their data, erase themselves.

Each function takes an open Session and the member's id (the link's token, checked by the caller,
names the id) and writes an audit row like the admin actions do. The member web and the CLI call
these; they hold no rules of their own.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from newsletter.errors import InputError
from newsletter.members.privacy import access, erase
from newsletter.members.subscribers import (
    SubscriberDetails,
    audit,
    clean_value,
    set_status,
)
from newsletter.models import Subscriber, SubscriberStatus, utcnow

PAUSE_MONTHS = (1, 3, 6)


@dataclass(frozen=True)
class MemberView:
    """What a member's own page shows."""

    id: int
    email: str
    first_name: str | None
    last_name: str | None
    region: str | None
    status: str
    paused_until: datetime | None

    @property
    def active(self) -> bool:
        return self.status == SubscriberStatus.ACTIVE.value

    def paused(self, now: datetime | None = None) -> bool:
        return self.paused_until is not None and self.paused_until > (now or utcnow())


def member_by_id(session: Session, subscriber_id: int) -> Subscriber | None:
    """The member a link names, or None when there is none or it was erased (no address)."""
    sub = session.get(Subscriber, subscriber_id)
    if sub is None or sub.status == SubscriberStatus.ERASED or not sub.email:
        return None
    return sub


def member_view(sub: Subscriber) -> MemberView:
    assert sub.email is not None
    return MemberView(sub.id, sub.email, sub.first_name, sub.last_name, sub.region, sub.status, sub.paused_until)


def unsubscribe_member(session: Session, sub: Subscriber, *, actor: str, reason: str) -> bool:
    """Stop all mail (idempotent: False when already not active). A bounced or complained member
    stays so: those statuses already stop mail and say more."""
    if sub.status != SubscriberStatus.ACTIVE:
        return False
    return set_status(session, sub, SubscriberStatus.UNSUBSCRIBED, actor=actor, reason=reason)


def resubscribe_member(session: Session, sub: Subscriber, *, actor: str, reason: str, consent_source: str,
                       consent_version: str | None) -> bool:
    """Undo an unsubscribe (the member's own act, with fresh consent). Only from `unsubscribed`:
    a bounced or complained address comes back only through a confirmed sign-up."""
    if sub.status != SubscriberStatus.UNSUBSCRIBED:
        return False
    set_status(session, sub, SubscriberStatus.ACTIVE, actor=actor, reason=reason)
    sub.consent_source = clean_value(consent_source)
    sub.consent_at = utcnow()
    sub.consent_version = clean_value(consent_version) or sub.consent_version
    sub.paused_until = None
    return True


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later (the month's last day when it is shorter)."""
    month = moment.month - 1 + months
    year, month = moment.year + month // 12, month % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def pause_member(session: Session, sub: Subscriber, months: int, *, actor: str,
                 now: datetime | None = None) -> datetime:
    """No edition for `months` (1, 3 or 6) from now; the member stays subscribed. Returns the end."""
    if months not in PAUSE_MONTHS:
        raise InputError(f"a pause is 1, 3 or 6 months, not {months}")
    if sub.status != SubscriberStatus.ACTIVE:
        raise InputError("only an active member can pause the digest")
    until = add_months(now or utcnow(), months)
    sub.paused_until = until
    audit(session, sub.id, actor, "pause", reason=f"paused for {months} month(s), until {until.date().isoformat()}")
    return until


def resume_member(session: Session, sub: Subscriber, *, actor: str) -> bool:
    """End a pause now; False when the member was not paused."""
    if sub.paused_until is None:
        return False
    sub.paused_until = None
    audit(session, sub.id, actor, "resume", reason="pause ended by the member")
    return True


def change_details(session: Session, sub: Subscriber, details: SubscriberDetails, *, actor: str) -> dict[str, Any]:
    """Change name or region (never the status or address). Returns the columns changed."""
    changes = details.checked().changes(sub)
    for name, value in changes.items():
        setattr(sub, name, value)
    if changes:
        audit(session, sub.id, actor, "update", reason="changed: " + ", ".join(sorted(changes)))
    return changes


def member_data(session: Session, sub: Subscriber) -> dict[str, Any]:
    """The subject-access JSON (`subscribers access`) for this member."""
    assert sub.email is not None
    return access(session, sub.email)


def erase_member(session: Session, sub: Subscriber, *, actor: str, reason: str) -> int:
    """The same erasure as `subscribers erase`."""
    assert sub.email is not None
    return erase(session, sub.email, actor=actor, reason=reason)
