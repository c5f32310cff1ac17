"""Scheduling friction (issue 13): move several or all segments at once; a whole-edition `--at`
never silently replaces a time chosen for one segment; segment names and region aliases
everywhere a segment is taken; H:MM read like HH:MM; `send` refuses a scheduled segment unless
--now (which cancels that schedule); the preview shows the scheduled time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from scheduling_support import EDITION, MEMBERS, add_members, install_edition

from newsletter.config import Settings, load_settings
from newsletter.db import Database, open_database
from newsletter.errors import NotFound, ScheduleError
from newsletter.schedule import list_schedule, move, move_sends, schedule_edition


@pytest.fixture
def env(project: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, Database, Path]]:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    manifest = install_edition(project)
    settings = load_settings()
    db = open_database(db_url)
    add_members(db)
    yield settings, db, manifest
    db.dispose()


def times(db: Database, settings: Settings) -> dict[str, str]:
    return {i.segment: f"{i.local_send_at:%Y-%m-%d %H:%M} {i.state}" for i in list_schedule(db, settings, check=False)}


def test_move_takes_several_segments_or_all_of_them(env, cli) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    schedule_edition(db, settings, manifest, at="2099-01-05 08:00")
    result = cli("schedule", "move", EDITION, "--segment", "east", "--segment", "london", "--at", "2099-01-05 09:15")
    assert result.exit_code == 0, result.stderr
    assert times(db, settings) == {"east": "2099-01-05 09:15 scheduled", "london": "2099-01-05 09:15 scheduled",
                                   "scotland": "2099-01-05 08:00 scheduled"}
    result = cli("schedule", "move", EDITION, "--all", "--at", "2099-01-06 07:00", "--json")
    assert result.exit_code == 0, result.stderr
    assert [i["segment"] for i in json.loads(result.stdout)] == ["east", "london", "scotland"]
    assert set(times(db, settings).values()) == {"2099-01-06 07:00 scheduled"}
    # One segment that cannot go at that time stops the whole move: nothing half-moved.
    cli("schedule", "cancel", EDITION, "--segment", "scotland")
    with pytest.raises(ScheduleError, match="in the past"):
        move_sends(db, settings, EDITION, "2001-01-01 08:00", all_segments=True)
    assert cli("schedule", "move", EDITION, "--at", "2099-01-07 07:00").exit_code == 2  # neither --segment nor --all
    result = cli("schedule", "move", EDITION, "--all", "--at", "2099-01-07 07:00")
    assert result.exit_code == 0
    assert times(db, settings) == {"east": "2099-01-07 07:00 scheduled", "london": "2099-01-07 07:00 scheduled",
                                   "scotland": "2099-01-06 07:00 cancelled"}  # --all leaves a cancelled send alone


def test_a_whole_edition_at_does_not_silently_replace_a_time_chosen_for_one_segment(env, cli) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    schedule_edition(db, settings, manifest, at="2099-01-05 08:00")
    move(db, settings, EDITION, "london", "2099-01-05 07:15")
    result = cli("schedule", "issues/edition.yaml", "--at", "2099-01-05 10:00")
    assert result.exit_code == 2
    assert "the whole-edition time would replace the time chosen for london (2099-01-05 07:15 GMT" in result.stderr
    assert "--segment east --segment scotland" in result.stderr and "--force" in result.stderr
    assert times(db, settings)["london"] == "2099-01-05 07:15 scheduled"  # nothing changed
    # The hint's way: the others only.
    assert cli("schedule", "issues/edition.yaml", "--segment", "east", "--segment", "scotland",
               "--at", "2099-01-05 10:00").exit_code == 0
    assert times(db, settings) == {"east": "2099-01-05 10:00 scheduled", "london": "2099-01-05 07:15 scheduled",
                                   "scotland": "2099-01-05 10:00 scheduled"}
    result = cli("schedule", "issues/edition.yaml", "--at", "2099-01-05 11:00", "--force")
    assert result.exit_code == 0, result.stderr
    assert ("scheduled 2099-01:london for 2099-01-05 11:00 GMT (11:00 UTC) (audience now 2); time replaced by a "
            "whole-edition schedule (was 2099-01-05 07:15 GMT (07:15 UTC), chosen for this segment)") in result.stdout
    assert set(times(db, settings).values()) == {"2099-01-05 11:00 scheduled"}
    # A per-segment --at also counts as chosen for that segment.
    schedule_edition(db, settings, manifest, segments=["east"], at="2099-01-05 06:30")
    with pytest.raises(ScheduleError, match=r"time chosen for east \(2099-01-05 06:30 GMT"):
        schedule_edition(db, settings, manifest, at="2099-01-05 12:00")
    # Approving the whole edition again at the times it has is no clash.
    move_sends(db, settings, EDITION, "2099-01-05 12:00", all_segments=True)
    assert len(schedule_edition(db, settings, manifest, at="2099-01-05 12:00")) == 3


def test_segment_names_and_region_aliases_work_wherever_a_segment_is_taken(env, cli) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    result = cli("schedule", "issues/edition.yaml", "--segment", "London", "--segment", "Alba",
                 "--at", "2099-01-05 08:00", "--json")
    assert result.exit_code == 0, result.stderr
    assert [i["segment"] for i in json.loads(result.stdout)] == ["london", "scotland"]
    assert cli("schedule", "move", EDITION, "--segment", "LONDON", "--at", "2099-01-05 09:00").exit_code == 0
    assert cli("schedule", "cancel", EDITION, "--segment", "Scotland").exit_code == 0
    assert times(db, settings) == {"london": "2099-01-05 09:00 scheduled", "scotland": "2099-01-05 08:00 cancelled"}
    result = cli("send", "issues/edition.yaml", "--segment", "East of England", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    assert [(r["segment"], r["audience"]) for r in json.loads(result.stdout)] == [("east", len(MEMBERS["east"]))]
    exported = cli("subscribers", "export", "--segment", "London", "--format", "json")
    assert exported.exit_code == 0, exported.stderr
    assert sorted(m["email"] for m in json.loads(exported.stdout)) == sorted(MEMBERS["london"])
    shown = cli("segments", "show", "Greater London", "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["name"] == "london"
    # Still an error, with a suggestion, for a name that is no segment here.
    result = cli("schedule", "move", EDITION, "--segment", "Cymru", "--at", "2099-01-05 09:00")
    assert result.exit_code == 2 and "no segment 'Cymru' scheduled for edition 2099-01" in result.stderr
    with pytest.raises(NotFound) as refused:
        move(db, settings, EDITION, "londn", "2099-01-05 09:00")
    assert refused.value.hint == "did you mean 'london'?"


def test_one_digit_hours_are_read(env, cli) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    result = cli("schedule", "issues/edition.yaml", "--segment", "east", "--at", "2099-01-05 7:30")
    assert result.exit_code == 0, result.stderr
    assert "scheduled 2099-01:east for 2099-01-05 07:30 GMT (07:30 UTC)" in result.stdout
    assert cli("schedule", "move", EDITION, "--segment", "east", "--at", "2099-07-01 9:05").exit_code == 0
    [east] = list_schedule(db, settings)
    assert east.send_at == datetime(2099, 7, 1, 8, 5, tzinfo=UTC)  # 09:05 BST
    text = manifest.read_text().replace("timezone: Europe/London", "timezone: Europe/London\nsend_at: 2099-01-05 7:45")
    manifest.write_text(text)
    checked = cli("check", "issues/edition.yaml")
    assert "send_at" not in checked.stdout, checked.stdout
    [london] = schedule_edition(db, settings, manifest, segments=["london"])
    assert london.send_at == datetime(2099, 1, 5, 7, 45, tzinfo=UTC)


def test_send_refuses_a_scheduled_segment_unless_now_which_cancels_its_schedule(env, cli) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    schedule_edition(db, settings, manifest, segments=["east", "london"], at="2099-01-05 08:00")
    result = cli("send", "issues/edition.yaml", "--segment", "east", "--yes")
    assert result.exit_code == 2
    assert "edition 2099-01 is scheduled: east at 2099-01-05 08:00 GMT" in result.stderr and "--now" in result.stderr
    assert not (settings.resolved_outbox_dir / EDITION).exists()
    result = cli("send", "issues/edition.yaml", "--segment", "east", "--yes", "--now")
    assert result.exit_code == 0, result.stderr
    assert "2099-01:east: schedule cancelled" in result.stderr
    sent = [to["email"] for f in (settings.resolved_outbox_dir / EDITION / "east").glob("*.json")
            for p in json.loads(f.read_text())["personalizations"] for to in p["to"]]
    assert sorted(sent) == sorted(MEMBERS["east"])
    rows = {i.segment: i for i in list_schedule(db, settings)}
    assert rows["east"].state == "cancelled" and "sent at once with `newsletter send --now` by cli:" in rows["east"].note
    assert rows["london"].state == "scheduled"  # the other segment keeps its schedule
    # A segment not scheduled goes as before.
    assert cli("send", "issues/edition.yaml", "--segment", "scotland", "--yes").exit_code == 0


def test_the_preview_shows_the_scheduled_time(env, cli) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    schedule_edition(db, settings, manifest, segments=["east"], at="2099-01-05 08:00")
    move(db, settings, EDITION, "east", "2099-01-05 09:40")
    result = cli("preview", "issues/edition.yaml", "--out", "preview.html")
    assert result.exit_code == 0, result.stderr
    assert "east: scheduled for 2099-01-05 09:40 GMT (09:40 UTC) (scheduled)" in result.stdout
    page = Path("preview.html").read_text()
    assert "scheduled for 2099-01-05 09:40 GMT (09:40 UTC) (scheduled)" in page
    assert page.count("scheduled for") == 1  # london and scotland are not scheduled
