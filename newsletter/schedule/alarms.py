"""The daemon's alarm clock: APScheduler 3 with its jobs in memory only, fed from the rows.

`AlarmClock.reconcile(wanted)` makes the in-memory jobs match the `scheduled_sends` rows that
are waiting: one job per send (id `EDITION:SEGMENT`) at the row's send time, added, moved or
removed as the rows were. The daemon calls it on start and every poll, so a send scheduled,
moved or cancelled by any process is on this clock within one poll. A job only wakes the daemon
for a send; what happens then is decided from the row, so a job that rings late, twice, or for
a row changed meanwhile does no harm.

Nothing here is persistent: a restarted daemon rebuilds its alarms from the rows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger

from newsletter.models import utcnow

SendKey = tuple[str, str]  # (edition, segment)
HOUSEKEEPING = "housekeeping"


def alarm_id(key: SendKey) -> str:
    return f"{key[0]}:{key[1]}"


class AlarmClock:
    """Rings `ring(edition, segment)` at each wanted send time, on one of `threads` threads, and
    runs the housekeeping function every `poll` on a thread of its own (so it runs even while
    every send thread is busy)."""

    def __init__(self, ring: Callable[[str, str], None], *, threads: int) -> None:
        self._ring = ring
        self._threads = threads
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(threads), HOUSEKEEPING: ThreadPoolExecutor(1)},
            # A late alarm still rings: the daemon decides whether it is past the misfire grace
            # and records it (APScheduler would skip it silently).
            job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
            timezone=UTC,
        )
        self._lock = threading.Lock()
        self._armed: dict[SendKey, datetime] = {}  # the time each send's alarm was set for
        self._stopped = False

    def start(self, housekeeping: Callable[[], None], *, poll: timedelta) -> None:
        """Start ringing; `housekeeping` runs at once and then every `poll`."""
        self._scheduler.add_job(
            housekeeping, "interval", seconds=poll.total_seconds(), id=HOUSEKEEPING,
            executor=HOUSEKEEPING, next_run_time=utcnow(),
        )
        self._scheduler.start()

    def reconcile(self, wanted: Mapping[SendKey, datetime]) -> list[SendKey]:
        """Make the alarms match `wanted` (each waiting send and its time); returns the sends
        whose alarm was set or moved. A send whose alarm already rang for the same time is not
        set again until that ringing has finished: if its row is still waiting then, the next
        reconcile sets it once more (it rings at once)."""
        changed: list[SendKey] = []
        with self._lock:
            if self._stopped:
                return changed
            for key in [k for k in self._armed if k not in wanted]:
                del self._armed[key]
                self._remove(key)
            for key, at in wanted.items():
                if self._armed.get(key) == at:
                    continue
                self._armed[key] = at
                self._scheduler.add_job(
                    self._rang, trigger=DateTrigger(run_date=at, timezone=UTC), args=[key, at],
                    id=alarm_id(key), name=f"send {alarm_id(key)}", replace_existing=True,
                    # A send moved to a time already due may ring while its earlier ringing is
                    # still deciding; the row's compare-and-set lets only one of them send.
                    max_instances=self._threads,
                )
                changed.append(key)
        return changed

    def run_now(self, name: str, work: Callable[[], None]) -> bool:
        """Run `work` on a send thread as soon as one is free; False once stopping."""
        with self._lock:
            if self._stopped:
                return False
            self._scheduler.add_job(work, id=name, name=name, replace_existing=True)
            return True

    def stop(self) -> None:
        """Ring nothing more, and wait for the work that is running to finish."""
        with self._lock:
            self._stopped = True
            # Emptied first: APScheduler 3 still looks for due jobs once after shutdown().
            self._scheduler.remove_all_jobs()
        self._scheduler.shutdown(wait=True)

    def _rang(self, key: SendKey, at: datetime) -> None:
        try:
            self._ring(*key)
        finally:
            with self._lock:
                if self._armed.get(key) == at:
                    del self._armed[key]

    def _remove(self, key: SendKey) -> None:
        try:
            self._scheduler.remove_job(alarm_id(key))
        except JobLookupError:
            pass  # it rang (and is ringing now) or was never added
