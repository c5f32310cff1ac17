"""`newsletter demo`: a tour of the tool on the sample project, offline (SQLite, no API key).

A demo is a sequence of small step functions, each adding its results to the report:
build the sample edition → import the sample members and count the segments → send every variant
to the outbox → schedule the edition and cancel it again.

The demo keeps its own database and outbox under build/demo/ and starts them afresh each run, so
it can be run any number of times and never touches the project's real database.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

from newsletter.config import Settings
from newsletter.content import zone
from newsletter.db import open_database
from newsletter.delivery import RunReport, make_transport, new_secret, send_edition, write_secret_file
from newsletter.errors import InputError, ScheduleError
from newsletter.members import import_sample
from newsletter.models import utcnow
from newsletter.render import Build, build_edition
from newsletter.schedule import cancel, schedule_edition

SAMPLE_MANIFEST = Path("issues") / "2026-12.yaml"
DEMO_DIR = Path("build") / "demo"


@dataclass(frozen=True)
class DemoReport:
    manifest: Path
    demo_settings: Settings
    build: Build | None = None
    import_counts: dict[str, int] = field(default_factory=dict)
    segment_counts: tuple[dict[str, object], ...] = ()
    send_reports: tuple[RunReport, ...] = ()
    outbox_dir: Path | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


DemoStep = Callable[[Settings, DemoReport], DemoReport]


def step_build(settings: Settings, report: DemoReport) -> DemoReport:
    """Build every variant of the sample edition into <project>/build/<edition id>/."""
    result = build_edition(report.manifest, settings)
    note = f"built {len(result.variants)} variants of {result.edition_id} into {result.out_dir}"
    return replace(report, build=result, notes=report.notes + (note,))


def step_subscribers(settings: Settings, report: DemoReport) -> DemoReport:
    """Import subscribers/sample.csv into the demo database and count every segment."""

    db = open_database(report.demo_settings.resolved_database_url)
    try:
        result, counts = import_sample(db, settings.project_dir)
    finally:
        db.dispose()
    return replace(report, import_counts=result.counts(), segment_counts=tuple(counts))


def step_send(settings: Settings, report: DemoReport) -> DemoReport:
    """Send every variant of the build to the outbox (one JSON request file per batch)."""

    assert report.build is not None, "step_send needs step_build first"
    demo = report.demo_settings
    db = open_database(demo.resolved_database_url)
    try:
        reports = send_edition(
            db, demo, report.build.out_dir, transport=make_transport(demo, "outbox")
        )
    finally:
        db.dispose()
    return replace(report, send_reports=tuple(reports), outbox_dir=demo.resolved_outbox_dir)


def step_schedule(settings: Settings, report: DemoReport) -> DemoReport:
    """Schedule the sample edition (in a throw-away database) and cancel it again."""
    return replace(report, notes=report.notes + tuple(schedule_demo(settings, report.manifest)))


def _tomorrow_0800(settings: Settings) -> datetime:
    """Tomorrow 08:00 local, naive (read in the manifest's zone when scheduled)."""
    local = utcnow().astimezone(zone(settings.timezone)) + timedelta(days=1)
    return local.replace(hour=8, minute=0, second=0, microsecond=0, tzinfo=None)


def schedule_demo(settings: Settings, manifest: Path) -> list[str]:
    """Lines describing what was scheduled (and then cancelled)."""
    with tempfile.TemporaryDirectory(prefix="newsletter-demo-") as tmp:
        scratch = settings.model_copy(update={"database_url": f"sqlite:///{Path(tmp) / 'demo.db'}"})
        db = open_database(scratch.resolved_database_url)
        try:
            try:
                infos = schedule_edition(db, scratch, manifest)
            except ScheduleError:  # the sample's send_at has passed: use tomorrow 08:00
                infos = schedule_edition(db, scratch, manifest, at=_tomorrow_0800(settings))
            lines = [f"scheduled {i.edition}:{i.segment} for {i.local_time}" for i in infos]
            cancelled = cancel(db, scratch, infos[0].edition)
            lines.append(f"cancelled all {len(cancelled)} again (demo database only); "
                         "`newsletter schedule issues/2026-12.yaml` does it for real")
        finally:
            db.dispose()
    return lines


STEPS: tuple[DemoStep, ...] = (step_build, step_subscribers, step_send, step_schedule)


def demo_settings(settings: Settings) -> Settings:
    """The project's settings with a fresh database and outbox under build/demo/."""
    root = settings.project_dir / DEMO_DIR
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    secret_file = root / "secret"
    if settings.secret is None and settings.secret_file is None:
        # the demo makes its own token secret (0600 file); `newsletter serve` can use it for the tour
        write_secret_file(secret_file, new_secret())
    return settings.model_copy(update={
        "database_url": f"sqlite:///{(root / 'newsletter.db').as_posix()}",
        "outbox_dir": root / "outbox",
        "transport": "outbox",
        "secret_file": settings.secret_file or (secret_file if settings.secret is None else None),
    })


def run_demo(settings: Settings, steps: tuple[DemoStep, ...] = STEPS) -> DemoReport:
    manifest = settings.project_dir / SAMPLE_MANIFEST
    if not manifest.is_file():
        raise InputError(
            f"sample manifest {manifest} not found",
            hint="run `newsletter demo` in the project directory (or set NEWSLETTER_PROJECT_DIR)",
        )
    report = DemoReport(manifest=manifest, demo_settings=demo_settings(settings))
    for step in steps:
        report = step(settings, report)
    demo = report.demo_settings
    if demo.secret_file is not None:
        report = replace(report, notes=report.notes + (
            "to try the member pages on this demo's data: "
            f"NEWSLETTER_DATABASE_URL={demo.resolved_database_url} NEWSLETTER_SECRET_FILE={demo.secret_file} "
            "newsletter serve",))
    return report
