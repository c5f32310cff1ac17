"""SQLAlchemy 2 models. The schema is owned by Alembic migrations in newsletter/migrations/.

Tables:
  subscribers, audit_log, erasure_tombstones, meta         (subscribers issue)
  signup_requests, limit_counters                           (member web: double opt-in)
  send_runs, recipients, batches                            (delivery issue)
  delivery_events, archived_variants                        (member web: event webhook, archive)
  scheduled_sends                                           (scheduling issue; the one truth of
                                                             the schedule: the daemon keeps no
                                                             table of its own)
  notices                                                   (what the comms team was told, once
                                                             per reason)
  digest_occurrences                                        (recurring digests: one row per
                                                             digest per date)
  segment_definitions, segment_versions                     (segments live here; segments.yaml
                                                             is their seed and export format)
  edition_pauses                                            (complaint guard)
  console_users, console_sessions, console_audit,
  import_jobs                                               (the console)
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    literal_column,
    or_,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes stored as UTC on every backend (SQLite has no zone support)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


# ---------------------------------------------------------------- subscribers


class SubscriberStatus(enum.StrEnum):
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    ERASED = "erased"


class Subscriber(Base):
    __tablename__ = "subscribers"
    # Segment counts filter on region / member type plus status: these make them index-only.
    __table_args__ = (
        Index("ix_subscribers_region_status", "region", "status"),
        Index("ix_subscribers_member_type_status", "member_type", "status"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    # email as given (trimmed, domain lower-cased); email_key is fully lower-cased for uniqueness.
    # Both are NULL once erased.
    email: Mapped[str | None] = mapped_column(String(320))
    email_key: Mapped[str | None] = mapped_column(String(320), unique=True)
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    organisation: Mapped[str | None] = mapped_column(String(300))
    region: Mapped[str | None] = mapped_column(String(40))
    member_type: Mapped[str | None] = mapped_column(String(60))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # field -> who last set it ("import:<source>", "cli", "admin:<user>", "member"): an import
    # never overwrites what a person set (see members/provenance.py)
    field_sources: Mapped[dict[str, str]] = mapped_column(JSON, default=dict, server_default="{}")
    status: Mapped[str] = mapped_column(String(20), default=SubscriberStatus.ACTIVE, index=True)
    consent_source: Mapped[str | None] = mapped_column(String(200))
    consent_at: Mapped[datetime | None]
    consent_version: Mapped[str | None] = mapped_column(String(40))
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A member who paused the digest (preferences page) gets no edition until then (stays active).
    paused_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def may_be_left_out() -> ColumnElement[bool]:
    """Members the eligibility rule could leave out: not active, without an address, or with a
    pause set (ended or not). Few on a list, so the partial index below is small, and a batch is
    read against it instead of looking up each recipient's member. 'active' is written inline so
    that SQLite can match a query's term with the index's."""
    return or_(Subscriber.status != literal_column("'active'"), Subscriber.email.is_(None),
               Subscriber.paused_until.is_not(None))


MAY_BE_LEFT_OUT_INDEX = "ix_subscribers_may_be_left_out"
Index(MAY_BE_LEFT_OUT_INDEX, Subscriber.id, sqlite_where=may_be_left_out(), postgresql_where=may_be_left_out())


class AuditEntry(Base):
    """Every status change (and erasure) of a subscriber: when, who or what, why. No personal data."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    subscriber_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    actor: Mapped[str] = mapped_column(String(200))  # e.g. "import:members.csv", "cli", "webhook"
    action: Mapped[str] = mapped_column(String(40))  # "status", "erase", "create", ...
    old_status: Mapped[str | None] = mapped_column(String(20))
    new_status: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)


class ErasureTombstone(Base):
    """Salted hash of an erased address, so suppression holds and re-import is refused."""

    __tablename__ = "erasure_tombstones"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(default=utcnow)


