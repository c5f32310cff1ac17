"""The complaint guard: when the spam reports of a send run pass COMPLAINT_RATE of its delivered
messages (once at least MIN_DELIVERED were delivered), the rest of that edition pauses: no sender
or daemon claims another of its batches, and `send` refuses it, until a person resumes it
(`newsletter sends resume EDITION`, or the console). The comms address (`notify_email`) is told.

A pause is one `edition_pauses` row per edition. Resuming keeps the row (who, when), and the guard
does not pause a resumed edition again: the person who resumed it has seen the figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from newsletter.config import Settings
from newsletter.db import Database
from newsletter.delivery.notices import notify_send_paused
from newsletter.delivery.transports import Transport
from newsletter.errors import InputError, NotFound
from newsletter.models import Batch, BatchStatus, DeliveryEvent, EditionPause, SendRun, utcnow

COMPLAINT_RATE = 0.001  # 0.1 % of delivered: the ceiling Gmail and Yahoo set for bulk senders
MIN_DELIVERED = 1000  # below this, one or two reports say little


@dataclass(frozen=True)
class PauseView:
    edition: str
    reason: str
    paused_at: datetime
    paused_by: str
    resumed_at: datetime | None
    resumed_by: str | None

    @property
    def active(self) -> bool:
        return self.resumed_at is None


def _view(row: EditionPause) -> PauseView:
    return PauseView(row.edition, row.reason, row.paused_at, row.paused_by, row.resumed_at, row.resumed_by)


def paused_runs() -> ColumnElement[bool]:
    """A clause on Batch: its run belongs to a paused edition (senders leave such batches alone)."""
    paused = (select(SendRun.id).join(EditionPause, EditionPause.edition == SendRun.edition)
              .where(EditionPause.resumed_at.is_(None)))
    return Batch.run_id.in_(paused)


def edition_pause(db: Database, edition: str) -> PauseView | None:
    with db.session() as session:
        row = session.get(EditionPause, edition)
        return _view(row) if row is not None else None


def list_pauses(db: Database) -> list[PauseView]:
    with db.session() as session:
        return [_view(r) for r in session.scalars(select(EditionPause).order_by(EditionPause.paused_at.desc()))]


def pause_edition(db: Database, edition: str, *, actor: str, reason: str) -> bool:
    """Pause the edition's remaining batches; False when it was already paused (or, for the
    guard, resumed by a person earlier)."""
    insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
    with db.write_session() as session:
        inserted = session.scalar(insert(EditionPause).values(
            edition=edition, reason=reason[:2000], paused_at=utcnow(), paused_by=actor[:200])
            .on_conflict_do_nothing(index_elements=[EditionPause.edition]).returning(EditionPause.edition))
        return inserted is not None


def resume_edition(db: Database, edition: str, *, actor: str) -> PauseView:
    """Lift the pause; the remaining batches go with the next `send` of the edition."""
    if not actor.strip():
        raise InputError("say who is resuming the edition")
    with db.write_session() as session:
        row = session.get(EditionPause, edition, with_for_update=True)
        if row is None or row.resumed_at is not None:
            raise NotFound(f"edition {edition} is not paused", hint="see `newsletter sends list`")
        row.resumed_at, row.resumed_by = utcnow(), actor.strip()[:200]
        return _view(row)


@dataclass(frozen=True)
class ComplaintFigures:
    run_id: int
    edition: str
    segment: str
    delivered: int
    spam_reports: int

    @property
    def over(self) -> bool:
        return self.delivered >= MIN_DELIVERED and self.spam_reports > COMPLAINT_RATE * self.delivered


def complaint_figures(db: Database, run_ids: Sequence[int]) -> list[ComplaintFigures]:
    if not run_ids:
        return []
    with db.session() as session:
        runs = session.execute(select(SendRun.id, SendRun.edition, SendRun.segment)
                               .where(SendRun.id.in_(list(run_ids)))).all()
        counts = session.execute(
            select(DeliveryEvent.run_id, DeliveryEvent.event, func.count())
            .where(DeliveryEvent.run_id.in_(list(run_ids)), DeliveryEvent.event.in_(["delivered", "spamreport"]))
            .group_by(DeliveryEvent.run_id, DeliveryEvent.event)).all()
    by = {(int(r), e): int(n) for r, e, n in counts}
    return [ComplaintFigures(int(rid), ed, seg, by.get((int(rid), "delivered"), 0), by.get((int(rid), "spamreport"), 0))
            for rid, ed, seg in runs]


def remaining_recipients(db: Database, edition: str) -> int:
    with db.session() as session:
        return int(session.scalar(
            select(func.coalesce(func.sum(Batch.recipient_count), 0)).join(SendRun, SendRun.id == Batch.run_id)
            .where(SendRun.edition == edition, Batch.status == BatchStatus.PENDING.value)) or 0)


def guard_complaints(db: Database, run_ids: Sequence[int], *, settings: Settings | None = None,
                     transport: Transport | None = None) -> list[str]:
    """Pause each edition whose run passed the complaint rate; returns the editions paused now.
    With settings and a transport, the comms address is emailed about each."""
    paused: list[str] = []
    for figures in complaint_figures(db, run_ids):
        if not figures.over or figures.edition in paused:
            continue
        rate = 100 * figures.spam_reports / figures.delivered
        reason = (f"complaint guard: {figures.spam_reports:,} spam reports for {figures.delivered:,} delivered "
                  f"({rate:.2f} %, above {100 * COMPLAINT_RATE:g} %) in {figures.edition}:{figures.segment} "
                  f"(run {figures.run_id})")
        if not pause_edition(db, figures.edition, actor="complaint-guard", reason=reason):
            continue
        paused.append(figures.edition)
        if settings is not None:
            left = remaining_recipients(db, figures.edition)
            notify_send_paused(db, settings, figures.edition, figures.segment, reason,
                               resume_hint=f"{left:,} recipients of the edition are waiting. Look at the report, then "
                                           f"resume it in the console or with `newsletter sends resume "
                                           f"{figures.edition}`, and send it again.", transport=transport)
    return paused
