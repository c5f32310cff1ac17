"""`newsletter scheduler run`: the daemon that sends scheduled editions.

When a job fires, `execute_send` decides, and records, what happens:
- not 'scheduled' any more (cancelled, or another daemon has it) → nothing;
- later than the misfire grace, or outside the segment's send window → 'missed', nothing sent;
- the manifest, its articles, the template or the frozen build changed → 'stale', nothing sent;
- otherwise scheduled → sending by compare-and-set (one daemon wins), deliver, then 'sent' or
  'failed'. Delivery itself is guarded by its own run claim, so even a stolen race cannot
  double-send.
A send left 'sending' by a daemon that died (kill -9) is resumed through the delivery code, which
picks up where it stopped. Whether its daemon is gone is delivery's lease rule: on this host, its
process is gone; anywhere, it has not renewed its heartbeat for HEARTBEAT_TIMEOUT.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from newsletter.config import Settings, load_settings
from newsletter.content import SendWindow, describe
from newsletter.db import Database, open_database
from newsletter.delivery import make_transport, new_owner_id, owner_alive, send_edition
from newsletter.errors import DeliveryError
from newsletter.models import ScheduledSend, ScheduleState
from newsletter.render import inputs_fingerprint, load_build
from newsletter.schedule.jobs import JobRegistry, job_id, make_scheduler, register_job
from newsletter.schedule.planning import ScheduledSendInfo, info_of, set_state

log = logging.getLogger("newsletter.schedule.planning")
S = ScheduleState

# Sends one frozen variant; returns a note for the record (e.g. uncertain batches) or None.
# Raising marks the send failed.
Deliver = Callable[[ScheduledSendInfo], str | None]
HEARTBEAT_INTERVAL = timedelta(seconds=10)
HEARTBEAT_TIMEOUT = timedelta(seconds=60)
LOST_JOB_AFTER = timedelta(seconds=60)


def delivery_sender(db: Database, settings: Settings) -> Deliver:
    """The real delivery: send exactly the frozen build's variant to the segment."""

    def deliver(send: ScheduledSendInfo) -> str | None:

        reports = send_edition(
            db, settings, send.build_dir, segments=[send.segment],
            transport=make_transport(settings),
        )
        elsewhere, pending = sum(r.in_flight for r in reports), sum(r.pending for r in reports)
        if elsewhere:
            raise DeliveryError(f"{elsewhere} recipient(s) are being sent by another process (e.g. a manual "
                                "`send`); this daemon does not finish them: see `newsletter sends show`")
        if pending:
            raise DeliveryError(f"{pending} recipient(s) not sent yet; this daemon does not retry them: "
                                "run `newsletter send` with this build to finish")
        notes = [f"{r.accepted} accepted" for r in reports]
        notes += [f"{r.failed} failed" for r in reports if r.failed]
        notes += [f"{r.uncertain} uncertain (see `newsletter sends show`)" for r in reports if r.uncertain]
        return ", ".join(notes) or None

    return deliver


@dataclass
class DaemonContext:
    db: Database
    settings: Settings
    deliver: Deliver
    grace: timedelta
    owner: str = field(default_factory=new_owner_id)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    running: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


_context: DaemonContext | None = None


def context_for(settings: Settings, *, db: Database | None = None, deliver: Deliver | None = None,
                grace_minutes: float | None = None,
                clock: Callable[[], datetime] | None = None) -> DaemonContext:
    db = db or open_database(settings.resolved_database_url)
    minutes = settings.misfire_grace_minutes if grace_minutes is None else grace_minutes
    ctx = DaemonContext(db, settings, deliver or delivery_sender(db, settings),
                        timedelta(minutes=minutes))
    if clock is not None:
        ctx.clock = clock
    return ctx


def run_job(edition: str, segment: str) -> None:
    """The APScheduler job (stored by reference, with only these two arguments)."""
    global _context
    if _context is None:  # a scheduler process that did not go through run_daemon

        _context = context_for(load_settings())
    execute_send(_context, edition, segment)


def _load(db: Database, edition: str, segment: str) -> ScheduledSend | None:
    with db.session() as session:
        return session.scalar(select(ScheduledSend).where(
            ScheduledSend.edition == edition, ScheduledSend.segment == segment))


def frozen_build_problem(settings: Settings, send: ScheduledSendInfo) -> str | None:
    """Why the approved build can no longer be sent as approved, or None if it can."""

    try:
        fingerprint = inputs_fingerprint(send.manifest_path, settings)
    except Exception as exc:
        return f"cannot read the edition's inputs any more ({exc}); schedule it again"
    if fingerprint != send.fingerprint:
        return ("the manifest, its articles or the template changed after scheduling; "
                "nothing was sent; schedule the manifest again to send the new version")
    try:
        sha = {v.segment: v.sha256 for v in load_build(send.build_dir).variants}.get(send.segment)
    except Exception as exc:
        return f"the frozen build in {send.build_dir} is damaged ({exc}); schedule it again"
    if sha != send.variant_sha256:
        return f"the frozen {send.segment} variant in {send.build_dir} is not the approved one"
    return None