class Meta(Base):
    """Small key/value facts about this database (e.g. the tombstone salt)."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class SignupRequest(Base):
    """A web sign-up waiting for its confirmation click (double opt-in). Deleted when confirmed
    or once expired; only a confirmed sign-up creates or reactivates a subscriber."""

    __tablename__ = "signup_requests"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320), index=True)
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    region: Mapped[str | None] = mapped_column(String(40))
    consent_version: Mapped[str] = mapped_column(String(40))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class LimitCounter(Base):
    """A fixed-window counter (sign-up limits) shared by every worker and host. The key is a
    salted hash, never an address or IP in clear."""

    __tablename__ = "limit_counters"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(index=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


# ---------------------------------------------------------------- delivery


class RunStatus(enum.StrEnum):
    FROZEN = "frozen"  # audience and batches written, nothing sent yet
    SENDING = "sending"
    FINISHED = "finished"  # every batch accepted
    INCOMPLETE = "incomplete"  # nothing left to send now, but some batches failed or are uncertain
    CANCELLED = "cancelled"


class BatchStatus(enum.StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    ACCEPTED = "accepted"
    FAILED = "failed"
    UNCERTAIN = "uncertain"


class SendRun(Base):
    """One send of one variant: (edition, segment) is unique."""

    __tablename__ = "send_runs"
    __table_args__ = (UniqueConstraint("edition", "segment"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    edition: Mapped[str] = mapped_column(String(100))
    segment: Mapped[str] = mapped_column(String(100))
    variant_sha256: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.FROZEN)
    transport: Mapped[str | None] = mapped_column(String(40))
    audience_count: Mapped[int] = mapped_column(Integer, default=0)
    excluded: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # reason -> count
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Recipient(Base):
    """The frozen audience: one row per member per edition (so one variant per member)."""

    __tablename__ = "recipients"
    __table_args__ = (Index("ix_recipients_run_batch", "run_id", "batch_id"),)

    # The key is (edition, member): one variant per member per edition. No surrogate id: its
    # sequence and index were a quarter of the freezing INSERT's time on PostgreSQL.
    edition: Mapped[str] = mapped_column(String(100), primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # run_id and batch_id carry no foreign keys: the freezing INSERT ... SELECT writes both from the
    # run and batches it created in the same transaction, and per-row FK checks were half its time.
    run_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(400))
    # The greeting's name (the first name, or "colleague"): a column, not a JSON object, which
    # PostgreSQL built for every row frozen (a quarter of the INSERT) and parsed for every row read.
    first_name: Mapped[str] = mapped_column(String(200), default="")
    batch_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))


class Batch(Base):
    """Up to 1,000 recipients sent in one provider request. Claimed by one sender at a time."""

    __tablename__ = "batches"
    __table_args__ = (
        UniqueConstraint("run_id", "seq"),
        Index("ix_batches_run_status", "run_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("send_runs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=BatchStatus.PENDING)
    recipient_count: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_at: Mapped[datetime | None]
    not_before: Mapped[datetime | None]  # earliest retry time after 429 / 5xx
    message_id: Mapped[str | None] = mapped_column(String(200))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class BatchAudit(Base):
    """Every change a person or the webhook made to a batch's state (marked delivered, re-queued):
    when, who, why. Kept after the run finishes; no personal data."""

    __tablename__ = "batch_audit"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    run_id: Mapped[int] = mapped_column(BigInteger, index=True)
    batch_id: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(200))  # "cli:ann", "webhook", "console:ann"
    action: Mapped[str] = mapped_column(String(40))  # "mark-delivered", "resend"
    old_status: Mapped[str] = mapped_column(String(20))
    new_status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)


class RateLimit(Base):
    """A request rate shared by every sender and daemon on this database: the earliest time (Unix
    seconds, on the database's clock) at which the next request may start. Each request moves it
    on by 1/rate; a 429 moves it to the end of SendGrid's pause."""

    __tablename__ = "rate_limits"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    next_at: Mapped[float] = mapped_column(Float, default=0.0)
class DeliveryEvent(Base):
    """One SendGrid event (Event Webhook), stored once per sg_event_id. No address: the member is
    named by id, the send by run and batch."""

    __tablename__ = "delivery_events"
    __table_args__ = (Index("ix_delivery_events_run_event", "run_id", "event"),)

    sg_event_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    event: Mapped[str] = mapped_column(String(30))
    run_id: Mapped[int | None] = mapped_column(BigInteger)
    batch_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    subscriber_id: Mapped[int | None] = mapped_column(BigInteger)
    machine_open: Mapped[bool] = mapped_column(default=False)  # Apple Mail Privacy Protection
    occurred_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class ArchivedVariant(Base):
    """The HTML of each variant as frozen for sending: the web archive shows it (with neutral
    values) once the send has started."""

    __tablename__ = "archived_variants"
    __table_args__ = (UniqueConstraint("edition", "segment"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    edition: Mapped[str] = mapped_column(String(100))
    segment: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# ---------------------------------------------------------------- scheduling


class ScheduleState(enum.StrEnum):
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    MISSED = "missed"
    CANCELLED = "cancelled"
    STALE = "stale"
    FAILED = "failed"


class TimeSource(enum.StrEnum):
    """Who chose a scheduled send's time: a later whole-edition `schedule` does not silently
    replace a time chosen for one segment."""

    MANIFEST = "manifest"  # the manifest's send_at (edition-wide or the segment's own)
    EDITION = "edition"  # --at for the whole edition, or `schedule move --all`
    SEGMENT = "segment"  # --at with --segment, or `schedule move --segment`


class ScheduledSend(Base):
    """An approved, frozen build of one edition:segment and when it goes out."""

    __tablename__ = "scheduled_sends"
    __table_args__ = (UniqueConstraint("edition", "segment"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    edition: Mapped[str] = mapped_column(String(100))
    segment: Mapped[str] = mapped_column(String(100))
    manifest_path: Mapped[str] = mapped_column(Text)
    build_dir: Mapped[str] = mapped_column(Text)
    send_at: Mapped[datetime]  # UTC instant
    zone: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64))  # hash of manifest + articles + template
    variant_sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20), default=ScheduleState.SCHEDULED)
    note: Mapped[str | None] = mapped_column(Text)
    send_window: Mapped[str | None] = mapped_column(String(20))  # local "07:00-20:00"
    # The daemon sending it ("host:pid") and its last sign of life, so a restarted daemon can
    # resume a send whose owner died (kill -9) without racing a live one.
    owner: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None]
    time_source: Mapped[str] = mapped_column(String(20), default=TimeSource.MANIFEST,
                                             server_default=TimeSource.MANIFEST.value)
    # When a daemon last re-checked the frozen build against its inputs (24 h and 1 h before the
    # send); claimed by compare-and-set, so one daemon does each check.
    checked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Notice(Base):
    """One notice to the comms team (email to notify_email, optional webhook): unique per kind,
    subject and reason, so a daemon polling, a second daemon or a restart never repeats it."""

    __tablename__ = "notices"
    __table_args__ = (UniqueConstraint("kind", "about", "reason_key"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))  # at-risk, stale, missed, failed, uncertain, paused, sent, digest-*
    about: Mapped[str] = mapped_column(String(200))  # e.g. "2026-12:east", "digest weekly 2026-12-01"
    reason_key: Mapped[str] = mapped_column(String(64))  # sha256 of the reason
    reason: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the webhook's extra fields
    email_to: Mapped[str | None] = mapped_column(String(320))
    emailed_at: Mapped[datetime | None]
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None]  # the last delivery attempt's start (one process at a time)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


