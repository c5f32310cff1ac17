"""Where each edition stands, for the console's list and `newsletter` users alike: every manifest
in issues/, its problems (file:line:col), and per segment whether it is unscheduled, scheduled
(when), sending, sent, missed, stale, cancelled or failed; a send made directly with `send` counts
too. The state of the whole edition:

    draft      the manifest has problems (`check` lists them)
    checked    the manifest is clean; nothing scheduled or sent yet
    scheduled  some segment waits for its time, none has gone yet
    sending    some segment is going out now
    partly sent / sent   some / every segment went out
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from newsletter.config import Settings
from newsletter.content import check_manifest, load_manifest
from newsletter.content import zone as time_zone
from newsletter.db import Database
from newsletter.delivery import edition_pause
from newsletter.errors import NotFound, Problem, ProblemsError
from newsletter.members import stored_defined_segments
from newsletter.models import ScheduledSend, ScheduleState, SendRun
from newsletter.render import build_edition

ISSUES = "issues"


@dataclass(frozen=True)
class SegmentState:
    segment: str
    state: str  # "unscheduled", a ScheduleState, or the send run's status ("sent directly")
    send_at: datetime | None  # UTC
    zone: str
    note: str | None = None
    run_id: int | None = None

    @property
    def local_time(self) -> str:
        if self.send_at is None:
            return ""
        return self.send_at.astimezone(time_zone(self.zone)).strftime("%Y-%m-%d %H:%M %Z")


@dataclass(frozen=True)
class EditionSummary:
    edition: str
    title: str
    manifest: Path
    problems: tuple[Problem, ...]
    segments: tuple[SegmentState, ...]
    paused: bool = False

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def state(self) -> str:
        if self.errors:
            return "draft"
        states = [s.state for s in self.segments]
        gone = [s for s in states if s in ("sent", "finished", "incomplete")]
        if any(s in ("sending", "frozen") for s in states):
            return "sending"
        if gone:
            return "sent" if len(gone) == len(states) else "partly sent"
        if any(s == "scheduled" for s in states):
            return "scheduled"
        return "checked"


def manifests(settings: Settings) -> list[Path]:
    folder = settings.project_dir / ISSUES
    return sorted(p for p in folder.glob("*.yaml") if p.is_file()) if folder.is_dir() else []


def _summary(db: Database, settings: Settings, path: Path, rows: dict[str, list[ScheduledSend]],
             runs: dict[str, list[SendRun]]) -> EditionSummary:
    known = stored_defined_segments(db, settings.project_dir)
    problems = tuple(check_manifest(path, settings, known))
    edition_id, title, names, zone_name = path.stem, path.stem, [], settings.timezone
    default_times: dict[str, datetime | None] = {}
    if not any(p.severity == "error" for p in problems):
        try:
            edition = load_manifest(path, settings, known)
        except ProblemsError as exc:
            problems = tuple(exc.problems)
        else:
            edition_id, title = edition.id, edition.title
            names = [v.segment for v in edition.variants]
            default_times = {v.segment: v.send_at for v in edition.variants}
            zone_name = edition.variants[0].zone if edition.variants else zone_name
    scheduled = {r.segment: r for r in rows.get(edition_id, [])}
    sent = {r.segment: r for r in runs.get(edition_id, [])}
    states = []
    for name in list(dict.fromkeys([*names, *scheduled, *sent])):
        row, run = scheduled.get(name), sent.get(name)
        if row is not None and (run is None or row.state in (ScheduleState.SENDING, ScheduleState.SENT)):
            states.append(SegmentState(name, row.state, row.send_at, row.zone, row.note, run.id if run else None))
        elif run is not None:
            states.append(SegmentState(name, run.status, run.started_at, zone_name, "sent with `newsletter send`", run.id))
        else:
            states.append(SegmentState(name, "unscheduled", default_times.get(name), zone_name))
    pause = edition_pause(db, edition_id)
    return EditionSummary(edition_id, title, path, problems, tuple(states), bool(pause and pause.active))


def _rows(db: Database) -> tuple[dict[str, list[ScheduledSend]], dict[str, list[SendRun]]]:
    rows: dict[str, list[ScheduledSend]] = {}
    runs: dict[str, list[SendRun]] = {}
    with db.session() as session:
        for r in session.scalars(select(ScheduledSend).order_by(ScheduledSend.send_at)):
            rows.setdefault(r.edition, []).append(r)
        for run in session.scalars(select(SendRun).order_by(SendRun.id)):
            runs.setdefault(run.edition, []).append(run)
    return rows, runs


def edition_summaries(db: Database, settings: Settings) -> list[EditionSummary]:
    """Every manifest in issues/, newest edition first."""
    rows, runs = _rows(db)
    found = [_summary(db, settings, path, rows, runs) for path in manifests(settings)]
    return sorted(found, key=lambda e: e.edition, reverse=True)


def edition_summary(db: Database, settings: Settings, edition: str) -> EditionSummary:
    """One edition by its id (or its manifest's file name)."""
    rows, runs = _rows(db)
    for path in manifests(settings):
        summary = _summary(db, settings, path, rows, runs)
        if edition in (summary.edition, path.stem):
            return summary
    raise NotFound(f"no manifest for edition {edition!r} in {settings.project_dir / ISSUES}")


def proof_build(db: Database, settings: Settings, manifest: Path) -> Path:
    """Build the manifest for test sends and previews into build/tests/<edition> (never the folder a
    real send resumes from); reused while the inputs are the same."""
    known = stored_defined_segments(db, settings.project_dir)
    edition = load_manifest(manifest, settings, known)
    out = settings.project_dir / "build" / "tests" / edition.id
    return build_edition(manifest, settings, out, segments=known, reuse=True).out_dir
