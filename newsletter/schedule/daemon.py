"""`newsletter scheduler run`: the daemon that sends scheduled editions.

The `scheduled_sends` rows are the one truth. A send is due when its row is 'scheduled' and its
send_at has passed; the daemon's alarm clock (newsletter.schedule.alarms: APScheduler, jobs in
memory only) just decides when to look. On start and every poll the daemon reads the waiting rows
and sets its alarms from them, so sends scheduled, moved or cancelled by any process are honoured
within one poll, and nothing but the rows survives a restart.

When an alarm rings, `Daemon.execute_send` decides, and records, what happens:
- not 'scheduled' any more (cancelled, or another daemon has it) → nothing;
- not due yet (moved later) → nothing; the alarm is set again for the new time;
- later than the misfire grace, or outside the segment's send window → 'missed', nothing sent;
- the manifest, its articles, the template or the frozen build changed → 'stale', nothing sent;
- otherwise scheduled → sending by compare-and-set (one daemon wins), deliver, then 'sent' or
  'failed'. Delivery itself is guarded by its own run claim, so even a stolen race cannot
  double-send.
Each outcome but a plain on-time send is told to the comms team (newsletter.schedule.notices:
stale naming the changed file, missed, failed, uncertain), and so is a short "sent" summary.
Every poll the daemon also re-checks each waiting send 24 h and 1 h before its time
(newsletter.schedule.risk): one whose approved inputs changed is reported *at risk*, naming the
file, while there is still time to approve the new text. Each check is claimed on the row
(compare-and-set on checked_at), and each notice is recorded once per reason, so two daemons
check and tell once.
A send left 'sending' by a daemon that died (kill -9) is resumed through the delivery code, which
picks up where it stopped. Whether its daemon is gone is delivery's lease rule
(newsletter.delivery.owner_alive): the daemon renews a heartbeat on the rows it sends every
HEARTBEAT_INTERVAL, and counts as gone when that is older than HEARTBEAT_TIMEOUT or, on this
host, when its process has exited.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update

from newsletter.config import Settings
from newsletter.content import SendWindow, describe
from newsletter.db import Database
from newsletter.delivery import EditionPaused, make_transport, new_owner_id, owner_alive, retry_notices, send_edition
from newsletter.errors import DeliveryError
from newsletter.models import ScheduledSend, ScheduleState, utcnow
from newsletter.schedule.alarms import AlarmClock, SendKey
from newsletter.schedule.digests import Occurrences
from newsletter.schedule.notices import at_risk_notice, outcome_notice, sent_notice, tell, uncertain_notice
from newsletter.schedule.planning import ScheduledSendInfo, check_send, info_of, send_key, set_state
from newsletter.schedule.risk import Risk, RiskChecker, check_due

log = logging.getLogger(__name__)
S = ScheduleState


@dataclass(frozen=True)
class Delivered:
    """What delivering one send did: the note for its row, and recipient counts by outcome."""

    note: str | None
    accepted: int = 0
    failed: int = 0
    uncertain: int = 0


# Sends one frozen variant; returns what happened (or just a note, or None). Raising marks the
# send failed.
Deliver = Callable[[ScheduledSendInfo], Delivered | str | None]
Clock = Callable[[], datetime]
HEARTBEAT_INTERVAL = timedelta(seconds=10)
HEARTBEAT_TIMEOUT = timedelta(seconds=60)
SEND_THREADS = 8


def delivery_sender(db: Database, settings: Settings) -> Deliver:
    """The real delivery: send exactly the frozen build's variant to the segment."""

    def deliver(send: ScheduledSendInfo) -> Delivered:
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
        return Delivered(", ".join(notes) or None, sum(r.accepted for r in reports),
                         sum(r.failed for r in reports), sum(r.uncertain for r in reports))

    return deliver


def frozen_build_problem(settings: Settings, send: ScheduledSendInfo) -> str | None:
    """Why the approved build can no longer be sent as approved (naming the changed files and
    what to run), or None if it can."""
    risk = check_send(RiskChecker(settings), send, due=True)
    if risk is None:
        return None
    return f"not sent: {risk.reason} after scheduling; {risk.fix}"