# ---------------------------------------------------------------- recurring digests


class OccurrenceState(enum.StrEnum):
    PREPARING = "preparing"  # a daemon is importing the feeds, writing and building the manifest
    AWAITING_REVIEW = "awaiting_review"  # built and checked; waits for `digests approve|skip`
    APPROVING = "approving"  # being approved (scheduled) right now
    SCHEDULED = "scheduled"  # its sends are in scheduled_sends (they say whether it went out)
    SKIPPED = "skipped"  # not sent: too few new articles, skipped by a person, or not approved in time
    MISSED = "missed"  # its time passed while no daemon ran: never sent late
    FAILED = "failed"  # could not be prepared (every feed failed, the manifest failed its check)


class DigestOccurrence(Base):
    """One occurrence of a recurring digest (issues/digests/<digest>.yaml): unique per digest and
    date, so of several daemons exactly one prepares it, and it is sent once."""

    __tablename__ = "digest_occurrences"
    __table_args__ = (UniqueConstraint("digest", "occurs_on"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(100))
    occurs_on: Mapped[date] = mapped_column(Date)  # the local date of its send time
    send_at: Mapped[datetime]  # UTC instant it goes out
    state: Mapped[str] = mapped_column(String(20), default=OccurrenceState.PREPARING)
    reason: Mapped[str | None] = mapped_column(Text)  # why skipped, missed or failed; notes
    edition: Mapped[str | None] = mapped_column(String(100))  # "<digest>-<date>"
    manifest_path: Mapped[str | None] = mapped_column(Text)
    articles: Mapped[list[str]] = mapped_column(JSON, default=list)  # slugs in the manifest
    newest_published: Mapped[datetime | None]  # the newest of them: the next digest takes newer ones
    feed_problems: Mapped[list[str]] = mapped_column(JSON, default=list)
    review_deadline: Mapped[datetime | None]
    owner: Mapped[str | None] = mapped_column(String(200))  # the daemon preparing it (lease rule)
    heartbeat_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(200))  # who approved or skipped it
    decided_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# ---------------------------------------------------------------- segments


