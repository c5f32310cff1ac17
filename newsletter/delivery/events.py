"""SendGrid's Event Webhook: verify a signed POST, store each event once, act on it.

    verify_signature(checker, signature, timestamp, body)   ECDSA (P-256, SHA-256) over timestamp + raw body
    ingest_events(db, events)                               store, change statuses, settle batches

- Stored once per `sg_event_id` (SendGrid retries a POST that did not get a 2xx): a replayed POST
  changes nothing and counts nothing twice. Events keep no address: the member is named by id.
- `bounce`, `dropped` (for a bounced, invalid, unsubscribed or spam-reporting address),
  `spamreport`, `unsubscribe` and `group_unsubscribe` change an active member's status, with an
  audit row (actor `webhook`) that names the event, never the provider's free text.
- `processed`, `delivered`, `deferred`, `open` and `click` are counted per send run (= segment);
  an open flagged `sg_machine_open` (Apple Mail Privacy Protection fetching the pixel) is counted
  apart and never as a person.
- Our custom_args (`run`, `batch`, `subscriber_id`; `edition` and `segment` for sends made before
  run and batch were added) tie each event to its batch: any event for a recipient of an
  **uncertain** batch proves SendGrid took that request, so the batch is marked delivered
  (`mark_batch_delivered`, audited) and `--resend-uncertain` leaves it alone.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from sendgrid.helpers.eventwebhook import EventWebhook
from sqlalchemy import func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from newsletter.config import Settings
from newsletter.db import Database
from newsletter.delivery.complaints import guard_complaints
from newsletter.delivery.recovery import mark_batch_delivered
from newsletter.delivery.send import _mark_runs
from newsletter.delivery.transports import Transport
from newsletter.errors import ConfigError, InputError
from newsletter.members import normalise_email, stop_active
from newsletter.models import (
    Batch,
    BatchStatus,
    DeliveryEvent,
    Recipient,
    SendRun,
    Subscriber,
    SubscriberStatus,
    utcnow,
)

MAX_AGE_SECONDS = 300  # a signed POST older than 5 minutes is refused (replay of a captured request)
COUNTED = ("processed", "delivered", "deferred", "open", "click", "bounce", "dropped", "spamreport",
           "unsubscribe", "group_unsubscribe")
STATUS_BY_EVENT = {
    "bounce": SubscriberStatus.BOUNCED,
    "spamreport": SubscriberStatus.COMPLAINED,
    "unsubscribe": SubscriberStatus.UNSUBSCRIBED,
    "group_unsubscribe": SubscriberStatus.UNSUBSCRIBED,
}
# SendGrid drops a message to an address on one of its suppression lists; these reasons say which.
DROPPED_STATUS = (("unsubscribed", SubscriberStatus.UNSUBSCRIBED), ("spam", SubscriberStatus.COMPLAINED),
                  ("bounced", SubscriberStatus.BOUNCED), ("invalid", SubscriberStatus.BOUNCED))
_CHUNK = 2000  # rows per INSERT and ids per IN (…) query


# ---------------------------------------------------------------- signature


def signature_checker(public_key: str | None) -> EventWebhook:
    """The verifier for the key SendGrid shows (base64 DER); ConfigError when it is unusable."""
    if not public_key:
        raise ConfigError("no SendGrid webhook verification key",
                          hint="set NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY to the key shown in SendGrid's "
                               "Mail Settings → Event Webhook → Signature Verification")
    try:
        return EventWebhook(public_key)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key: {exc}") from None


def verify_signature(checker: EventWebhook, signature: str | None, timestamp: str | None, body: bytes,
                     now: datetime | None = None) -> bool:
    """True only for a valid signature over `timestamp` + the raw body, made less than five
    minutes ago (and not in the future beyond the same margin)."""
    if not signature or not timestamp or not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    age = (now or utcnow()).timestamp() - int(timestamp)
    if not -MAX_AGE_SECONDS <= age <= MAX_AGE_SECONDS:
        return False
    try:
        payload = body.decode("utf-8")
        base64.b64decode(signature, validate=True)
        return bool(checker.verify_signature(payload, signature, timestamp))
    except (UnicodeDecodeError, binascii.Error, ValueError, InvalidSignature):
        return False


# ---------------------------------------------------------------- ingestion


@dataclass(frozen=True)
class IngestResult:
    received: int
    stored: int
    duplicates: int
    ignored: int  # not an event we can use (no sg_event_id or event name)
    status_changes: int
    batches_settled: tuple[tuple[int, int], ...] = field(default_factory=tuple)  # (run id, batch seq)
    editions_paused: tuple[str, ...] = ()  # by the complaint guard (complaints.py)

    def as_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["batches_settled"] = [list(x) for x in self.batches_settled]
        data["editions_paused"] = list(self.editions_paused)
        return data


@dataclass
class _Event:
    sg_event_id: str
    event: str
    run_id: int | None
    seq: int | None
    subscriber_id: int | None
    edition: str | None
    segment: str | None
    email: str | None
    machine_open: bool
    occurred_at: datetime | None
    reason: str
    bounce_type: str
    batch_id: int | None = None


def _int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


def _text(value: object, limit: int) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def _parse(item: object) -> _Event | None:
    if not isinstance(item, dict):
        return None
    event_id, name = _text(item.get("sg_event_id"), 100), _text(item.get("event"), 30)
    if event_id is None or name is None:
        return None
    stamp = _int(item.get("timestamp"))
    return _Event(
        sg_event_id=event_id, event=name, run_id=_int(item.get("run")), seq=_int(item.get("batch")),
        subscriber_id=_int(item.get("subscriber_id")), edition=_text(item.get("edition"), 100),
        segment=_text(item.get("segment"), 100), email=_text(item.get("email"), 320),
        machine_open=name == "open" and item.get("sg_machine_open") in (True, "true", 1),
        occurred_at=datetime.fromtimestamp(stamp, UTC) if stamp is not None and stamp < 10**11 else None,
        reason=str(item.get("reason") or "")[:200].lower(), bounce_type=str(item.get("type") or "")[:20],
    )


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _resolve_runs(session: Session, events: list[_Event]) -> None:
    """Fill run ids from (edition, segment) and batch ids from (run, seq), or from the member's
    frozen recipient row when the event names no batch."""
    pairs = {(e.edition, e.segment) for e in events if e.run_id is None and e.edition and e.segment}
    if pairs:
        runs = {(ed, seg): rid for rid, ed, seg in session.execute(
            select(SendRun.id, SendRun.edition, SendRun.segment).where(
                tuple_(SendRun.edition, SendRun.segment).in_(list(pairs))))}
        for e in events:
            if e.run_id is None and e.edition and e.segment:
                e.run_id = runs.get((e.edition, e.segment))
    wanted = sorted({(e.run_id, e.seq) for e in events if e.run_id is not None and e.seq is not None})
    batches: dict[tuple[int, int], int] = {}
    for chunk in _chunks(wanted):
        batches.update({(r, s): bid for bid, r, s in session.execute(
            select(Batch.id, Batch.run_id, Batch.seq).where(tuple_(Batch.run_id, Batch.seq).in_(list(chunk))))})
    for e in events:
        if e.run_id is not None and e.seq is not None:
            e.batch_id = batches.get((e.run_id, e.seq))
    # only events that name no batch (sends made before custom_args had it) are placed by recipient
    unplaced = sorted({(e.run_id, e.subscriber_id) for e in events
                       if e.seq is None and e.run_id is not None and e.subscriber_id is not None})
    placed: dict[tuple[int, int], int] = {}
    for chunk in _chunks(unplaced):
        placed.update({(r, s): bid for r, s, bid in session.execute(
            select(Recipient.run_id, Recipient.subscriber_id, Recipient.batch_id).where(
                tuple_(Recipient.run_id, Recipient.subscriber_id).in_(list(chunk)), Recipient.batch_id.is_not(None)))})
    for e in events:
        if e.seq is None and e.run_id is not None and e.subscriber_id is not None:
            e.batch_id = placed.get((e.run_id, e.subscriber_id))


def _store(session: Session, events: list[_Event]) -> set[str]:
    """Insert the events not stored before; returns the ids inserted now."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    received = utcnow()
    new: set[str] = set()
    if session.get_bind().dialect.name == "postgresql":
        return _store_postgres(session, events, received)
    table = DeliveryEvent.__table__
    # one executemany (batched into multi-row INSERTs by SQLAlchemy's insertmanyvalues) per chunk;
    # RETURNING gives only the rows inserted now, so a replay is recognised row by row
    stmt = insert(table).on_conflict_do_nothing(index_elements=["sg_event_id"]).returning(table.c.sg_event_id)
    connection = session.connection()
    for chunk in _chunks(events):
        rows = [{"sg_event_id": e.sg_event_id, "event": e.event, "run_id": e.run_id, "batch_id": e.batch_id,
                 "subscriber_id": e.subscriber_id, "machine_open": e.machine_open, "occurred_at": e.occurred_at,
                 "received_at": received} for e in chunk]
        new.update(connection.execute(stmt, rows).scalars())
    return new


