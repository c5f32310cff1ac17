"""The batch state machine and the worker threads that drive it.

    pending ──claim──> in_flight ──2xx──────────────> accepted   (X-Message-Id kept)
       ^                   ├──429 / 5xx / not sent──> pending    (not_before = reset or backoff)
       │                   ├──other 4xx─────────────> failed     (response body kept)
       │                   ├──retries used up───────> failed     (retried by the next `send`)
       └──401/403──────────┤                                     (and the whole send stops)
                           └──maybe sent────────────> uncertain  (only re-sent on request)

A claim is a compare-and-set in the database, so any number of threads and processes (and, on
PostgreSQL, hosts) can share the work: PostgreSQL uses SELECT ... FOR UPDATE SKIP LOCKED, SQLite a
conditional UPDATE inside BEGIN IMMEDIATE. A batch still in_flight whose sender is gone (its process
is dead, or its claim is older than the lease) can have reached SendGrid, so it becomes uncertain.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, Select, Text, bindparam, cast, func, not_, or_, select, update
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.exc import InterfaceError, OperationalError

from newsletter.db import Database
from newsletter.delivery.complaints import paused_runs
from newsletter.delivery.journal import OutcomeJournal, replay_journals
from newsletter.delivery.leases import new_owner_id, owner_alive
from newsletter.delivery.ratelimit import DatabaseRate, process_limiter
from newsletter.delivery.requests import MailBuilder, RecipientRow
from newsletter.delivery.transports.base import (
    ConnectionFailed,
    MailRequest,
    OutcomeUnknown,
    Transport,
    TransportResponse,
)
from newsletter.errors import DatabaseError, DeliveryError, TransportAuthError
from newsletter.members import left_out, remove_controls
from newsletter.models import MAY_BE_LEFT_OUT_INDEX, Batch, BatchStatus, Recipient, Subscriber, utcnow

ERROR_BODY_LIMIT = 4000
RETRYABLE_5XX = (500, 503)  # answered by SendGrid itself: nothing was accepted
CLAIM_AHEAD = 0.2  # a worker claims when the rate caps let a request start within this
LATE_TOLERANCE = 0.015  # seconds after its slot that a request may still start
MAX_REBOOKINGS = 5
MAX_HELD_WAIT = 5.0  # a booked start further away than this is not waited for while holding a claim
T = TypeVar("T")
log = logging.getLogger("newsletter.delivery")


@dataclass(frozen=True)
class SendPolicy:
    concurrency: int = 4
    max_requests_per_second: float = 10.0
    max_retries: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    lease_seconds: float = 90.0  # an in_flight claim older than this is abandoned
    max_wait: float = 300.0  # the longest rate-limit wait a send sits through (longer: it stops)
    db_retry_seconds: float = 120.0  # how long an outcome write is retried (database restart, lock)


def prepare_runs(db: Database, run_ids: list[int], policy: SendPolicy, resend_uncertain: bool,
                 journal_dir: Path | None = None) -> None:
    """Before sending: outcomes journaled by senders that are gone are written; abandoned in_flight
    → uncertain; retryable failures → pending; and uncertain → pending when asked."""
    if journal_dir is not None:
        replay_journals(db, journal_dir)
    lease = timedelta(seconds=policy.lease_seconds)
    with db.write_session() as session:
        for batch in session.scalars(
            select(Batch).where(Batch.run_id.in_(run_ids), Batch.status == BatchStatus.IN_FLIGHT.value)
        ):
            if not owner_alive(batch.claimed_by, batch.claimed_at, lease):
                batch.status = BatchStatus.UNCERTAIN.value
                batch.last_error = f"sender {batch.claimed_by} stopped while this batch was in flight"
        retryable = or_(Batch.response_status.is_(None), Batch.response_status >= 500, Batch.response_status == 429)
        session.execute(
            update(Batch)
            .where(Batch.run_id.in_(run_ids), Batch.status == BatchStatus.FAILED.value, retryable)
            .values(status=BatchStatus.PENDING.value, not_before=None)
        )
        if resend_uncertain:
            session.execute(
                update(Batch)
                .where(Batch.run_id.in_(run_ids), Batch.status == BatchStatus.UNCERTAIN.value)
                .values(status=BatchStatus.PENDING.value, not_before=None)
            )


def retry_after(response: TransportResponse, default: float) -> float:
    """Seconds SendGrid asks us to wait after a 429: X-RateLimit-Reset (Unix time) or Retry-After
    (seconds or an HTTP date). Not capped here: the caller caps it and says so."""
    reset = response.header("X-RateLimit-Reset")
    if reset and reset.strip().replace(".", "", 1).isdigit():
        value = float(reset)
        # SendGrid sends a Unix time; a small number can only be a delay in seconds
        return max(0.0, value - time.time() if value > 1e9 else value)
    after = response.header("Retry-After")
    if after:
        if after.strip().isdigit():
            return float(after)
        try:
            return max(0.0, (parsedate_to_datetime(after) - utcnow()).total_seconds())
        except (TypeError, ValueError, OverflowError):
            pass
    return default


def _legacy_row(subscriber_id: int, email: str, name: str | None, first_name: str) -> RecipientRow:
    """A member stored before addresses and names were cleaned on the way in: the domain in its
    ASCII (IDNA) form, and no invisible bidi or zero-width characters in the names."""
    local, _, domain = email.rpartition("@")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            pass  # SendGrid refuses it and says why (the batch fails with its answer)
    clean_name = remove_controls(name) if name else name
    return RecipientRow(subscriber_id, f"{local}@{domain}", clean_name or None, remove_controls(first_name))


def _batch_rows_statement(dialect: str) -> Select[tuple[str | None]]:
    """A batch's recipients still on the list, as ONE JSON array of [subscriber id, email, name,
    first name] in member order. Members who unsubscribed, bounced, complained, paused or were
    erased since the audience was frozen (a scheduled send, or one resumed or retried later) are
    left out. One value, not 1,000 rows: SQLite's driver gives up and takes back the GIL for every
    row it steps, which with several sender threads was over half of the send, and the rows of
    either driver cost more to unpack than json.loads of the array (PostgreSQL, 1,000,000
    members, everything frozen first: 7.3 s with the array, 9.5 s with rows through Core).

    The left-out members are found through the small partial index of those who may be left out
    (an anti-join), not by looking up every recipient's member: 1,000 probes into the members'
    key were two thirds of the statement on PostgreSQL (5.0 -> 2.1 ms a batch) and over half on
    SQLite, whose planner has to be told to use the index (it prefers the rowid)."""
    gone = (select(Subscriber.id).where(Subscriber.id == Recipient.subscriber_id, left_out())
            .with_hint(Subscriber, f"INDEXED BY {MAY_BE_LEFT_OUT_INDEX}", "sqlite"))
    rows = (
        select(Recipient.subscriber_id, Recipient.email, Recipient.name,
               Recipient.first_name)
        .where(Recipient.run_id == bindparam("run_id"), Recipient.batch_id == bindparam("batch_id"),
               ~gone.exists())
    )
    if dialect == "postgresql":
        r = rows.subquery()
        array = func.json_build_array(r.c.subscriber_id, r.c.email, r.c.name, r.c.first_name)
        return select(cast(func.json_agg(aggregate_order_by(array, r.c.subscriber_id)), Text))
    r = rows.order_by(Recipient.subscriber_id).subquery()  # SQLite aggregates in the order the subquery gives
    return select(func.json_group_array(func.json_array(r.c.subscriber_id, r.c.email, r.c.name, r.c.first_name)))


@dataclass
class Claim:
    batch_id: int
    run_id: int
    seq: int
    attempts: int


class OutcomeNotRecorded(DatabaseError):
    """SendGrid answered but the database could not take the answer within db_retry_seconds; the
    answer is in the outcome journal and the next run replays it."""


TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


class Sender:
    """Sends the pending batches of some runs with `policy.concurrency` threads."""

    def __init__(
        self, db: Database, transport: Transport, builders: Mapping[int, MailBuilder], policy: SendPolicy,
        on_batch: Callable[[int, int, str], None] | None = None,
        on_wait: Callable[[float, str], None] | None = None, journal_dir: Path | None = None,
        more_runs: bool = False,
    ) -> None:
        self.db, self.transport, self.builders, self.policy = db, transport, dict(builders), policy
        self.sender_id = new_owner_id()
        self.stop = threading.Event()
        self.limiter = process_limiter(policy.max_requests_per_second)
        self.shared_rate = DatabaseRate(db, policy.max_requests_per_second)
        self.fatal: BaseException | None = None
        self.on_batch = on_batch or (lambda run_id, recipients, status: None)
        self.on_wait = on_wait
        self.journal = OutcomeJournal(journal_dir, self.sender_id) if journal_dir is not None else None
        self.run_ids = list(builders)
        # Set once every run this sender will send has been added (see add_run): until then a
        # worker with nothing to claim waits for more instead of finishing.
        self.all_runs_added = threading.Event()
        self._runs_changed = threading.Condition()
        if not more_runs:
            self.all_runs_added.set()
        self._batch_rows = _batch_rows_statement(db.dialect)
        # The claim, compiled once: the next due batch of these runs, one UPDATE ... RETURNING (its
        # subquery skips rows another sender has locked on PostgreSQL; SQLite's writer lock is
        # held by the caller). Run through Core: the ORM's bulk-update handling cost more than it.
        now = bindparam("now", type_=Batch.claimed_at.type)
        due = (select(Batch.id)
               .where(Batch.run_id.in_(bindparam("run_ids", expanding=True)), Batch.status == BatchStatus.PENDING.value,
                      or_(Batch.not_before.is_(None), Batch.not_before <= now), not_(paused_runs()))
               .order_by(Batch.run_id, Batch.seq).limit(1))
        if db.dialect == "postgresql":
            due = due.with_for_update(skip_locked=True)
        self._claim_stmt = (
            update(Batch).where(Batch.id == due.scalar_subquery(), Batch.status == BatchStatus.PENDING.value)
            .values(status=BatchStatus.IN_FLIGHT.value, claimed_by=bindparam("owner"), claimed_at=now,
                    attempts=Batch.attempts + 1, updated_at=now)
            .returning(Batch.id, Batch.run_id, Batch.seq, Batch.attempts)
        )
        self._local = threading.local()  # per worker: claim_next, next_claim
        self.rate_limited_until = 0.0  # monotonic time of the end of SendGrid's last 429 pause
        self._announced_until = 0.0
        self._announce_lock = threading.Lock()

    # -- runs added while sending (the next segments, frozen meanwhile) ---------------------------
    def add_run(self, run_id: int, builder: MailBuilder) -> None:
        """Send this run's batches too (its builder is in place before any worker can claim them)."""
        self.builders[run_id] = builder
        with self._runs_changed:
            self.run_ids = [*self.run_ids, run_id]
            self._runs_changed.notify_all()

    def runs_complete(self) -> None:
        """No more runs will be added: workers finish once nothing is left to claim."""
        with self._runs_changed:
            self.all_runs_added.set()
            self._runs_changed.notify_all()

    def _wait_for_runs(self, seen: list[int]) -> None:
        """Until a run is added after `seen` (or none will be): no database polling meanwhile."""
        with self._runs_changed:
            if self.run_ids is seen and not self.all_runs_added.is_set() and not self.stop.is_set():
                self._runs_changed.wait(1.0)

    def fail(self, exc: BaseException) -> None:
        """Stop the send because of `exc` (raised by run(), unless an earlier error came first)."""
        if self.fatal is None:
            self.fatal = exc
        self.stop.set()

    # -- waiting -----------------------------------------------------------------------------
    def announce(self, seconds: float, why: str) -> None:
        """Say (once per wait) that nothing will be sent for `seconds`: a long wait is never silent."""
        if seconds < 1.0:
            return
        until = time.monotonic() + seconds
        with self._announce_lock:
            if until <= self._announced_until + 1.0:
                return
            self._announced_until = until
        message = f"waiting {seconds:.0f} s {why}"
        log.info("%s", message)
        if self.on_wait is not None:
            self.on_wait(seconds, message)

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; False when stopped."""
        if seconds > 0:
            self.stop.wait(seconds)
        return not self.stop.is_set()

    def due_in(self) -> float:
        """Seconds before either rate cap lets a request start (a 429 pause, or the other senders'
        requests already booked), without booking anything."""
        return max(self.limiter.due_in(), self._db_retrying("read the shared rate", self.shared_rate.due_in))

    def reserve_slot(self) -> float:
        """Book a start time under both rate caps (this process's, and the database's shared by
        every sender); returns the monotonic time at which the request may start."""
        # This process's limiter paces its threads, then the database books the start. The start
        # is the database's slot alone: a later of two independently booked slots could fall
        # closer to another process's slot than the cap allows.
        self._sleep(self.limiter.reserve() - time.monotonic())
        shared = self._db_retrying("take a rate slot", self.shared_rate.reserve)
        return time.monotonic() + (shared - time.time())

    def _announce_rate_wait(self, wait: float) -> None:
        why = ("for SendGrid's rate limit" if time.monotonic() < self.rate_limited_until
               else f"for the rate cap of {self.policy.max_requests_per_second:g} requests/s")
        self.announce(wait, why)

    # -- the database, retried across a restart or a lock ---------------------------------------
    def _db_retrying(self, what: str, action: Callable[[], T], on_first_failure: Callable[[], None] | None = None) -> T:
        deadline = time.monotonic() + self.policy.db_retry_seconds
        delay, failed = 0.05, False
        while True:
            try:
                return action()
            except TRANSIENT_DB_ERRORS as exc:
                if not failed and on_first_failure is not None:
                    on_first_failure()
                failed = True
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("database unavailable (%s: %s); retrying in %.1f s", what,
                            exc.__class__.__name__, delay)
                time.sleep(delay)
                delay = min(2.0, delay * 2)

    # -- claims ------------------------------------------------------------------------------
    def _claim_in(self, conn: Connection) -> Claim | None:
        """Claim the next due batch (see `_claim_stmt`)."""
        row = conn.execute(self._claim_stmt, {"run_ids": self.run_ids, "now": utcnow(), "owner": self.sender_id}).first()
        return None if row is None else Claim(row[0], row[1], row[2], row[3])

    def _claim(self) -> Claim | None:
        with self.db.write_connection() as conn:
            return self._claim_in(conn)

    def claim(self) -> Claim | None:
        return self._db_retrying("claim a batch", self._claim)

    def _write_outcome(self, claim: Claim, values: dict[str, object]) -> bool:
        """Record one batch's outcome and, when this worker goes on, claim its next batch in the
        same transaction (one commit a batch instead of two)."""
        with self.db.write_connection() as conn:
            # Still ours, even if another sender meanwhile took our long request for abandoned
            # and marked it uncertain: what we learnt (accepted, failed) is better than a guess.
            done = conn.execute(
                update(Batch)
                .where(Batch.id == claim.batch_id,
                       Batch.status.in_([BatchStatus.IN_FLIGHT.value, BatchStatus.UNCERTAIN.value]),
                       Batch.claimed_by == self.sender_id)
                .values(**values)
            )
            go_on = getattr(self._local, "claim_next", False) and not self.stop.is_set()
            following = self._claim_in(conn) if go_on else None
        self._local.next_claim = following
        return bool(done.rowcount == 1)

    def _finish(self, claim: Claim, **values: object) -> bool:
        """Record the outcome, only if the batch is still ours. A database that is restarting or
        locked is retried for db_retry_seconds; meanwhile the outcome waits in the journal."""
        values["updated_at"] = utcnow()
        journal = self.journal

        def keep() -> None:
            if journal is not None:
                journal.record(claim.batch_id, {k: v for k, v in values.items() if k != "updated_at"})

        try:
            done = self._db_retrying(f"record batch {claim.seq}", lambda: self._write_outcome(claim, values), keep)
        except TRANSIENT_DB_ERRORS as exc:
            where = f"kept in {journal.path}; the next send replays it" if journal is not None else "lost"
            raise OutcomeNotRecorded(
                f"could not record the outcome of batch {claim.seq} in the database for "
                f"{self.policy.db_retry_seconds:g} s ({exc.__class__.__name__}); {where}",
                hint="check the database, then run the same send again") from None
        if journal is not None:
            journal.written(claim.batch_id)
        return done

    def waiting(self, run_ids: list[int] | None = None) -> float | None:
        """None when nothing is left to claim; else seconds until the next pending batch is due."""
        runs = self.run_ids if run_ids is None else run_ids

        def due_next() -> list[datetime | None]:
            with self.db.session() as session:
                return list(session.scalars(
                    select(Batch.not_before).where(Batch.run_id.in_(runs), Batch.status == BatchStatus.PENDING.value,
                                                   not_(paused_runs()))
                    .order_by(Batch.not_before.is_not(None), Batch.not_before).limit(1)
                ).all())

        due = self._db_retrying("look for due batches", due_next)
        if not due:
            return None
        return 0.0 if due[0] is None else max(0.0, (due[0] - utcnow()).total_seconds())

    # -- one batch ---------------------------------------------------------------------------
    def _recipients(self, claim: Claim) -> list[RecipientRow]:
        with self.db.reading() as conn:
            found = conn.execute(self._batch_rows, {"run_id": claim.run_id, "batch_id": claim.batch_id}).scalar()
        make = RecipientRow._make
        return [make(r) if r[1].isascii() and (r[2] is None or r[2].isascii())
                else _legacy_row(r[0], r[1], r[2], r[3]) for r in json.loads(found or "[]")]

    def request_for(self, claim: Claim) -> MailRequest | None:
        """The batch's request, or None when none of its recipients is still on the list."""
        builder = self.builders[claim.run_id]
        recipients = self._db_retrying(f"read batch {claim.seq}", lambda: self._recipients(claim))
        if not recipients:
            return None
        body = builder.body(recipients, claim.seq)
        return MailRequest(builder.variant.edition, builder.variant.segment, claim.seq, body, len(recipients))

    def _backoff(self, attempts: int) -> float:
        delay = min(self.policy.backoff_max, self.policy.backoff_base * 2 ** max(0, attempts - 1))
        return delay * random.uniform(0.5, 1.0)

    def _retry(self, claim: Claim, error: str, status: int | None, body: str | None = None) -> str:
        if claim.attempts > self.policy.max_retries:
            self._finish(claim, status=BatchStatus.FAILED.value, last_error=f"gave up after {claim.attempts} attempts: {error}",
                         response_status=status, response_body=body)
            return BatchStatus.FAILED.value
        self._finish(claim, status=BatchStatus.PENDING.value, last_error=error, response_status=status,
                     response_body=body, not_before=utcnow() + timedelta(seconds=self._backoff(claim.attempts)))
        return BatchStatus.PENDING.value

    def _rate_limited(self, claim: Claim, response: TransportResponse) -> str:
        asked = retry_after(response, self._backoff(claim.attempts))
        if asked > self.policy.max_wait:
            # Never sit silently for hours (a Retry-After date in 2099): stop, say so, and let the
            # next send ask SendGrid again; the batch stays pending and due.
            self._finish(claim, status=BatchStatus.PENDING.value, attempts=claim.attempts - 1, response_status=429,
                         last_error=f"rate limited (429): SendGrid asked to wait {asked:,.0f} s", not_before=None)
            if self.fatal is None:
                self.fatal = DeliveryError(
                    f"SendGrid's rate limit asks to wait {asked:,.0f} s, more than the {self.policy.max_wait:g} s "
                    "a send waits; nothing more was sent",
                    hint="run the same send again later (it resumes); see `newsletter sends show`")
            self.stop.set()
            return BatchStatus.PENDING.value
        self.rate_limited_until = max(self.rate_limited_until, time.monotonic() + asked)
        self.limiter.pause(asked)
        self._db_retrying("share the rate-limit pause", lambda: self.shared_rate.pause(asked))
        self._finish(claim, status=BatchStatus.PENDING.value, attempts=claim.attempts - 1, response_status=429,
                     last_error=f"rate limited (429): SendGrid asked to wait {asked:.0f} s",
                     not_before=utcnow() + timedelta(seconds=asked))
        self.announce(asked, "for SendGrid's rate limit")
        return BatchStatus.PENDING.value

    def send_one(self, claim: Claim, request: MailRequest | None, start_at: float = 0.0) -> str:
        if request is None:
            self._finish(claim, status=BatchStatus.ACCEPTED.value, last_error=None,
                         response_body="not sent: every recipient left the list after the audience was frozen")
            self.on_batch(claim.run_id, 0, BatchStatus.ACCEPTED.value)
            return BatchStatus.ACCEPTED.value
        for _ in range(MAX_REBOOKINGS):
            delay = start_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the booked rate slot; short (long waits were sat out before claiming)
            if start_at <= 0 or time.monotonic() - start_at <= LATE_TOLERANCE:
                break
            # Woken too late (a busy machine): going now would crowd the next sender's slot, so
            # book a new one; the missed slot only costs a little throughput.
            start_at = self.reserve_slot()
        try:
            response = self.transport.send(request)
        except ConnectionFailed as exc:
            return self._retry(claim, str(exc), None)
        except OutcomeUnknown as exc:
            self._finish(claim, status=BatchStatus.UNCERTAIN.value, last_error=str(exc))
            return BatchStatus.UNCERTAIN.value
        except Exception as exc:  # a transport bug: we cannot know whether it was sent
            self._finish(claim, status=BatchStatus.UNCERTAIN.value, last_error=f"{exc.__class__.__name__}: {exc}")
            return BatchStatus.UNCERTAIN.value
        status, body = response.status, response.body[:ERROR_BODY_LIMIT]
        if 200 <= status < 300:
            self._finish(claim, status=BatchStatus.ACCEPTED.value, response_status=status, last_error=None,
                         message_id=response.header("X-Message-Id"), response_body=None)
            self.on_batch(claim.run_id, request.recipient_count, BatchStatus.ACCEPTED.value)
            return BatchStatus.ACCEPTED.value
        if status == 429:
            return self._rate_limited(claim, response)
        if status in (401, 403):
            self._finish(claim, status=BatchStatus.PENDING.value, attempts=claim.attempts - 1, response_status=status,
                         last_error=f"HTTP {status}: the provider refused the API key")
            self.fatal = TransportAuthError(
                f"SendGrid refused the API key (HTTP {status}); nothing more was sent",
                hint="check SENDGRID_API_KEY is valid and has the Mail Send permission",
            )
            self.stop.set()
            return BatchStatus.PENDING.value
        if status in RETRYABLE_5XX:
            return self._retry(claim, f"HTTP {status}", status, body)
        if status >= 500:
            # 502/504 (and other 5xx) come from gateways, possibly after SendGrid took the request
            self._finish(claim, status=BatchStatus.UNCERTAIN.value, response_status=status, response_body=body,
                         last_error=f"HTTP {status} from a gateway after the request was sent: SendGrid may have it")
            self.on_batch(claim.run_id, request.recipient_count, BatchStatus.UNCERTAIN.value)
            return BatchStatus.UNCERTAIN.value
        self._finish(claim, status=BatchStatus.FAILED.value, response_status=status, response_body=body,
                     last_error=f"HTTP {status}")
        self.on_batch(claim.run_id, request.recipient_count, BatchStatus.FAILED.value)
        return BatchStatus.FAILED.value

    # -- workers -----------------------------------------------------------------------------
    def _unclaim(self, claim: Claim) -> None:
        self._finish(claim, status=BatchStatus.PENDING.value, attempts=claim.attempts - 1)

    def worker(self) -> None:
        with self.db.pinned():  # one connection for this worker's statements
            self._work()

    def _work(self) -> None:
        claim: Claim | None = None
        self._local.claim_next = True
        try:
            while not self.stop.is_set():
                if claim is None:
                    # Wait out a rate-limit pause or a backlog of booked requests before claiming,
                    # so a claim is never held through a long wait (a claim older than the lease
                    # may be declared abandoned by another sender).
                    wait = self.due_in()
                    if wait > CLAIM_AHEAD:
                        self._announce_rate_wait(wait)
                        if not self._sleep(wait - CLAIM_AHEAD):
                            return
                    claim = self.claim()
                if claim is None:
                    # read before looking: a run added after this is in the look, or wakes us
                    complete, seen = self.all_runs_added.is_set(), self.run_ids
                    left = self.waiting(seen)
                    if left is None:
                        if complete:
                            return
                        self._wait_for_runs(seen)  # the next segment is still being frozen
                        continue
                    self.announce(left, "before retrying batches that failed (backoff)")
                    self.stop.wait(min(max(left, 0.01), 0.5))
                    continue
                request = self.request_for(claim)
                # Book the start only now, with the request built: a slot booked earlier and used
                # late (a slow claim) would put two requests closer together than the cap allows.
                start_at = self.reserve_slot() if request is not None else 0.0
                if start_at - time.monotonic() > MAX_HELD_WAIT:
                    self._local.claim_next = False
                    self._unclaim(claim)  # another sender's 429 meanwhile: wait without holding it
                    self._local.claim_next = True
                    claim = None
                    continue
                self._local.next_claim = None
                self.send_one(claim, request, start_at)
                claim = self._local.next_claim  # claimed with this outcome, in one transaction
            if claim is not None:
                self._local.claim_next = False
                self._unclaim(claim)  # stopped (Ctrl-C, a fatal answer): never keep a claim
        except BaseException as exc:  # keep the first unexpected error; stop the others
            if self.fatal is None:
                self.fatal = exc
            self.stop.set()

    def run(self) -> None:
        """Send until nothing is claimable. Ctrl-C: stop claiming, let requests in flight finish."""
        threads = [threading.Thread(target=self.worker, name=f"sender-{i}", daemon=True)
                   for i in range(self.policy.concurrency)]
        for t in threads:
            t.start()
        try:
            try:
                while any(t.is_alive() for t in threads):
                    for t in threads:
                        t.join(0.2)
            except KeyboardInterrupt:
                self.stop.set()
                for t in threads:
                    t.join()
                raise
        finally:
            if self.journal is not None:
                self.journal.close()
        if self.fatal is not None:
            raise self.fatal