@dataclass(frozen=True)
class RunSummary:
    """What one `run_once` did: each send it decided on and the state it left it in, and the
    waiting sends it found at risk."""

    outcomes: dict[str, str] = field(default_factory=dict)  # EDITION:SEGMENT (or "digest NAME DATE") -> state
    notes: dict[str, str] = field(default_factory=dict)  # EDITION:SEGMENT -> the row's note
    at_risk: tuple[tuple[ScheduledSendInfo, Risk], ...] = ()

    @property
    def problems(self) -> list[str]:
        """One line per send that went stale, was missed or failed, and per send at risk."""
        lines = [f"{key}: {state}: {self.notes.get(key) or ''}".rstrip(": ")
                 for key, state in self.outcomes.items() if state in (S.STALE, S.MISSED, S.FAILED)]
        lines += [f"{send.key} at risk ({send.local_time}): {risk.reason}; {risk.fix}" for send, risk in self.at_risk]
        return lines


def daemon_for(settings: Settings, db: Database, *, deliver: Deliver | None = None,
               grace_minutes: float | None = None, clock: Clock = utcnow) -> Daemon:
    """A daemon with the project's settings: real delivery, the configured misfire grace."""
    minutes = settings.misfire_grace_minutes if grace_minutes is None else grace_minutes
    return Daemon(db, settings, deliver or delivery_sender(db, settings),
                  grace=timedelta(minutes=minutes), clock=clock)