def execute_send(ctx: DaemonContext, edition: str, segment: str) -> str | None:
    """Run one due job; returns the state it left the send in (None if there is no such send)."""
    key = job_id(edition, segment)
    row = _load(ctx.db, edition, segment)
    if row is None:
        log.warning("%s: no such scheduled send; ignoring the job", key)
        return None
    if row.state != S.SCHEDULED:
        log.info("%s: %s, nothing to do", key, row.state)
        return row.state
    send = info_of(row)
    now = ctx.clock()
    if now < send.send_at:
        log.info("%s: not due until %s (moved?); leaving it", key, send.local_time)
        return row.state
    late = now - send.send_at
    if late > ctx.grace:
        note = (f"not sent: the scheduler reached it {_span(late)} after {send.local_time}, "
                f"beyond the misfire grace of {_span(ctx.grace)}")
        return _finish(ctx, key, S.MISSED, note, expect=[S.SCHEDULED])
    if send.window and not SendWindow.parse(send.window).contains(now, send.zone):
        note = (f"not sent: {describe(now, send.zone)} is outside the send window {send.window}")
        return _finish(ctx, key, S.MISSED, note, expect=[S.SCHEDULED])
    problem = frozen_build_problem(ctx.settings, send)
    if problem:
        return _finish(ctx, key, S.STALE, problem, expect=[S.SCHEDULED])
    if not set_state(ctx.db, edition, segment, S.SENDING, expect=[S.SCHEDULED],
                     unchanged_since=row.updated_at, owner=ctx.owner, heartbeat_at=now):
        log.info("%s: another scheduler took it, or it was rescheduled meanwhile", key)
        return None
    log.info("%s: sending (%s late) from %s", key, _span(late), send.build_dir)
    return _deliver(ctx, send)


def _deliver(ctx: DaemonContext, send: ScheduledSendInfo) -> str:
    key = send.job_id
    with ctx.lock:
        ctx.running.add(key)
    try:
        note = ctx.deliver(send)
    except Exception as exc:
        log.exception("%s: delivery failed", key)
        return _finish(ctx, key, S.FAILED, f"delivery failed: {exc}", expect=[S.SENDING],
                       owned_by=ctx.owner)
    finally:
        with ctx.lock:
            ctx.running.discard(key)
    return _finish(ctx, key, S.SENT, note, expect=[S.SENDING], owned_by=ctx.owner)


def _finish(ctx: DaemonContext, key: str, state: str, note: str | None, *,
            expect: list[ScheduleState], owned_by: str | None = None) -> str:
    edition, segment = key.rsplit(":", 1)
    if set_state(ctx.db, edition, segment, state, expect=expect, note=note, owned_by=owned_by):
        log.log(logging.INFO if state == S.SENT else logging.WARNING, "%s: %s%s", key, state,
                f" — {note}" if note else "")
        return state
    row = _load(ctx.db, edition, segment)
    log.info("%s: not marked %s; it is now %s", key, state, row.state if row else "gone")
    return row.state if row else "gone"


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 1:
        return f"{max(delta.total_seconds(), 0):.0f} s"
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


# ------------------------------------------------------------------ crash recovery


def resume_orphans(
    ctx: DaemonContext, submit: Callable[[ScheduledSendInfo], None] | None = None
) -> list[str]:
    """Take over sends left 'sending' by a daemon that is gone, and finish them through the
    delivery code (inline, or handed to `submit`). Returns the keys taken over."""
    with ctx.db.session() as session:
        rows = session.scalars(select(ScheduledSend).where(ScheduledSend.state == S.SENDING)).all()
    taken = []
    for row in rows:
        key = job_id(row.edition, row.segment)
        with ctx.lock:
            if key in ctx.running:
                continue
        if row.owner == ctx.owner:
            continue  # this process: the send is running in one of our threads
        if owner_alive(row.owner, row.heartbeat_at, HEARTBEAT_TIMEOUT, now=ctx.clock()) or not _claim_orphan(ctx, row):
            continue
        log.warning("%s: resuming a send interrupted in %s", key, row.owner)
        taken.append(key)
        if submit is None:
            _deliver(ctx, info_of(row))
        else:
            submit(info_of(row))
    return taken


def _claim_orphan(ctx: DaemonContext, row: ScheduledSend) -> bool:
    stmt = update(ScheduledSend).where(
        ScheduledSend.id == row.id, ScheduledSend.state == S.SENDING,
    ).values(owner=ctx.owner, heartbeat_at=ctx.clock())
    stmt = stmt.where(ScheduledSend.owner == row.owner) if row.owner else stmt.where(
        ScheduledSend.owner.is_(None))
    with ctx.db.write_session() as session:
        return session.execute(stmt).rowcount == 1


