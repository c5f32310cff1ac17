"""Freeze an edition's audience: one recipient row per member, batches of at most 1,000.

Everything here is set-based (INSERT ... SELECT, UPDATE ... FROM): no per-member Python, so a
1,000,000-member list freezes in seconds. Freezing is idempotent: a segment whose run exists is
left as it is (a resumed send uses the audience frozen the first time).

Each member gets at most one variant per edition: the caller passes each segment's *assigned*
clause (its rule AND NOT any higher-priority rule), and (edition, subscriber_id) is unique, so a
member already frozen for another segment of the edition is skipped, never sent twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, func, insert, literal, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.db import Database
from newsletter.errors import DeliveryError
from newsletter.mailsend import MAX_PERSONALIZATIONS, VariantToSend
from newsletter.models import Batch, Recipient, RunStatus, SendRun, Subscriber, SubscriberStatus

FIRST_NAME_FALLBACK = "colleague"  # "Dear -first_name-," → "Dear colleague,"
EXCLUDED_STATUSES = tuple(s.value for s in SubscriberStatus if s is not SubscriberStatus.ACTIVE)

Assignment = tuple[str, ColumnElement[bool]]


@dataclass(frozen=True)
class SegmentPlan:
    segment: str
    audience: int
    excluded: dict[str, int] = field(default_factory=dict)
    frozen: bool = False  # True when the audience was frozen by an earlier run


@dataclass(frozen=True)
class AudiencePlan:
    """What a send will do, for the confirmation prompt."""

    edition: str
    segments: tuple[SegmentPlan, ...]

    @property
    def audience(self) -> int:
        return sum(s.audience for s in self.segments)

    @property
    def excluded(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for s in self.segments:
            for reason, n in s.excluded.items():
                total[reason] = total.get(reason, 0) + n
        return total


def _clause_for(assignments: Sequence[Assignment], segment: str) -> ColumnElement[bool]:
    for name, clause in assignments:
        if name == segment:
            return clause
    raise DeliveryError(f"segment {segment!r} has no audience rule", hint="check subscribers/segments.yaml")


def _excluded(session: Session, clause: ColumnElement[bool]) -> dict[str, int]:
    rows = session.execute(
        select(Subscriber.status, func.count())
        .where(clause, Subscriber.status != SubscriberStatus.ACTIVE.value)
        .group_by(Subscriber.status)
    ).all()
    counts = {status: 0 for status in EXCLUDED_STATUSES}
    counts.update({status: n for status, n in rows})
    return counts


def _eligible(clause: ColumnElement[bool]) -> ColumnElement[bool]:
    return clause & (Subscriber.status == SubscriberStatus.ACTIVE.value) & Subscriber.email.is_not(None)


def plan_audience(
    db: Database, edition: str, segments: Sequence[str], assignments: Sequence[Assignment]
) -> AudiencePlan:
    """Counts per segment (frozen runs report their frozen audience), without writing anything."""
    plans = []
    with db.session() as session:
        for segment in segments:
            run = session.scalar(select(SendRun).where(SendRun.edition == edition, SendRun.segment == segment))
            if run is not None:
                plans.append(SegmentPlan(segment, run.audience_count, dict(run.excluded), True))
                continue
            clause = _clause_for(assignments, segment)
            count = session.scalar(select(func.count()).select_from(Subscriber).where(_eligible(clause)))
            plans.append(SegmentPlan(segment, int(count or 0), _excluded(session, clause)))
    return AudiencePlan(edition, tuple(plans))


def _json_object(dialect: str, *pairs: object) -> ColumnElement[object]:
    fn = func.json_build_object if dialect == "postgresql" else func.json_object
    return fn(*pairs)  # type: ignore[no-any-return]


def _insert_recipients(session: Session, dialect: str, run_id: int, edition: str, clause: ColumnElement[bool]) -> None:
    first = func.coalesce(func.nullif(func.trim(Subscriber.first_name), ""), FIRST_NAME_FALLBACK)
    full = func.coalesce(Subscriber.first_name, "") + " " + func.coalesce(Subscriber.last_name, "")
    # Recipient names may not contain ";" or "," (SendGrid limitation).
    name = func.nullif(func.trim(func.replace(func.replace(full, ",", " "), ";", " ")), "")
    source = select(
        literal(run_id),
        literal(edition),
        Subscriber.id,
        Subscriber.email,
        name,
        _json_object(dialect, "first_name", first),
    ).where(_eligible(clause)).order_by(Subscriber.id)
    columns = ["run_id", "edition", "subscriber_id", "email", "name", "substitutions"]
    stmt_factory = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = stmt_factory(Recipient).from_select(columns, source).on_conflict_do_nothing()
    session.execute(stmt)


def _make_batches(session: Session, run_id: int, count: int, size: int) -> None:
    if count == 0:
        return
    rows = [
        {"run_id": run_id, "seq": seq, "recipient_count": min(size, count - seq * size)}
        for seq in range((count + size - 1) // size)
    ]
    session.execute(insert(Batch), rows)
    session.execute(
        text(
            "UPDATE recipients SET batch_id = b.id "
            "FROM (SELECT id AS rid, (row_number() OVER (ORDER BY id) - 1) / :size AS seq "
            "      FROM recipients WHERE run_id = :run) AS t, batches AS b "
            "WHERE recipients.id = t.rid AND b.run_id = :run AND b.seq = t.seq"
        ),
        {"run": run_id, "size": size},
    )


def _find_run(session: Session, edition: str, segment: str) -> SendRun | None:
    return session.scalar(select(SendRun).where(SendRun.edition == edition, SendRun.segment == segment))


def _check_same_build(run: SendRun, variant: VariantToSend) -> None:
    if run.variant_sha256 != variant.sha256:
        raise DeliveryError(
            f"edition {variant.edition} segment {variant.segment} was frozen from a different build "
            f"(run {run.id}); refusing to send other content to the rest of its audience",
            hint="send from the build that started this run (build.json with the same hashes)",
        )


def freeze_audience(
    db: Database,
    edition: str,
    variants: Sequence[VariantToSend],
    assignments: Sequence[Assignment],
    *,
    batch_size: int = MAX_PERSONALIZATIONS,
) -> list[int]:
    """Freeze each variant's audience (idempotent); returns the run ids, in variant order."""
    size = max(1, min(batch_size, MAX_PERSONALIZATIONS))
    run_ids: list[int] = []
    for variant in variants:
        with db.session() as session:
            existing = _find_run(session, edition, variant.segment)
        if existing is None:
            clause = _clause_for(assignments, variant.segment)
            try:
                with db.write_session() as session:
                    if _find_run(session, edition, variant.segment) is None:
                        run = SendRun(
                            edition=edition, segment=variant.segment, variant_sha256=variant.sha256,
                            subject=variant.subject, status=RunStatus.FROZEN.value,
                            excluded=_excluded(session, clause),
                        )
                        session.add(run)
                        session.flush()
                        _insert_recipients(session, db.dialect, run.id, edition, clause)
                        count = session.scalar(select(func.count()).where(Recipient.run_id == run.id)) or 0
                        _make_batches(session, run.id, count, size)
                        run.audience_count = count
            except IntegrityError:
                pass  # another sender froze this segment at the same moment; use theirs
            with db.session() as session:
                existing = _find_run(session, edition, variant.segment)
        assert existing is not None
        _check_same_build(existing, variant)
        run_ids.append(existing.id)
    return run_ids
