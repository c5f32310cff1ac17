"""Settle batches by hand or from SendGrid's events: mark an uncertain batch delivered, or put one
batch back in the queue to be sent again. Every change is one compare-and-set UPDATE plus one
`batch_audit` row (when, who, why) in the same transaction, so two people (or a person and the
webhook) can never both settle the same batch, and nothing is settled without a trace.

    mark_batch_delivered(db, run_id, seq, actor="webhook", reason="processed event for member 17")
    requeue_batch(db, run_id, seq, actor="cli:ann", reason="not in the Activity feed")

The CLI (`sends resolve`), the webhook (on `processed` / `delivered` events of an uncertain batch's
recipients) and the console call these same functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update

from newsletter.db import Database
from newsletter.errors import InputError, NotFound
from newsletter.models import Batch, BatchAudit, BatchStatus, Recipient, utcnow

MARK_DELIVERED = "mark-delivered"
RESEND = "resend"
# A batch can be marked delivered only while nobody knows whether SendGrid took it.
DELIVERABLE_FROM = (BatchStatus.UNCERTAIN.value,)
# A batch can be sent again when it may not have arrived (uncertain) or certainly did not (failed).
RESENDABLE_FROM = (BatchStatus.UNCERTAIN.value, BatchStatus.FAILED.value)
MAX_REASON = 2000


@dataclass(frozen=True)
class BatchView:
    """One batch as the CLI, the webhook and the console show it."""

    run_id: int
    seq: int
    status: str
    recipients: int
    attempts: int
    response_status: int | None
    message_id: str | None
    last_error: str | None
    updated_at: datetime | None

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["updated_at"] = self.updated_at.isoformat() if self.updated_at else None
        return data


@dataclass(frozen=True)
class BatchChange:
    """What a recovery call did. changed is False when the batch was already in the wanted state
    (e.g. the webhook's second `delivered` event for the same batch): calling again is harmless."""

    run_id: int
    seq: int
    old_status: str
    new_status: str
    changed: bool


@dataclass(frozen=True)
class AuditRow:
    at: datetime
    run_id: int
    seq: int
    actor: str
    action: str
    old_status: str
    new_status: str
    reason: str


def _view(batch: Batch) -> BatchView:
    return BatchView(batch.run_id, batch.seq, batch.status, batch.recipient_count, batch.attempts,
                     batch.response_status, batch.message_id, batch.last_error, batch.updated_at)


def list_batches(db: Database, run_id: int, state: str | None = None) -> list[BatchView]:
    """The batches of one run, in order; only those in `state` when given."""
    if state is not None and state not in {s.value for s in BatchStatus}:
        raise InputError(f"unknown batch state {state!r}",
                         hint="use one of " + ", ".join(s.value for s in BatchStatus))
    query = select(Batch).where(Batch.run_id == run_id).order_by(Batch.seq)
    if state is not None:
        query = query.where(Batch.status == state)
    with db.session() as session:
        batches = list(session.scalars(query))
        if not batches and state is None:
            raise NotFound(f"run {run_id} has no batches", hint="see `newsletter sends list` for the run ids")
    return [_view(b) for b in batches]


def get_batch(db: Database, run_id: int, seq: int) -> BatchView:
    with db.session() as session:
        batch = session.scalar(select(Batch).where(Batch.run_id == run_id, Batch.seq == seq))
    if batch is None:
        raise NotFound(f"run {run_id} has no batch {seq}", hint=f"see `newsletter sends batches {run_id}`")
    return _view(batch)


def batch_of_recipient(db: Database, edition: str, subscriber_id: int) -> tuple[int, int] | None:
    """(run id, batch seq) that carried this member's copy of the edition, for events whose
    custom_args name no run or batch (sent before they did)."""
    with db.session() as session:
        row = session.execute(
            select(Batch.run_id, Batch.seq).join(Recipient, Recipient.batch_id == Batch.id)
            .where(Recipient.edition == edition, Recipient.subscriber_id == subscriber_id)
        ).first()
    return None if row is None else (int(row[0]), int(row[1]))


def _check_words(actor: str, reason: str) -> tuple[str, str]:
    actor, reason = actor.strip(), reason.strip()
    if not actor:
        raise InputError("say who is making this change (actor)")
    if not reason:
        raise InputError("say why (a reason is kept in the batch audit)", hint='e.g. --reason "seen in the Activity feed"')
    return actor[:200], reason[:MAX_REASON]


def _change(db: Database, run_id: int, seq: int, *, allowed: tuple[str, ...], target: str, action: str,
            actor: str, reason: str, values: dict[str, object]) -> BatchChange:
    actor, reason = _check_words(actor, reason)
    at = utcnow()
    with db.write_session() as session:
        batch = session.execute(
            select(Batch.id, Batch.status).where(Batch.run_id == run_id, Batch.seq == seq)
        ).first()
        if batch is None:
            raise NotFound(f"run {run_id} has no batch {seq}", hint=f"see `newsletter sends batches {run_id}`")
        if batch.status == target:
            return BatchChange(run_id, seq, batch.status, target, False)
        if batch.status not in allowed:
            raise InputError(
                f"batch {seq} of run {run_id} is {batch.status}; only {' or '.join(allowed)} batches can be "
                + ("marked delivered" if action == MARK_DELIVERED else "sent again"),
                hint=f"see `newsletter sends batches {run_id}`")
        done = session.execute(
            update(Batch).where(Batch.id == batch.id, Batch.status == batch.status)
            .values(status=target, updated_at=at, **values)
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]  # changed under us: report what it is now
            current = session.scalar(select(Batch.status).where(Batch.id == batch.id)) or batch.status
            return BatchChange(run_id, seq, current, current, False)
        session.execute(insert(BatchAudit).values(
            at=at, run_id=run_id, batch_id=batch.id, seq=seq, actor=actor, action=action,
            old_status=batch.status, new_status=target, reason=reason))
    return BatchChange(run_id, seq, batch.status, target, True)


def mark_batch_delivered(db: Database, run_id: int, seq: int, *, actor: str, reason: str) -> BatchChange:
    """An uncertain batch did reach SendGrid (its events arrived, or a person saw it in the Activity
    feed): it becomes accepted and is never sent again. Idempotent; refuses other states."""
    return _change(db, run_id, seq, allowed=DELIVERABLE_FROM, target=BatchStatus.ACCEPTED.value,
                   action=MARK_DELIVERED, actor=actor, reason=reason,
                   values={"last_error": None, "not_before": None,
                           "response_body": f"marked delivered by {actor.strip()[:200]}"})


def requeue_batch(db: Database, run_id: int, seq: int, *, actor: str, reason: str) -> BatchChange:
    """An uncertain or failed batch goes back to pending; the next `send` (or the daemon) sends it
    again. Idempotent for a batch already pending."""
    return _change(db, run_id, seq, allowed=RESENDABLE_FROM, target=BatchStatus.PENDING.value,
                   action=RESEND, actor=actor, reason=reason, values={"not_before": None, "attempts": 0})


def batch_audit(db: Database, run_id: int) -> list[AuditRow]:
    """Every recovery change to one run's batches, oldest first."""
    with db.session() as session:
        rows = session.scalars(select(BatchAudit).where(BatchAudit.run_id == run_id).order_by(BatchAudit.id))
        return [AuditRow(r.at, r.run_id, r.seq, r.actor, r.action, r.old_status, r.new_status, r.reason) for r in rows]