def heartbeat(ctx: DaemonContext) -> None:
    with ctx.db.write_session() as session:
        session.execute(update(ScheduledSend).where(
            ScheduledSend.owner == ctx.owner, ScheduledSend.state == S.SENDING,
        ).values(heartbeat_at=ctx.clock()))


def due_sends(ctx: DaemonContext) -> list[tuple[str, str]]:
    with ctx.db.session() as session:
        rows = session.execute(select(ScheduledSend.edition, ScheduledSend.segment).where(
            ScheduledSend.state == S.SCHEDULED, ScheduledSend.send_at <= ctx.clock(),
        ).order_by(ScheduledSend.send_at)).all()
    return [(r.edition, r.segment) for r in rows]


def sync_jobs(ctx: DaemonContext, scheduler: object) -> None:
    """Every 'scheduled' row has a job at its time (the rows are the truth). A job that has just
    fired is gone from the store while its row still says 'scheduled', so a due row without a
    job only gets a new one once it has been due for LOST_JOB_AFTER."""
    now = ctx.clock()
    with ctx.db.session() as session:
        rows = session.scalars(select(ScheduledSend).where(ScheduledSend.state == S.SCHEDULED)).all()
    for row in rows:
        job = scheduler.get_job(job_id(row.edition, row.segment), jobstore="default")  # type: ignore[attr-defined]
        if job is None and now - LOST_JOB_AFTER < row.send_at <= now:
            continue  # most likely fired a moment ago and running now
        if job is None or job.next_run_time is None or abs(
            (job.next_run_time - row.send_at).total_seconds()
        ) > 1:
            log.info("%s: (re)creating its job for %s", job_id(row.edition, row.segment),
                     describe(row.send_at, row.zone))
            register_job(scheduler, row.edition, row.segment, row.send_at)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the daemon


def start_heartbeat(ctx: DaemonContext, done: threading.Event) -> threading.Thread:
    """Renew this daemon's heartbeat every HEARTBEAT_INTERVAL until `done` is set. A thread of
    its own, never a pool job: with every pool thread busy sending, a pooled heartbeat would
    starve and other daemons would take over sends that are alive."""

    def beat() -> None:
        while True:
            try:
                heartbeat(ctx)
            except Exception:
                log.exception("heartbeat failed; will retry")
            if done.wait(HEARTBEAT_INTERVAL.total_seconds()):
                return

    beater = threading.Thread(target=beat, name="heartbeat", daemon=True)
    beater.start()
    return beater


def run_once(ctx: DaemonContext) -> None:
    """Resume interrupted sends, run every due job now, and return."""
    done = threading.Event()
    beater = start_heartbeat(ctx, done)
    try:
        resume_orphans(ctx)
        due = due_sends(ctx)
        for edition, segment in due:
            execute_send(ctx, edition, segment)
    finally:
        done.set()
        beater.join()
    registry = JobRegistry(ctx.db)
    for edition, segment in due:
        registry.remove(edition, segment)


def run_daemon(ctx: DaemonContext, *, poll_seconds: float = 5.0,
               stop: threading.Event | None = None) -> None:
    """Run until `stop` is set, SIGTERM or Ctrl-C; running sends are finished first."""
    global _context
    _context = ctx
    stop = stop or threading.Event()
    scheduler = make_scheduler(ctx.db)

    def submit(send: ScheduledSendInfo) -> None:
        scheduler.add_job(_deliver, args=[ctx, send], id=f"resume:{send.job_id}",
                          jobstore="local", replace_existing=True)

    def housekeeping() -> None:
        try:
            sync_jobs(ctx, scheduler)
            resume_orphans(ctx, submit)
        except Exception:
            log.exception("housekeeping failed; will retry")

    now = datetime.now(UTC)
    scheduler.add_job(housekeeping, "interval", seconds=poll_seconds, id="housekeeping",
                      jobstore="local", executor="housekeeping", next_run_time=now)
    beating = threading.Event()
    beater = start_heartbeat(ctx, beating)
    restore = _install_signal_handlers(stop)
    log.info("scheduler started (owner %s, misfire grace %s, checking every %s s)",
             ctx.owner, _span(ctx.grace), poll_seconds)
    scheduler.start()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        log.info("interrupted; stopping")
    finally:
        with ctx.lock:
            running = sorted(ctx.running)
        if running:
            log.info("stopping: waiting for %s to finish (signal again to abort; the send "
                     "resumes on the next start)", ", ".join(running))
        scheduler.shutdown(wait=True)
        beating.set()
        beater.join()
        restore()
        _context = None
        log.info("scheduler stopped")


def _install_signal_handlers(stop: threading.Event) -> Callable[[], None]:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():
            log.warning("second signal: exiting now")
            os._exit(128 + signum)
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    old_term = signal.signal(signal.SIGTERM, on_signal)
    old_int = signal.signal(signal.SIGINT, on_signal)

    def restore() -> None:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)

    return restore
