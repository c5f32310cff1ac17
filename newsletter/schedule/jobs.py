"""APScheduler 3 wiring: jobs `EDITION:SEGMENT` in the database job store (table
`apscheduler_jobs`, created by APScheduler on first use), each calling
newsletter.schedule.daemon:run_job(edition, segment) at the send time."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.triggers.date import DateTrigger

from newsletter.db import Database

log = logging.getLogger("newsletter.schedule.planning")

JOB_FUNC = "newsletter.schedule.daemon:run_job"
JOB_TABLE = "apscheduler_jobs"


def job_id(edition: str, segment: str) -> str:
    return f"{edition}:{segment}"



class TolerantJobStore(SQLAlchemyJobStore):
    """The SQLAlchemy job store, safe for several schedulers on one table: APScheduler 3 removes a
    fired one-off job, and a second scheduler that fired it too must not crash on the removal."""

    def remove_job(self, job_id: str) -> None:
        try:
            super().remove_job(job_id)
        except JobLookupError:
            log.debug("job %s already removed by another scheduler", job_id)

    def start(self, scheduler: Any, alias: str) -> None:
        try:
            super().start(scheduler, alias)
        except Exception:  # two processes creating the table at once: the loser retries
            super().start(scheduler, alias)


class DaemonScheduler(BackgroundScheduler):
    """APScheduler 3 runs one more job-processing round after shutdown() (and then crashes on
    removing a fired job); a stopped scheduler must not fire anything."""

    def _process_jobs(self) -> float | None:
        if self.state == STATE_STOPPED:
            return None
        return super()._process_jobs()  # type: ignore[no-any-return]


def make_scheduler(db: Database, *, threads: int = 8) -> BackgroundScheduler:
    """The daemon's scheduler: the database job store ("default") plus an in-memory store
    ("local") for its own housekeeping. Jobs always run, however late: the job itself decides
    whether it is past the misfire grace and records it (APScheduler would skip silently)."""
    return DaemonScheduler(
        jobstores={
            "default": TolerantJobStore(engine=db.engine, tablename=JOB_TABLE),
            "local": MemoryJobStore(),
        },
        # housekeeping has a thread of its own, so it runs even while every send thread is busy
        executors={"default": ThreadPoolExecutor(threads), "housekeeping": ThreadPoolExecutor(1)},
        job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
        timezone=UTC,
    )


def register_job(scheduler: BackgroundScheduler, edition: str, segment: str, at: datetime) -> None:
    """Add or replace a send's job through a running scheduler (the daemon)."""
    scheduler.add_job(
        JOB_FUNC, trigger=DateTrigger(run_date=at, timezone=UTC), args=[edition, segment],
        id=job_id(edition, segment), name=f"send {edition} to {segment}",
        replace_existing=True, jobstore="default",
    )


class JobRegistry:
    """Writes jobs straight into the database job store, without starting a scheduler (a
    started one, even paused, can fire due jobs while shutting down)."""

    def __init__(self, db: Database) -> None:
        self._scheduler = make_scheduler(db, threads=1)  # never started: only owns the jobs
        self.store = TolerantJobStore(engine=db.engine, tablename=JOB_TABLE)
        self.store.start(self._scheduler, "default")

    def put(self, edition: str, segment: str, at: datetime) -> None:
        job = Job(
            self._scheduler, id=job_id(edition, segment), func=JOB_FUNC,
            trigger=DateTrigger(run_date=at, timezone=UTC), executor="default",
            args=(edition, segment), kwargs={}, name=f"send {edition} to {segment}",
            misfire_grace_time=None, coalesce=True, max_instances=1, next_run_time=at,
        )
        try:
            self.store.update_job(job)
        except JobLookupError:
            try:
                self.store.add_job(job)
            except ConflictingIdError:
                self.store.update_job(job)

    def remove(self, edition: str, segment: str) -> None:
        self.store.remove_job(job_id(edition, segment))

    def jobs(self) -> dict[str, datetime | None]:
        return {job.id: job.next_run_time for job in self.store.get_all_jobs()}
