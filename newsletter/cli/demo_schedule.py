"""The scheduling step of `newsletter demo`: schedule the sample edition in a throw-away database,
show the schedule, cancel it. The project's own database and job store are not touched."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from newsletter.config import Settings
from newsletter.content import zone
from newsletter.db import open_database
from newsletter.errors import ScheduleError
from newsletter.schedule import cancel, schedule_edition


def _tomorrow_0800(settings: Settings) -> datetime:
    """Tomorrow 08:00 local, naive (read in the manifest's zone when scheduled)."""
    local = datetime.now(UTC).astimezone(zone(settings.timezone)) + timedelta(days=1)
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