class Daemon:
    """One scheduler process: what it sends with, its owner id, and the sends it is working on.
    Its alarms call its own methods, so several daemons (or tests) can live in one process."""

    def __init__(
        self, db: Database, settings: Settings, deliver: Deliver, *, grace: timedelta,
        clock: Clock = utcnow, heartbeat_interval: timedelta = HEARTBEAT_INTERVAL,
        heartbeat_timeout: timedelta = HEARTBEAT_TIMEOUT, threads: int = SEND_THREADS,
    ) -> None:
        self.db, self.settings, self.deliver, self.grace = db, settings, deliver, grace
        self.clock = clock
        self.heartbeat_interval, self.heartbeat_timeout = heartbeat_interval, heartbeat_timeout
        self.threads = threads
        self.owner = new_owner_id()
        # recurring digests: each occurrence prepared by one daemon (issues/digests/*.yaml)
        self.occurrences = Occurrences(db, settings, owner=self.owner, clock=clock, grace=grace,
                                       heartbeat_timeout=heartbeat_timeout)
        self._lock = threading.Lock()
        self._running: set[str] = set()

    @property
    def running(self) -> list[str]:
        """The sends this daemon is deciding on or sending now (EDITION:SEGMENT)."""
        with self._lock:
            return sorted(self._running)

    @contextmanager
    def _working_on(self, key: str) -> Iterator[None]:
        with self._lock:
            self._running.add(key)
        try:
            yield
        finally:
            self._done(key)

    def _done(self, key: str) -> None:
        with self._lock:
            self._running.discard(key)

    # -------------------------------------------------------------- one send

    def execute_send(self, edition: str, segment: str) -> str | None:
        """Decide on one send that may be due; returns the state it left the send in (None if
        there is no such send, or it changed under us)."""
        key = send_key(edition, segment)
        row = self._load(edition, segment)
        if row is None:
            log.warning("%s: no such scheduled send; nothing to do", key)
            return None
        if row.state != S.SCHEDULED:
            log.info("%s: %s, nothing to do", key, row.state)
            return row.state
        send = info_of(row)
        now = self.clock()
        if now < send.send_at:
            log.info("%s: not due until %s (moved?); leaving it", key, send.local_time)
            return row.state
        late = now - send.send_at
        if late > self.grace:
            note = (f"not sent: the scheduler reached it {_span(late)} after {send.local_time}, "
                    f"beyond the misfire grace of {_span(self.grace)}")
            return self._finish(send, S.MISSED, note, expect=[S.SCHEDULED])
        if send.window and not SendWindow.parse(send.window).contains(now, send.zone):
            note = f"not sent: {describe(now, send.zone)} is outside the send window {send.window}"
            return self._finish(send, S.MISSED, note, expect=[S.SCHEDULED])
        problem = frozen_build_problem(self.settings, send)
        if problem:
            return self._finish(send, S.STALE, problem, expect=[S.SCHEDULED])
        if not set_state(self.db, edition, segment, S.SENDING, expect=[S.SCHEDULED],
                         unchanged_since=row.updated_at, owner=self.owner, heartbeat_at=now):
            log.info("%s: another scheduler took it, or it was rescheduled meanwhile", key)
            return None
        log.info("%s: sending (%s late) from %s", key, _span(late), send.build_dir)
        return self._deliver(send)

    def _deliver(self, send: ScheduledSendInfo) -> str:
        try:
            result = self.deliver(send)
        except EditionPaused as exc:  # the complaint guard: the notice says to resume first
            return self._finish(send, S.FAILED, f"delivery failed: {exc}", expect=[S.SENDING],
                                owned_by=self.owner, paused=True)
        except Exception as exc:
            log.exception("%s: delivery failed", send.key)
            return self._finish(send, S.FAILED, f"delivery failed: {exc}", expect=[S.SENDING],
                                owned_by=self.owner)
        delivered = result if isinstance(result, Delivered) else Delivered(result)
        state = self._finish(send, S.SENT, delivered.note, expect=[S.SENDING], owned_by=self.owner,
                             tell_outcome=False)
        if state == S.SENT:
            tell(self.db, self.settings, sent_notice(send, delivered.note))
            if delivered.uncertain:
                tell(self.db, self.settings, uncertain_notice(send, delivered.uncertain))
            if delivered.failed:
                tell(self.db, self.settings, outcome_notice(
                    send, S.FAILED, f"{delivered.failed:,} recipient(s) failed; run `newsletter sends show "
                    f"{send.edition}` for the reasons, then the same send again to retry them"))
        return state

    def _finish(self, send: ScheduledSendInfo, state: str, note: str | None, *,
                expect: list[ScheduleState], owned_by: str | None = None, tell_outcome: bool = True,
                paused: bool = False) -> str:
        if set_state(self.db, send.edition, send.segment, state, expect=expect, note=note,
                     owned_by=owned_by):
            log.log(logging.INFO if state == S.SENT else logging.WARNING, "%s: %s%s", send.key,
                    state, f" — {note}" if note else "")
            if tell_outcome and state in (S.STALE, S.MISSED, S.FAILED):
                tell(self.db, self.settings, outcome_notice(send, state, note, paused=paused))
            return state
        row = self._load(send.edition, send.segment)
        log.info("%s: not marked %s; it is now %s", send.key, state, row.state if row else "gone")
        return row.state if row else "gone"

    def _load(self, edition: str, segment: str) -> ScheduledSend | None:
        with self.db.session() as session:
            return session.scalar(select(ScheduledSend).where(
                ScheduledSend.edition == edition, ScheduledSend.segment == segment))

    # -------------------------------------------------------------- what the rows say

    def waiting_sends(self) -> dict[SendKey, ScheduledSendInfo]:
        """Every send still to go out ('scheduled'), due or not."""
        with self.db.session() as session:
            rows = session.scalars(select(ScheduledSend).where(ScheduledSend.state == S.SCHEDULED)).all()
        return {(r.edition, r.segment): info_of(r) for r in rows}

    def due_sends(self) -> list[SendKey]:
        """The sends due now: 'scheduled' with their time passed (oldest first)."""
        with self.db.session() as session:
            rows = session.execute(select(ScheduledSend.edition, ScheduledSend.segment).where(
                ScheduledSend.state == S.SCHEDULED, ScheduledSend.send_at <= self.clock(),
            ).order_by(ScheduledSend.send_at)).all()
        return [(r.edition, r.segment) for r in rows]

    # -------------------------------------------------------------- re-checks before the time

    def check_waiting(self) -> list[tuple[ScheduledSendInfo, Risk]]:
        """Re-check each waiting send whose checkpoint (24 h, 1 h before its time) has come and
        was not checked since; tell the comms team about each one at risk. Each check is claimed
        on its row, so of several daemons one does it. Returns the sends found at risk."""
        now = self.clock()
        checker = RiskChecker(self.settings)
        found = []
        for send in self.waiting_sends().values():
            if send.send_at <= now:
                continue  # due: execute_send decides (and says) whether it is stale
            if check_due(send.send_at, send.checked_at, now) is None or not self._claim_check(send, now):
                continue
            risk = check_send(checker, send)
            if risk is None:
                log.info("%s: checked: still as approved", send.key)
                continue
            log.warning("%s: at risk: %s; %s", send.key, risk.reason, risk.fix)
            tell(self.db, self.settings, at_risk_notice(send, risk))
            found.append((send, risk))
        return found

    def _claim_check(self, send: ScheduledSendInfo, now: datetime) -> bool:
        stmt = update(ScheduledSend).where(
            ScheduledSend.edition == send.edition, ScheduledSend.segment == send.segment,
            ScheduledSend.state == S.SCHEDULED,
            ScheduledSend.checked_at.is_(None) if send.checked_at is None else ScheduledSend.checked_at == send.checked_at,
        ).values(checked_at=now, updated_at=ScheduledSend.updated_at)  # a check is no reschedule
        with self.db.write_session() as session:
            return session.execute(stmt).rowcount == 1

    # -------------------------------------------------------------- crash recovery

    def resume_orphans(self, submit: Callable[[ScheduledSendInfo], None] | None = None) -> list[str]:
        """Take over sends left 'sending' by a daemon that is gone, and finish them through the
        delivery code (here, or handed to `submit`). Returns the sends taken over."""
        with self.db.session() as session:
            rows = session.scalars(select(ScheduledSend).where(ScheduledSend.state == S.SENDING)).all()
        taken = []
        now = self.clock()
        for row in rows:
            key = send_key(row.edition, row.segment)
            if key in self.running:
                continue  # running in one of our threads
            # Ours but not running: its thread stopped before recording the outcome (say, the
            # database was away); our heartbeat keeps others off it, so we take it up again.
            if row.owner != self.owner and owner_alive(
                row.owner, row.heartbeat_at, self.heartbeat_timeout, now=now
            ):
                continue
            if not self._claim_orphan(row):
                continue  # another daemon took it first
            log.warning("%s: resuming a send interrupted in %s", key, row.owner)
            taken.append(key)
            with self._lock:  # from now until _resume has finished, even while it waits for a thread
                self._running.add(key)
            if submit is None:
                self._resume(info_of(row))
            else:
                submit(info_of(row))
        return taken

    def _resume(self, send: ScheduledSendInfo) -> None:
        """Finish a send taken over by resume_orphans (which marked it running)."""
        try:
            self._deliver(send)
        except Exception:  # could not record the outcome: still 'sending', ours
            log.exception("%s: could not be finished; trying again at the next poll", send.key)
        finally:
            self._done(send.key)

    def _claim_orphan(self, row: ScheduledSend) -> bool:
        stmt = update(ScheduledSend).where(
            ScheduledSend.id == row.id, ScheduledSend.state == S.SENDING,
        ).values(owner=self.owner, heartbeat_at=self.clock())
        stmt = stmt.where(ScheduledSend.owner == row.owner) if row.owner else stmt.where(
            ScheduledSend.owner.is_(None))
        with self.db.write_session() as session:
            return session.execute(stmt).rowcount == 1

    def heartbeat(self) -> None:
        """Renew the lease on every send (and digest occurrence being prepared) this daemon holds."""
        with self.db.write_session() as session:
            session.execute(update(ScheduledSend).where(
                ScheduledSend.owner == self.owner, ScheduledSend.state == S.SENDING,
            ).values(heartbeat_at=self.clock()))
        self.occurrences.heartbeat()

    def _start_heartbeat(self, done: threading.Event) -> threading.Thread:
        """Renew the heartbeat every heartbeat_interval until `done` is set. A thread of its own,
        never a pool job: with every send thread busy, a pooled heartbeat would starve and other
        daemons would take over sends that are alive."""

        def beat() -> None:
            while True:
                try:
                    self.heartbeat()
                except Exception:
                    log.exception("heartbeat failed; will retry")
                if done.wait(self.heartbeat_interval.total_seconds()):
                    return

        beater = threading.Thread(target=beat, name="heartbeat", daemon=True)
        beater.start()
        return beater

    # -------------------------------------------------------------- running

    def run_once(self) -> RunSummary:
        """Resume interrupted sends, re-check waiting sends at their checkpoints, send everything
        due now, and return what happened."""
        done = threading.Event()
        beater = self._start_heartbeat(done)
        outcomes: dict[str, str] = {}
        notes: dict[str, str] = {}
        try:
            retry_notices(self.db, self.settings)
            for key in self.resume_orphans():
                outcomes[key] = "resumed"
            at_risk = self.check_waiting()
            for label, prepare in self.occurrences.tick():
                outcomes[label] = prepare()
            for edition, segment in self.due_sends():
                key = send_key(edition, segment)
                state = self.execute_send(edition, segment)
                if state is not None:
                    outcomes[key] = state
                    row = self._load(edition, segment)
                    if row is not None and row.note:
                        notes[key] = row.note
        finally:
            done.set()
            beater.join()
        return RunSummary(outcomes, notes, tuple(at_risk))

    def run(self, *, poll_seconds: float = 5.0, stop: threading.Event | None = None) -> None:
        """Run until `stop` is set, SIGTERM or Ctrl-C; running sends are finished first."""
        stop = stop or threading.Event()
        alarms = AlarmClock(self._ring, threads=self.threads)

        def submit(send: ScheduledSendInfo) -> None:
            if not alarms.run_now(f"resume:{send.key}", lambda: self._resume(send)):
                self._done(send.key)
                log.info("%s: stopping; it resumes on the next start", send.key)

        def housekeeping() -> None:
            try:
                waiting = self.waiting_sends()
                for key in alarms.reconcile({k: send.send_at for k, send in waiting.items()}):
                    log.info("%s: due %s", waiting[key].key, waiting[key].local_time)
                self.resume_orphans(submit)
            except Exception:
                log.exception("housekeeping failed; will retry")
            try:
                self.check_waiting()
                retry_notices(self.db, self.settings)
            except Exception:
                log.exception("re-checking waiting sends failed; will retry")
            try:
                for label, prepare in self.occurrences.tick():
                    if not alarms.run_now(label, prepare):
                        log.info("%s: stopping; another scheduler (or the next start) prepares it", label)
            except Exception:
                log.exception("recurring digests: could not look for due occurrences; will retry")

        beating = threading.Event()
        beater = self._start_heartbeat(beating)
        restore = _install_signal_handlers(stop)
        log.info("scheduler started (owner %s, misfire grace %s, checking every %s s)",
                 self.owner, _span(self.grace), poll_seconds)
        alarms.start(housekeeping, poll=timedelta(seconds=poll_seconds))
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            log.info("interrupted; stopping")
        finally:
            if self.running:
                log.info("stopping: waiting for %s to finish (signal again to abort; the send "
                         "resumes on the next start)", ", ".join(self.running))
            alarms.stop()
            beating.set()
            beater.join()
            restore()
            log.info("scheduler stopped")

    def _ring(self, edition: str, segment: str) -> None:
        key = send_key(edition, segment)
        with self._working_on(key):
            try:
                self.execute_send(edition, segment)
            except Exception:  # e.g. the database is away: its row still says 'scheduled'
                log.exception("%s: could not be handled; trying again at the next poll", key)


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 1:
        return f"{max(delta.total_seconds(), 0):.0f} s"
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


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
