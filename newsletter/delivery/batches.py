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

import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from sqlalchemy import and_, or_, select, true, update

from newsletter.db import Database
from newsletter.delivery.requests import MailBuilder, RecipientRow
from newsletter.delivery.transports.base import (
    ConnectionFailed,
    MailRequest,
    OutcomeUnknown,
    Transport,
    TransportResponse,
)
from newsletter.errors import TransportAuthError
from newsletter.members import eligible
from newsletter.models import Batch, BatchStatus, Recipient, Subscriber

HOST = socket.gethostname()
ERROR_BODY_LIMIT = 4000
MAX_RATE_LIMIT_WAIT = 3600.0  # seconds; never trust a rate-limit header beyond this


@dataclass(frozen=True)
class SendPolicy:
    concurrency: int = 4
    max_requests_per_second: float = 10.0
    max_retries: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    lease_seconds: float = 90.0  # an in_flight claim older than this is abandoned


def new_sender_id() -> str:
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def now() -> datetime:
    return datetime.now(UTC)


def _owner_gone(claimed_by: str | None, claimed_at: datetime | None, lease: float) -> bool:
    if claimed_at is None or claimed_at < now() - timedelta(seconds=lease):
        return True
    host, _, rest = (claimed_by or "").partition(":")
    pid = rest.partition(":")[0]
    if host != HOST or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def prepare_runs(db: Database, run_ids: list[int], policy: SendPolicy, resend_uncertain: bool) -> None:
    """Before sending: abandoned in_flight → uncertain; retryable failures → pending; and uncertain
    → pending when asked."""
    with db.write_session() as session:
        for batch in session.scalars(
            select(Batch).where(Batch.run_id.in_(run_ids), Batch.status == BatchStatus.IN_FLIGHT.value)
        ):
            if _owner_gone(batch.claimed_by, batch.claimed_at, policy.lease_seconds):
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


class RateLimiter:
    """Token bucket shared by all workers, plus a shared pause after a 429."""

    def __init__(self, rate: float, burst: float, stop: threading.Event) -> None:
        self.rate, self.capacity, self.stop = rate, max(1.0, burst), stop
        self.tokens, self.updated, self.paused_until = self.capacity, time.monotonic(), 0.0
        self.lock = threading.Lock()

    def pause(self, seconds: float) -> None:
        with self.lock:
            self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    def acquire(self) -> bool:
        while not self.stop.is_set():
            with self.lock:
                t = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (t - self.updated) * self.rate)
                self.updated = t
                wait = max(self.paused_until - t, (1 - self.tokens) / self.rate if self.tokens < 1 else 0.0)
                if wait <= 0:
                    self.tokens -= 1
                    return True
            self.stop.wait(min(wait, 0.5))
        return False


def retry_after(response: TransportResponse, default: float) -> float:
    """Seconds to wait after a 429: X-RateLimit-Reset (Unix time) or Retry-After (seconds/date)."""
    reset = response.header("X-RateLimit-Reset")
    if reset and reset.strip().replace(".", "", 1).isdigit():
        value = float(reset)
        # SendGrid sends a Unix time; a small number can only be a delay in seconds
        return min(MAX_RATE_LIMIT_WAIT, max(0.0, value - time.time() if value > 1e9 else value))
    after = response.header("Retry-After")
    if after:
        if after.strip().isdigit():
            return min(MAX_RATE_LIMIT_WAIT, float(after))
        try:
            return max(0.0, (parsedate_to_datetime(after) - now()).total_seconds())
        except (TypeError, ValueError):
            pass
    return default


@dataclass
class Claim:
    batch_id: int
    run_id: int
    seq: int
    attempts: int


