"""What happened after a send, per edition and segment, for the console's reports:

    edition_report(db, "2026-12")   audience, accepted, delivered, deferred, bounced, spam reports,
                                    unsubscribes, human opens, clicks, uncertain batches, per segment
    event_timeline(db, run_ids)     the same events hour by hour (UTC), for charts over time

The figures come from the send runs and batches (what we handed to SendGrid) and from the Event
Webhook's rows (what SendGrid saw afterwards); opens by Apple Mail Privacy Protection are left out
of the human opens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.sql.elements import ColumnElement

from newsletter.db import Database
from newsletter.delivery.complaints import COMPLAINT_RATE, PauseView, edition_pause
from newsletter.delivery.events import event_counts
from newsletter.delivery.send import run_report
from newsletter.models import Batch, BatchStatus, DeliveryEvent, SendRun

TIMELINE_EVENTS = ("delivered", "deferred", "bounce", "spamreport", "unsubscribe", "open", "click")


@dataclass(frozen=True)
class SegmentFigures:
    segment: str
    run_id: int | None
    status: str
    audience: int = 0
    accepted: int = 0
    failed: int = 0
    pending: int = 0
    delivered: int = 0
    deferred: int = 0
    bounced: int = 0
    spam_reports: int = 0
    unsubscribes: int = 0
    human_opens: int = 0  # distinct members who opened (machine opens excluded)
    clicks: int = 0
    uncertain_batches: int = 0
    started_at: datetime | None = None

    @property
    def complaint_rate(self) -> float | None:
        return self.spam_reports / self.delivered if self.delivered else None


@dataclass(frozen=True)
class EditionReport:
    edition: str
    segments: tuple[SegmentFigures, ...]
    pause: PauseView | None
    complaint_ceiling: float = COMPLAINT_RATE
    totals: SegmentFigures = field(default_factory=lambda: SegmentFigures("all", None, ""))


def _sum(edition: str, rows: Sequence[SegmentFigures]) -> SegmentFigures:
    keys = ("audience", "accepted", "failed", "pending", "delivered", "deferred", "bounced", "spam_reports",
            "unsubscribes", "human_opens", "clicks", "uncertain_batches")
    return SegmentFigures("all segments", None, "", **{k: sum(getattr(r, k) for r in rows) for k in keys})


def reported_editions(db: Database) -> list[str]:
    """Editions with a send run, newest first."""
    with db.session() as session:
        rows = session.execute(select(SendRun.edition, func.min(SendRun.created_at)).group_by(SendRun.edition)).all()
    return [e for e, _ in sorted(rows, key=lambda r: r[1], reverse=True)]


def edition_report(db: Database, edition: str) -> EditionReport:
    """NotFound when the edition has no send run."""
    reports = run_report(db, edition)
    ids = [r.run_id for r in reports if r.run_id is not None]
    counts = event_counts(db, ids)
    with db.session() as session:
        uncertain = dict(session.execute(
            select(Batch.run_id, func.count()).where(Batch.run_id.in_(ids), Batch.status == BatchStatus.UNCERTAIN.value)
            .group_by(Batch.run_id)).all())
    rows = []
    for r in reports:
        c = counts.get(r.run_id) if r.run_id is not None else None
        rows.append(SegmentFigures(
            r.segment, r.run_id, r.status, r.audience, r.accepted, r.failed, r.pending + r.in_flight,
            c.delivered if c else 0, c.deferred if c else 0, c.bounces if c else 0, c.spam_reports if c else 0,
            c.unsubscribes if c else 0, c.unique_openers if c else 0, c.clicks if c else 0,
            int(uncertain.get(r.run_id, 0)), r.started_at))
    return EditionReport(edition, tuple(rows), edition_pause(db, edition), COMPLAINT_RATE, _sum(edition, rows))


@dataclass(frozen=True)
class TimePoint:
    at: datetime  # the start of the hour, UTC
    counts: dict[str, int]


def _hour(db: Database, column: ColumnElement[datetime]) -> ColumnElement[str]:
    if db.dialect == "postgresql":
        return func.to_char(func.date_trunc("hour", func.timezone("UTC", column)), "YYYY-MM-DD HH24")
    return func.strftime("%Y-%m-%d %H", column)


MAX_FILLED_HOURS = 24 * 31  # beyond a month, quiet hours are left out rather than drawn one by one


def event_timeline(db: Database, run_ids: Sequence[int]) -> list[TimePoint]:
    """Events per hour (UTC) for these runs, oldest first, every hour from the first event to the
    last (quiet hours as zeros, so a chart's time axis is even)."""
    if not run_ids:
        return []
    moment = func.coalesce(DeliveryEvent.occurred_at, DeliveryEvent.received_at)
    hour = _hour(db, moment)
    with db.session() as session:
        rows = session.execute(
            select(hour, DeliveryEvent.event, func.count())
            .where(DeliveryEvent.run_id.in_(list(run_ids)), DeliveryEvent.event.in_(TIMELINE_EVENTS),
                   DeliveryEvent.machine_open.is_(False))
            .group_by(hour, DeliveryEvent.event)).all()
    points: dict[str, dict[str, int]] = {}
    for bucket, event, count in rows:
        points.setdefault(str(bucket), {})[event] = int(count)
    found = [TimePoint(datetime.strptime(k, "%Y-%m-%d %H").replace(tzinfo=UTC), v) for k, v in sorted(points.items())]
    if len(found) < 2 or (found[-1].at - found[0].at) > timedelta(hours=MAX_FILLED_HOURS):
        return found
    by_hour = {p.at: p for p in found}
    hours = int((found[-1].at - found[0].at) / timedelta(hours=1)) + 1
    return [by_hour.get(found[0].at + timedelta(hours=h), TimePoint(found[0].at + timedelta(hours=h), {}))
            for h in range(hours)]
