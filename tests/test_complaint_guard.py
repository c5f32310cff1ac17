"""The complaint guard: spam reports above 0.1 % of delivered (after 1,000 delivered) pause the rest
of the edition; nothing more is sent until a person resumes it (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from delivery_support import make_project, project_settings, seed_members

from newsletter.config import Settings
from newsletter.db import Database
from newsletter.delivery import (
    EditionPaused,
    MailRequest,
    MemoryTransport,
    TransportResponse,
    edition_pause,
    ingest_events,
    resume_edition,
    send_edition,
)


def _events(transport: MemoryTransport, name: str, count: int, *, skip: int = 0) -> list[dict[str, object]]:
    """`count` events named `name` for recipients of the requests sent, as SendGrid posts them."""
    events = []
    for request in transport.requests:
        for p in request.json()["personalizations"]:
            events.append({"sg_event_id": f"{name}-{len(events)}", "event": name, "email": p["to"][0]["email"],
                           "timestamp": 1_800_000_000, **p["custom_args"]})
    return events[skip:skip + count]


@pytest.fixture
def setup(tmp_path: Path, db: Database, db_url: str) -> tuple[Settings, Path]:
    build = make_project(tmp_path)
    settings = project_settings(tmp_path, db_url, batch_size=500, concurrency=1, notify_email="comms@example.org")
    seed_members(db, {"scotland": 1200, "wales": 300, "london": 300})
    return settings, build


def test_spam_reports_over_the_rate_pause_the_rest_of_the_edition_until_resumed(
        setup: tuple[Settings, Path], db: Database) -> None:
    settings, build = setup
    first = MemoryTransport()
    send_edition(db, settings, build, segments=["scotland"], transport=first)
    notices = MemoryTransport()
    delivered = ingest_events(db, _events(first, "delivered", 1200), settings=settings, transport=notices)
    # 1 report in 1,200 delivered is 0.083 %: under the ceiling, nothing pauses
    under = ingest_events(db, _events(first, "spamreport", 1), settings=settings, transport=notices)
    assert delivered.editions_paused == under.editions_paused == () and edition_pause(db, "2026-12") is None
    # a second report makes 0.17 %: the edition pauses and the comms address is told
    over = ingest_events(db, _events(first, "spamreport", 1, skip=1), settings=settings, transport=notices)
    assert over.editions_paused == ("2026-12",)
    pause = edition_pause(db, "2026-12")
    assert pause is not None and pause.active and "2 spam reports for 1,200 delivered" in pause.reason
    (notice,) = notices.requests
    body = notice.json()
    assert notice.edition == "_notices" and body["personalizations"][0]["to"] == [{"email": "comms@example.org"}]
    assert "2026-12" in body["subject"] and "sends resume 2026-12" in body["content"][0]["value"]
    # nothing more of the edition goes: the other segments are refused, nothing reaches the transport
    later = MemoryTransport()
    with pytest.raises(EditionPaused, match="paused"):
        send_edition(db, settings, build, segments=["wales", "london"], transport=later)
    assert later.requests == []
    # a person resumes it: the rest goes
    resume_edition(db, "2026-12", actor="console:ann@example.org")
    reports = send_edition(db, settings, build, segments=["wales", "london"], transport=later)
    assert sum(r.accepted for r in reports) == 600 and len(later.requests) == 2
    # more reports after a person resumed do not pause it again
    assert ingest_events(db, _events(first, "spamreport", 3, skip=2), settings=settings).editions_paused == ()


class PausingTransport(MemoryTransport):
    """Accepts requests; after the second, the webhook brings spam reports for what was delivered."""

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db

    def send(self, request: MailRequest) -> TransportResponse:
        answer = super().send(request)
        if len(self.requests) == 2:
            events = _events(self, "delivered", 1000) + _events(self, "spamreport", 2)
            ingest_events(self.db, [{**e, "sg_event_id": f"{e['event']}-{i}"} for i, e in enumerate(events)])
        return answer


def test_a_pause_during_a_send_stops_it_between_batches(setup: tuple[Settings, Path], db: Database) -> None:
    settings, build = setup
    transport = PausingTransport(db)
    with pytest.raises(EditionPaused) as stopped:
        send_edition(db, settings, build, segments=["scotland"], transport=transport)
    assert len(transport.requests) == 2  # batches 1-2 of 3 went; the third waits
    (report,) = stopped.value.reports
    assert report.accepted == 1000 and report.pending == 200
    # sending again while paused sends nothing
    with pytest.raises(EditionPaused):
        send_edition(db, settings, build, segments=["scotland"], transport=transport)
    assert len(transport.requests) == 2
    resume_edition(db, "2026-12", actor="cli:ann")
    (done,) = send_edition(db, settings, build, segments=["scotland"], transport=transport)
    assert done.accepted == 1200 and len(transport.requests) == 3


def test_under_1000_delivered_a_few_reports_do_not_pause(setup: tuple[Settings, Path], db: Database) -> None:
    settings, build = setup
    transport = MemoryTransport()
    send_edition(db, settings, build, segments=["wales"], transport=transport)
    events = _events(transport, "delivered", 300) + _events(transport, "spamreport", 5)
    result = ingest_events(db, [{**e, "sg_event_id": f"e{i}"} for i, e in enumerate(events)])
    assert result.editions_paused == () and edition_pause(db, "2026-12") is None


def test_resume_from_the_cli(setup: tuple[Settings, Path], db: Database, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings, build = setup
    transport = MemoryTransport()
    send_edition(db, settings, build, segments=["scotland"], transport=transport)
    events = _events(transport, "delivered", 1200) + _events(transport, "spamreport", 2)
    ingest_events(db, [{**e, "sg_event_id": f"e{i}"} for i, e in enumerate(events)])
    monkeypatch.setenv("NEWSLETTER_PROJECT_DIR", str(settings.project_dir))
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", settings.resolved_database_url)
    done = cli("sends", "resume", "2026-12")
    assert done.exit_code == 0, done.stderr
    assert "resumed" in done.stdout and "600 recipients are waiting" not in done.stdout
    assert edition_pause(db, "2026-12").resumed_by.startswith("cli:")  # type: ignore[union-attr]
    again = cli("sends", "resume", "2026-12")
    assert again.exit_code == 2 and "is not paused" in again.stderr