_UNNEST = (
    "INSERT INTO delivery_events (sg_event_id, event, run_id, batch_id, subscriber_id, machine_open, occurred_at, "
    "received_at) SELECT * FROM unnest(%s::varchar[], %s::varchar[], %s::bigint[], %s::bigint[], %s::bigint[], "
    "%s::boolean[], %s::timestamptz[], %s::timestamptz[]) ON CONFLICT (sg_event_id) DO NOTHING RETURNING sg_event_id"
)


def _store_postgres(session: Session, events: list[_Event], received: datetime) -> set[str]:
    """PostgreSQL: one INSERT … SELECT FROM unnest(arrays) per 10,000 events. A multi-row VALUES
    statement of that size costs more to prepare (parameter conversion) than to run."""
    new: set[str] = set()
    connection = session.connection()
    for chunk in _chunks(events, 10_000):
        columns = ([e.sg_event_id for e in chunk], [e.event for e in chunk], [e.run_id for e in chunk],
                   [e.batch_id for e in chunk], [e.subscriber_id for e in chunk], [e.machine_open for e in chunk],
                   [e.occurred_at for e in chunk], [received] * len(chunk))
        new.update(row[0] for row in connection.exec_driver_sql(_UNNEST, columns))
    return new


def _new_status(e: _Event) -> SubscriberStatus | None:
    if e.event == "dropped":
        return next((status for word, status in DROPPED_STATUS if word in e.reason), None)
    return STATUS_BY_EVENT.get(e.event)


