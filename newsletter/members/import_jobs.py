"""Member imports started from the console: a job row in the database holds the progress (bytes of
the file read) and, when done, the result, so a progress bar on any worker can follow it.

    job = start_import_job(db, saved_file, "members.csv", actor="admin:ann@…", dry_run=True, workdir=…)
    run_import_job(db, job)          # in a background thread; import_file does the work
    import_job(db, job)              # state, done/total, result, report file

A dry run writes nothing (import_file rolls each chunk back) but reports exactly what the real
import would do; the reject report (CSV: row, reason, the original cells) is kept beside the file, which is
deleted once imported for real.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import update

from newsletter.db import Database
from newsletter.errors import InputError, NewsletterError, NotFound
from newsletter.members.imports import ImportResult, import_file
from newsletter.models import ImportJob, utcnow

PROGRESS_EVERY = 0.25  # seconds between progress writes
SUFFIXES = (".csv", ".xlsx", ".txt", ".tsv")


@dataclass(frozen=True)
class ImportJobView:
    id: int
    actor: str
    filename: str
    dry_run: bool
    state: str
    done: int
    total: int
    result: dict[str, Any]
    error: str | None
    report_path: Path | None
    created_at: datetime
    finished_at: datetime | None

    @property
    def percent(self) -> int:
        if self.state != "running":
            return 100
        return int(100 * self.done / self.total) if self.total else 0

    @property
    def source_path(self) -> Path | None:
        return self.report_path.parent / f"upload{Path(self.filename).suffix.lower()}" if self.report_path else None


def _view(job: ImportJob) -> ImportJobView:
    return ImportJobView(job.id, job.actor, job.filename, job.dry_run, job.state, job.done, job.total,
                         dict(job.result or {}), job.error, Path(job.report_path) if job.report_path else None,
                         job.created_at, job.finished_at)


def start_import_job(db: Database, data: bytes, filename: str, *, actor: str, dry_run: bool, workdir: Path) -> int:
    """Keep the uploaded file under `workdir/<job id>/` and record a running job; returns its id."""
    suffix = Path(filename).suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"{filename!r} is not a CSV or XLSX file", hint="export the spreadsheet as .csv or .xlsx")
    if not data:
        raise InputError(f"{filename!r} is empty")
    with db.write_session() as session:
        job = ImportJob(actor=actor[:200], filename=Path(filename).name[:300], dry_run=dry_run, state="running",
                        total=len(data), created_at=utcnow())
        session.add(job)
        session.flush()
        folder = workdir / str(job.id)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        (folder / f"upload{suffix}").write_bytes(data)
        job.report_path = str(folder / "report.csv")
        return job.id


def again_as_import(db: Database, job_id: int, *, actor: str, workdir: Path) -> int:
    """After a dry run: the same file imported for real (a new job)."""
    job = import_job(db, job_id)
    if job.source_path is None or not job.source_path.is_file():
        raise NotFound(f"the file of import {job_id} is no longer kept; upload it again")
    return start_import_job(db, job.source_path.read_bytes(), job.filename, actor=actor, dry_run=False, workdir=workdir)


def _result(result: ImportResult) -> dict[str, Any]:
    return {**result.counts(), "kept_manual": result.kept_manual, "dry_run": result.dry_run,
            "warnings": result.warnings[:50],
            "rejects": [{"row": r.row, "reason": r.reason, "email": r.email} for r in result.rejects[:200]],
            "changes": [{"row": c.row, "email": c.email, "what": c.describe()} for c in result.changes[:200]]}


def run_import_job(db: Database, job_id: int) -> None:
    """Do the import (in a background thread); the job row says how far it got and how it ended."""
    job = import_job(db, job_id)
    source = job.source_path
    assert source is not None and job.report_path is not None
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY or done >= total:
            last[0] = now
            with db.session() as session:
                session.execute(update(ImportJob).where(ImportJob.id == job_id).values(done=done, total=max(total, 1)))

    values: dict[str, Any]
    try:
        result = import_file(db, source, source=job.filename, dry_run=job.dry_run, report_path=job.report_path,
                             progress=progress, chunk_rows=500)
        values = {"state": "done", "result": _result(result)}
    except NewsletterError as exc:
        values = {"state": "failed", "error": exc.explained}
    except Exception as exc:  # the job must end, whatever happened; the page says what
        values = {"state": "failed", "error": f"{exc.__class__.__name__}: {exc}"}
    with db.session() as session:
        session.execute(update(ImportJob).where(ImportJob.id == job_id).values(finished_at=utcnow(), **values))
    if not job.dry_run:
        source.unlink(missing_ok=True)  # imported: only the report (rejects and changes) is kept


def import_job(db: Database, job_id: int) -> ImportJobView:
    with db.session() as session:
        job = session.get(ImportJob, job_id)
        if job is None:
            raise NotFound(f"no import {job_id}")
        return _view(job)