class Sender:
    """Sends the pending batches of some runs with `policy.concurrency` threads."""

    def __init__(
        self, db: Database, transport: Transport, builders: Mapping[int, MailBuilder], policy: SendPolicy,
        on_batch: Callable[[int, int, str], None] | None = None,
    ) -> None:
        self.db, self.transport, self.builders, self.policy = db, transport, builders, policy
        self.sender_id = new_sender_id()
        self.stop = threading.Event()
        burst = min(policy.concurrency, policy.max_requests_per_second)
        self.limiter = RateLimiter(policy.max_requests_per_second, burst, self.stop)
        self.fatal: BaseException | None = None
        self.on_batch = on_batch or (lambda run_id, recipients, status: None)
        self.run_ids = list(builders)

    # -- claims ------------------------------------------------------------------------------
    def _ready(self) -> object:
        t = now()
        return and_(
            Batch.run_id.in_(self.run_ids), Batch.status == BatchStatus.PENDING.value,
            or_(Batch.not_before.is_(None), Batch.not_before <= t),
        )

    def claim(self) -> Claim | None:
        values = dict(status=BatchStatus.IN_FLIGHT.value, claimed_by=self.sender_id, claimed_at=now(),
                      attempts=Batch.attempts + 1, updated_at=now())
        with self.db.write_session() as session:
            query = (select(Batch.id, Batch.run_id, Batch.seq, Batch.attempts).where(self._ready())  # type: ignore[arg-type]
                     .order_by(Batch.run_id, Batch.seq).limit(1))
            if self.db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            row = session.execute(query).first()
            if row is None:
                return None
            done = session.execute(
                update(Batch).where(Batch.id == row.id, Batch.status == BatchStatus.PENDING.value).values(**values)
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                return None
        return Claim(row.id, row.run_id, row.seq, row.attempts + 1)

    def _finish(self, claim: Claim, **values: object) -> bool:
        """Record the outcome, only if the batch is still ours."""
        values["updated_at"] = now()
        with self.db.write_session() as session:
            # Still ours, even if another sender meanwhile took our long request for abandoned
            # and marked it uncertain: what we learnt (accepted, failed) is better than a guess.
            done = session.execute(
                update(Batch)
                .where(Batch.id == claim.batch_id,
                       Batch.status.in_([BatchStatus.IN_FLIGHT.value, BatchStatus.UNCERTAIN.value]),
                       Batch.claimed_by == self.sender_id)
                .values(**values)
            )
            return bool(done.rowcount == 1)  # type: ignore[attr-defined]

    def waiting(self) -> float | None:
        """None when nothing is left to claim; else seconds until the next pending batch is due."""
        with self.db.session() as session:
            due = session.scalars(
                select(Batch.not_before).where(Batch.run_id.in_(self.run_ids), Batch.status == BatchStatus.PENDING.value)
                .order_by(Batch.not_before.is_not(None), Batch.not_before).limit(1)
            ).all()
        if not due:
            return None
        return 0.0 if due[0] is None else max(0.0, (due[0] - now()).total_seconds())

    # -- one batch ---------------------------------------------------------------------------
    def request_for(self, claim: Claim) -> MailRequest | None:
        """The batch's request, or None when none of its recipients is still on the list."""
        builder = self.builders[claim.run_id]
        with self.db.session() as session:
            # Members who unsubscribed, bounced, complained, paused or were erased since the audience
            # was frozen (a scheduled send, or one resumed or retried later) are left out.
            rows = session.execute(
                select(Recipient.subscriber_id, Recipient.email, Recipient.name,
                       Recipient.substitutions["first_name"].as_string())
                .join(Subscriber, Subscriber.id == Recipient.subscriber_id)
                .where(Recipient.run_id == claim.run_id, Recipient.batch_id == claim.batch_id,
                       eligible(true()))
                .order_by(Recipient.id)
            ).all()
        recipients = [RecipientRow(r[0], r[1], r[2], r[3] or "") for r in rows]
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
                     response_body=body, not_before=now() + timedelta(seconds=self._backoff(claim.attempts)))
        return BatchStatus.PENDING.value

    def send_one(self, claim: Claim) -> str:
        request = self.request_for(claim)
        if request is None:
            self._finish(claim, status=BatchStatus.ACCEPTED.value, last_error=None,
                         response_body="not sent: every recipient left the list after the audience was frozen")
            self.on_batch(claim.run_id, 0, BatchStatus.ACCEPTED.value)
            return BatchStatus.ACCEPTED.value
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
            wait = retry_after(response, self._backoff(claim.attempts))
            self.limiter.pause(wait)
            self._finish(claim, status=BatchStatus.PENDING.value, attempts=claim.attempts - 1, response_status=status,
                         last_error="rate limited (429)", not_before=now() + timedelta(seconds=wait))
            return BatchStatus.PENDING.value
        if status in (401, 403):
            self._finish(claim, status=BatchStatus.PENDING.value, attempts=claim.attempts - 1, response_status=status,
                         last_error=f"HTTP {status}: the provider refused the API key")
            self.fatal = TransportAuthError(
                f"SendGrid refused the API key (HTTP {status}); nothing more was sent",
                hint="check SENDGRID_API_KEY is valid and has the Mail Send permission",
            )
            self.stop.set()
            return BatchStatus.PENDING.value
        if status >= 500:
            return self._retry(claim, f"HTTP {status}", status, body)
        self._finish(claim, status=BatchStatus.FAILED.value, response_status=status, response_body=body,
                     last_error=f"HTTP {status}")
        self.on_batch(claim.run_id, request.recipient_count, BatchStatus.FAILED.value)
        return BatchStatus.FAILED.value

    # -- workers -----------------------------------------------------------------------------
    def worker(self) -> None:
        try:
            while not self.stop.is_set():
                # Take the rate token first, so a claim is never held while waiting for the rate
                # limit (a claim older than the lease may be declared abandoned by another sender).
                if not self.limiter.acquire():
                    return
                claim = self.claim()
                if claim is None:
                    wait = self.waiting()
                    if wait is None:
                        return
                    self.stop.wait(min(max(wait, 0.01), 0.5))
                    continue
                self.send_one(claim)
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
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(0.2)
        except KeyboardInterrupt:
            self.stop.set()
            for t in threads:
                t.join()
            raise
        if self.fatal is not None:
            raise self.fatal
