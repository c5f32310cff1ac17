"""Notices to the comms team: a send at risk, stale, missed, failed, uncertain or paused, a short
"sent" summary, a digest to review. Each goes by email to the `notify_email` setting through the
configured transport (the outbox by default: `<outbox>/_notices/<kind>/<id>.json`) and, when
`notify_webhook_url` is set, as a JSON POST to that URL.

    notify(db, settings, Notice(kind=..., about="2026-12:east", reason="issues/articles/x.md changed",
                                subject=..., paragraphs=(...)))

A notice is recorded in the `notices` table before it goes out, unique per (kind, about, reason):
whoever inserts the row sends it, so a daemon that checks every few seconds, a second daemon on
the same database, or a restart, tells the comms team once per reason. A new reason (another
file changed) is a new notice. A notice whose email or webhook failed is tried again by
`retry_notices` (the daemon calls it every poll), at most MAX_ATTEMPTS times.
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from newsletter import __version__
from newsletter.config import Settings
from newsletter.db import Database
from newsletter.delivery.member_mail import MemberMailFailed, notice_message, send_member_message
from newsletter.delivery.transports import Transport, make_transport
from newsletter.errors import NewsletterError
from newsletter.models import Notice as NoticeRow
from newsletter.models import utcnow

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
RETRY_AFTER = timedelta(minutes=2)  # a delivery attempt older than this is taken to have died
WEBHOOK_TIMEOUT = 10.0


@dataclass(frozen=True)
class Notice:
    """What to tell the comms team. `reason` is the one line that makes it new: the same kind,
    subject and reason is sent once."""

    kind: str  # at-risk, stale, missed, failed, uncertain, paused, sent, digest-review, digest-skipped, ...
    about: str  # what it concerns: "2026-12:east", "digest weekly 2026-12-01"
    reason: str
    subject: str
    paragraphs: tuple[str, ...]  # what happened, then what to run
    link: str | None = None
    link_label: str = "Open"
    data: dict[str, str] = field(default_factory=dict)  # extra fields for the webhook's JSON

    @property
    def body(self) -> str:
        return "\n\n".join(self.paragraphs)


@dataclass(frozen=True)
class NoticeResult:
    notice_id: int | None
    new: bool  # recorded by this call (False: told before, nothing sent now)
    emailed: bool = False
    webhook: bool = False
    problem: str | None = None  # why it did not (fully) go out


def _reason_key(reason: str) -> str:
    return hashlib.sha256(reason.encode("utf-8")).hexdigest()


def notify(db: Database, settings: Settings, notice: Notice, *, transport: Transport | None = None,
           now: datetime | None = None) -> NoticeResult:
    """Record the notice and send it, unless the same notice (kind, about, reason) was recorded
    before. Never raises for a failed email or webhook: that is logged, kept on the row and
    tried again by retry_notices."""
    moment = now or utcnow()
    row = NoticeRow(kind=notice.kind, about=notice.about[:200], reason_key=_reason_key(notice.reason),
                    reason=notice.reason, subject=notice.subject, body=notice.body, link=notice.link,
                    data=dict(notice.data), email_to=settings.notify_email, webhook_url=settings.notify_webhook_url,
                    attempts=1, claimed_at=moment, created_at=moment)
    try:
        with db.write_session() as session:
            session.add(row)
            session.flush()
            notice_id = row.id
    except IntegrityError:
        return NoticeResult(None, new=False)
    log.warning("notice: %s", notice.subject)
    return _deliver(db, settings, notice_id, notice, transport)


def _deliver(db: Database, settings: Settings, notice_id: int, notice: Notice,
             transport: Transport | None) -> NoticeResult:
    with db.session() as session:
        row = session.get(NoticeRow, notice_id)
        assert row is not None
        to, hook, emailed_at, hooked_at = row.email_to, row.webhook_url, row.emailed_at, row.webhook_at
    problems: list[str] = []
    emailed = emailed_at is not None
    if to and not emailed:
        try:
            message = notice_message(settings, to, notice.kind, notice.subject, list(notice.paragraphs),
                                     notice.link, notice.link_label)
            send_member_message(transport or make_transport(settings), settings, message, notice_id)
            emailed = True
        except (MemberMailFailed, NewsletterError) as exc:
            problems.append(f"email to {to}: {exc.message}")
    elif not to:
        problems.append("no notify_email setting: nobody was emailed")
    hooked = hooked_at is not None
    if hook and not hooked:
        try:
            _post(hook, notice, notice_id)
            hooked = True
        except OSError as exc:  # URLError, HTTPError and timeouts are OSErrors
            problems.append(f"webhook: {exc}")
    moment = utcnow()
    with db.write_session() as session:
        session.execute(update(NoticeRow).where(NoticeRow.id == notice_id).values(
            emailed_at=moment if emailed and not emailed_at else emailed_at,
            webhook_at=moment if hooked and not hooked_at else hooked_at,
            last_error="; ".join(problems) or None,
        ))
    for problem in problems:
        log.warning("notice %s (%s): %s", notice_id, notice.kind, problem)
    return NoticeResult(notice_id, True, emailed, hooked, "; ".join(problems) or None)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could take the notice to another host, or from https to http: refuse it."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _post(url: str, notice: Notice, notice_id: int) -> None:
    payload = {"id": notice_id, "kind": notice.kind, "about": notice.about, "reason": notice.reason,
               "subject": notice.subject, "text": notice.body, "link": notice.link, **notice.data}
    request = urllib.request.Request(
        url, data=json.dumps(payload, ensure_ascii=False).encode("utf-8"), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"newsletter/{__version__} (notices)"},
    )
    opener = urllib.request.build_opener(_NoRedirects)
    with opener.open(request, timeout=WEBHOOK_TIMEOUT) as response:  # noqa: S310 (https or loopback only)
        if not 200 <= response.status < 300:
            raise urllib.error.URLError(f"HTTP {response.status}")


def retry_notices(db: Database, settings: Settings, *, transport: Transport | None = None,
                  now: datetime | None = None) -> list[int]:
    """Send again the notices whose email or webhook failed (each by one process: a
    compare-and-set on its attempt count). Returns the ids tried."""
    moment = now or utcnow()
    with db.session() as session:
        rows = session.execute(select(NoticeRow.id, NoticeRow.attempts).where(
            NoticeRow.attempts < MAX_ATTEMPTS,
            or_(NoticeRow.claimed_at.is_(None), NoticeRow.claimed_at < moment - RETRY_AFTER),
            or_((NoticeRow.email_to.is_not(None)) & NoticeRow.emailed_at.is_(None),
                (NoticeRow.webhook_url.is_not(None)) & NoticeRow.webhook_at.is_(None)),
        ).order_by(NoticeRow.id)).all()
    tried = []
    for notice_id, attempts in rows:
        with db.write_session() as session:
            claimed = session.execute(update(NoticeRow).where(
                NoticeRow.id == notice_id, NoticeRow.attempts == attempts,
            ).values(attempts=attempts + 1, claimed_at=moment)).rowcount == 1
            row = session.get(NoticeRow, notice_id) if claimed else None
            notice = Notice(row.kind, row.about, row.reason, row.subject, tuple(row.body.split("\n\n")),
                            row.link, data=dict(row.data or {})) if row is not None else None
        if notice is not None:
            _deliver(db, settings, notice_id, notice, transport)
            tried.append(notice_id)
    return tried


@dataclass(frozen=True)
class NoticeView:
    id: int
    kind: str
    about: str
    reason: str
    subject: str
    created_at: datetime
    emailed_at: datetime | None
    webhook_at: datetime | None
    last_error: str | None


def list_notices(db: Database, *, about: str | None = None, kinds: Sequence[str] = (),
                 limit: int = 100) -> list[NoticeView]:
    """The latest notices (newest first), e.g. for the console."""
    query = select(NoticeRow).order_by(NoticeRow.id.desc()).limit(limit)
    if about is not None:
        query = query.where(NoticeRow.about == about)
    if kinds:
        query = query.where(NoticeRow.kind.in_(list(kinds)))
    with db.session() as session:
        return [NoticeView(r.id, r.kind, r.about, r.reason, r.subject, r.created_at, r.emailed_at,
                           r.webhook_at, r.last_error) for r in session.scalars(query).all()]


def notify_send_paused(db: Database, settings: Settings, edition: str, segment: str, reason: str, *,
                       resume_hint: str | None = None, transport: Transport | None = None) -> NoticeResult:
    """Tell the comms team that the send of edition:segment was paused (e.g. because of spam
    complaints). For whoever pauses sends; the same pause reason is told once."""
    about = f"{edition}:{segment}"
    paragraphs = [f"The send of edition {edition} to {segment} was paused: {reason}.",
                  "Members not reached yet get nothing until it is resumed."]
    if resume_hint:
        paragraphs.append(resume_hint)
    return notify(db, settings, Notice(
        kind="paused", about=about, reason=reason, subject=f"Paused: {about} ({reason})",
        paragraphs=tuple(paragraphs), data={"edition": edition, "segment": segment}), transport=transport)