# when one POST holds several stops for a member, the strongest is kept
_STRENGTH = {SubscriberStatus.UNSUBSCRIBED: 1, SubscriberStatus.BOUNCED: 2, SubscriberStatus.COMPLAINED: 3}


def _change_statuses(session: Session, events: list[_Event]) -> int:
    wanted = [(e, status) for e in events if (status := _new_status(e)) is not None]
    if not wanted:
        return 0
    keys: dict[str, str] = {}
    for e, _ in wanted:
        if e.subscriber_id is None and e.email:
            try:
                keys[e.email] = normalise_email(e.email).key
            except InputError:
                continue
    by_key: dict[str, int] = {}
    for chunk in _chunks(sorted(set(keys.values()))):
        by_key.update({k: i for i, k in session.execute(
            select(Subscriber.id, Subscriber.email_key).where(Subscriber.email_key.in_(list(chunk))))})
    changes: dict[int, tuple[SubscriberStatus, str]] = {}
    for e, status in wanted:
        member = e.subscriber_id if e.subscriber_id is not None else by_key.get(keys.get(e.email or "", ""))
        if member is None:
            continue
        detail = f" ({e.bounce_type})" if e.event == "bounce" and e.bounce_type else ""
        if member not in changes or _STRENGTH[status] > _STRENGTH[changes[member][0]]:
            changes[member] = (status, f"SendGrid event: {e.event}{detail}")
    return stop_active(session, changes, actor="webhook")