class SegmentDefinition(Base):
    """The current rule of one segment. `rule` is the rule in the segments.yaml rule language
    (YAML text), so the console, `segments apply` and `segments export` share one language.
    Order: `priority` (1, 2, … for the segments in the priority list, else NULL), then `ordinal`."""

    __tablename__ = "segment_definitions"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    rule: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    priority: Mapped[int | None] = mapped_column(Integer)
    ordinal: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(200))


class SegmentVersion(Base):
    """Every version of every segment (created, changed, deleted): when, who, what it was."""

    __tablename__ = "segment_versions"
    __table_args__ = (Index("ix_segment_versions_name_version", "name", "version"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(20))  # "create", "update", "delete", "seed"
    rule: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)


# ---------------------------------------------------------------- complaint guard


class EditionPause(Base):
    """An edition whose remaining batches must not be sent (too many spam reports), until a person
    resumes it. One row per edition; resumed_at set = no longer paused."""

    __tablename__ = "edition_pauses"

    edition: Mapped[str] = mapped_column(String(100), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    paused_at: Mapped[datetime] = mapped_column(default=utcnow)
    paused_by: Mapped[str] = mapped_column(String(200))
    resumed_at: Mapped[datetime | None]
    resumed_by: Mapped[str | None] = mapped_column(String(200))


# ---------------------------------------------------------------- console


class ConsoleUser(Base):
    """A person who signs in to the console. The password is kept only as an argon2id hash; the
    one-time set-password link only as a SHA-256 of its token."""

    __tablename__ = "console_users"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # lower-cased
    role: Mapped[str] = mapped_column(String(20))  # "comms" or "admin"
    password_hash: Mapped[str | None] = mapped_column(String(200))
    setup_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    setup_expires_at: Mapped[datetime | None]
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]


class ConsoleSession(Base):
    """A signed-in browser. The cookie holds a random id; only its SHA-256 is stored, so reading
    the database does not let anyone take over a session."""

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("console_users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class ConsoleAudit(Base):
    """What a console user (or `newsletter users`) did to editions, schedules, segments, users:
    when, who, what, on what. Member changes go to audit_log, batch changes to batch_audit."""

    __tablename__ = "console_audit"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))  # "console:ann@example.org", "cli"
    action: Mapped[str] = mapped_column(String(40))  # "test-send", "schedule", "segment-update", ...
    target: Mapped[str] = mapped_column(String(300))  # "2026-12:london", "segment london", "user ann@…"
    detail: Mapped[str] = mapped_column(Text, default="")


class ImportJob(Base):
    """A member import started in the console: its progress (rows read, bytes of the file) and,
    when done, its result, so any worker can answer the progress bar."""

    __tablename__ = "import_jobs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    actor: Mapped[str] = mapped_column(String(200))
    filename: Mapped[str] = mapped_column(String(300))
    dry_run: Mapped[bool] = mapped_column(Boolean, default=True)
    state: Mapped[str] = mapped_column(String(20), default="running")  # running, done, failed
    done: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    report_path: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