def _settle(db: Database, events: list[_Event]) -> tuple[tuple[int, int], ...]:
    """Mark delivered each uncertain batch that an event of this POST belongs to."""
    batch_ids = sorted({e.batch_id for e in events if e.batch_id is not None})
    if not batch_ids:
        return ()
    uncertain: list[tuple[int, int, int]] = []
    with db.session() as session:
        for chunk in _chunks(batch_ids):
            uncertain += [tuple(r) for r in session.execute(  # type: ignore[misc]
                select(Batch.id, Batch.run_id, Batch.seq).where(
                    Batch.id.in_(list(chunk)), Batch.status == BatchStatus.UNCERTAIN.value))]
    settled = []
    for batch_id, run_id, seq in uncertain:
        proof = next(e for e in events if e.batch_id == batch_id)
        change = mark_batch_delivered(db, run_id, seq, actor="webhook",
                                      reason=f"SendGrid sent a '{proof.event}' event for a recipient of this batch "
                                             f"(event {proof.sg_event_id})")
        if change.changed:
            settled.append((run_id, seq))
    for run_id in sorted({r for r, _ in settled}):
        _mark_runs(db, [run_id], "", starting=False)
    return tuple(settled)


def ingest_events(db: Database, payload: Sequence[object], *, settings: Settings | None = None,
                  transport: Transport | None = None) -> IngestResult:
    """Store and act on one POST's events (see the module docstring), then run the complaint guard
    over the runs they belong to (with settings and a transport, a pause is emailed to the comms
    address). Idempotent."""
    parsed = [e for e in (_parse(item) for item in payload) if e is not None]
    unique = list({e.sg_event_id: e for e in parsed}.values())
    with db.write_session() as session:
        _resolve_runs(session, unique)
        new_ids = _store(session, unique)
        fresh = [e for e in unique if e.sg_event_id in new_ids]
        changes = _change_statuses(session, fresh)
    settled = _settle(db, unique)
    complained = sorted({e.run_id for e in fresh if e.event == "spamreport" and e.run_id is not None})
    paused = guard_complaints(db, complained, settings=settings, transport=transport)
    return IngestResult(len(payload), len(new_ids), len(unique) - len(new_ids), len(payload) - len(parsed),
                        changes, settled, tuple(paused))


# ---------------------------------------------------------------- figures


@dataclass(frozen=True)
class EventCounts:
    processed: int = 0
    delivered: int = 0
    deferred: int = 0
    opens: int = 0  # by people (machine opens excluded)
    machine_opens: int = 0  # Apple Mail Privacy Protection
    unique_openers: int = 0
    clicks: int = 0
    bounces: int = 0
    dropped: int = 0
    spam_reports: int = 0
    unsubscribes: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def event_counts(db: Database, run_ids: Sequence[int]) -> dict[int, EventCounts]:
    """SendGrid's events per run: one GROUP BY, plus distinct human openers."""
    if not run_ids:
        return {}
    with db.session() as session:
        rows = session.execute(
            select(DeliveryEvent.run_id, DeliveryEvent.event, DeliveryEvent.machine_open, func.count())
            .where(DeliveryEvent.run_id.in_(list(run_ids)))
            .group_by(DeliveryEvent.run_id, DeliveryEvent.event, DeliveryEvent.machine_open)
        ).all()
        openers = dict(session.execute(
            select(DeliveryEvent.run_id, func.count(func.distinct(DeliveryEvent.subscriber_id)))
            .where(DeliveryEvent.run_id.in_(list(run_ids)),
                   DeliveryEvent.event == "open", DeliveryEvent.machine_open.is_(False))
            .group_by(DeliveryEvent.run_id)
        ).all())
    values: dict[int, dict[str, int]] = {rid: {} for rid in run_ids}
    names = {"processed": "processed", "delivered": "delivered", "deferred": "deferred", "click": "clicks",
             "bounce": "bounces", "dropped": "dropped", "spamreport": "spam_reports", "unsubscribe": "unsubscribes",
             "group_unsubscribe": "unsubscribes"}
    for run_id, event, machine, count in rows:
        target = values.setdefault(int(run_id), {})
        key = ("machine_opens" if machine else "opens") if event == "open" else names.get(event)
        if key:
            target[key] = target.get(key, 0) + int(count)
    return {rid: EventCounts(**v, unique_openers=int(openers.get(rid, 0))) for rid, v in values.items()}
