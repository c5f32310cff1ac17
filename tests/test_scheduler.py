"""Scheduling an edition, and what a due job does (sent, missed, stale, failed, resumed)."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from scheduling_support import (
    EDITION,
    MEMBERS,
    add_members,
    install_edition,
    set_send_at,
)
from sqlalchemy import update

from newsletter.config import Settings, load_settings
from newsletter.db import Database, open_database
from newsletter.errors import NotFound, ScheduleError
from newsletter.models import ScheduledSend, Subscriber
from newsletter.render.build import build_edition, load_build
from newsletter.schedule.daemon import Daemon, daemon_for
from newsletter.schedule.planning import cancel, list_schedule, move, schedule_edition

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Recorder:
    """Stands in for delivery: records what it was asked to send."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.sent: list[tuple[str, str, Path]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, send) -> str | None:  # type: ignore[no-untyped-def]
        with self.lock:
            self.sent.append((send.edition, send.segment, send.build_dir))
        if self.fail:
            raise self.fail
        return None


@pytest.fixture
def env(project: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, Database, Path]]:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    manifest = install_edition(project)
    settings = load_settings()
    db = open_database(db_url)
    add_members(db)
    yield settings, db, manifest
    db.dispose()


def daemon(settings: Settings, db: Database, deliver: Recorder, *, grace: int = 30,
           at: datetime | None = None) -> Daemon:
    """A daemon whose clock reads `at` (default: the real time)."""
    if at is None:
        return Daemon(db, settings, deliver, grace=timedelta(minutes=grace))
    return Daemon(db, settings, deliver, grace=timedelta(minutes=grace), clock=lambda: at)


def waiting(db: Database, settings: Settings) -> dict[str, datetime]:
    """What a daemon reading the schedule now would wait for: send → time."""
    sends = daemon(settings, db, Recorder()).waiting_sends()
    return {send.key: send.send_at for send in sends.values()}


def soon(minutes: int = 10) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


def state(db: Database, segment: str) -> ScheduledSend:
    with db.session() as session:
        row = session.query(ScheduledSend).filter_by(edition=EDITION, segment=segment).one()
    return row


def test_schedule_freezes_the_build_and_records_one_send_per_segment(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    infos = schedule_edition(db, settings, manifest, at="2099-01-05 08:00")
    assert [(i.segment, i.state) for i in infos] == [
        ("east", "scheduled"), ("london", "scheduled"), ("scotland", "scheduled")]
    assert {i.send_at for i in infos} == {datetime(2099, 1, 5, 8, 0, tzinfo=UTC)}
    build = load_build(infos[0].build_dir)
    assert {i.variant_sha256 for i in infos if i.segment == "east"} == {build.variant("east").sha256}
    assert {i.segment: i.audience for i in infos} == {k: len(v) for k, v in MEMBERS.items()}
    assert waiting(db, settings) == {f"{EDITION}:{s}": datetime(2099, 1, 5, 8, 0, tzinfo=UTC) for s in MEMBERS}

    # Scheduling again replaces the rows instead of adding more.
    schedule_edition(db, settings, manifest, segments=["east"], at="2099-01-06 09:30")
    sends = waiting(db, settings)
    assert len(sends) == 3 and sends[f"{EDITION}:east"] == datetime(2099, 1, 6, 9, 30, tzinfo=UTC)
    assert len(list_schedule(db, settings)) == 3


@pytest.mark.parametrize(("at", "utc"), [
    ("2027-03-29 08:00", datetime(2027, 3, 29, 7, 0, tzinfo=UTC)),   # day after spring forward
    ("2026-10-26 08:00", datetime(2026, 10, 26, 8, 0, tzinfo=UTC)),  # day after fall back
])
def test_local_times_land_on_the_right_utc_instant(env, at: str, utc: datetime) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    now = utc - timedelta(days=30)
    [info] = schedule_edition(db, settings, manifest, segments=["east"], at=at, now=now)
    assert info.send_at == utc
    assert info.to_json()["send_at_local"].startswith(at.replace(" ", "T"))


def test_impossible_past_and_out_of_window_times_are_refused(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    early = datetime(2027, 1, 1, tzinfo=UTC)
    with pytest.raises(ScheduleError, match=r"did you mean 2027-03-28 02:30 BST \(01:30 UTC\)"):
        schedule_edition(db, settings, manifest, at="2027-03-28 01:30", now=early)
    with pytest.raises(ScheduleError, match="happens twice"):
        schedule_edition(db, settings, manifest, at="2026-10-25 01:30", now=early - timedelta(days=365))
    with pytest.raises(ScheduleError, match="in the past"):
        schedule_edition(db, settings, manifest, at="2020-01-01 08:00")
    with pytest.raises(ScheduleError, match="outside its send window 07:00-20:00"):
        schedule_edition(db, settings, manifest, at="2099-01-05 21:00", window="07:00-20:00")
    with pytest.raises(NotFound, match="wales"):
        schedule_edition(db, settings, manifest, segments=["wales"], at="2099-01-05 08:00")
    assert list_schedule(db, settings) == []


def test_a_due_job_sends_once_and_is_recorded_sent(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    [info] = schedule_edition(db, settings, manifest, segments=["east"], at=soon())
    deliver = Recorder()
    scheduler = daemon(settings, db, deliver, at=info.send_at + timedelta(seconds=5))
    assert scheduler.execute_send(EDITION, "east") == "sent"
    assert deliver.sent == [(EDITION, "east", info.build_dir)]
    assert scheduler.execute_send(EDITION, "east") == "sent"  # a second firing sends nothing
    assert len(deliver.sent) == 1


def test_two_schedulers_firing_the_same_job_send_once(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    [info] = schedule_edition(db, settings, manifest, segments=["london"], at=soon())
    deliver = Recorder()
    schedulers = [daemon(settings, db, deliver, at=info.send_at) for _ in range(4)]
    threads = [threading.Thread(target=c.execute_send, args=(EDITION, "london")) for c in schedulers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(deliver.sent) == 1
    assert state(db, "london").state == "sent"


def test_past_the_grace_it_is_missed_and_nothing_is_sent(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    schedule_edition(db, settings, manifest, segments=["east", "london"], at=soon())
    due = datetime.now(UTC) - timedelta(hours=2)
    set_send_at(db, EDITION, "east", due)
    set_send_at(db, EDITION, "london", due + timedelta(minutes=100))  # 20 min late: within grace
    deliver = Recorder()
    scheduler = daemon(settings, db, deliver, grace=30)
    assert scheduler.execute_send(EDITION, "east") == "missed"
    assert scheduler.execute_send(EDITION, "london") == "sent"
    assert [s for _, s, _ in deliver.sent] == ["london"]
    east = {i.segment: i for i in list_schedule(db, settings)}["east"]
    assert east.state == "missed" and "beyond the misfire grace of 30 min" in (east.note or "")
    [cancelled] = cancel(db, settings, EDITION, "east")  # cancelling keeps why it was missed
    assert cancelled.state == "cancelled" and "was missed" in (cancelled.note or "")
    assert "misfire grace" in (cancelled.note or "")


def test_outside_the_send_window_at_run_time_it_is_missed(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    [info] = schedule_edition(db, settings, manifest, segments=["east"],
                              at="2099-01-05 19:50", window="07:00-20:00")
    deliver = Recorder()
    scheduler = daemon(settings, db, deliver, at=info.send_at + timedelta(minutes=15))  # 20:05 GMT
    assert scheduler.execute_send(EDITION, "east") == "missed"
    assert deliver.sent == [] and "outside the send window" in (state(db, "east").note or "")


def test_an_article_changed_after_scheduling_makes_the_job_stale(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    [info] = schedule_edition(db, settings, manifest, segments=["scotland"], at=soon())
    article = manifest.parent / "articles" / "leading-change.md"
    article.write_text(article.read_text().replace("Small wins", "Big wins"))
    deliver = Recorder()
    scheduler = daemon(settings, db, deliver, at=info.send_at)
    assert scheduler.execute_send(EDITION, "scotland") == "stale"
    assert deliver.sent == []
    assert "changed after scheduling" in (state(db, "scotland").note or "")
    with pytest.raises(ScheduleError, match="schedule the manifest again"):
        move(db, settings, EDITION, "scotland", soon(20))
    # Scheduling again approves the new text.
    [again] = schedule_edition(db, settings, manifest, segments=["scotland"], at=soon())
    assert again.state == "scheduled" and again.build_dir != info.build_dir
    assert daemon(settings, db, deliver, at=again.send_at).execute_send(EDITION, "scotland") == "sent"


def test_a_tampered_frozen_build_is_stale(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    [info] = schedule_edition(db, settings, manifest, segments=["east"], at=soon())
    html = info.build_dir / "east.html"
    html.write_text(html.read_text().replace("digest", "DIGEST"))
    deliver = Recorder()
    assert daemon(settings, db, deliver, at=info.send_at).execute_send(EDITION, "east") == "stale"
    assert deliver.sent == []


def test_a_delivery_error_marks_it_failed_and_move_rearms_it(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    [info] = schedule_edition(db, settings, manifest, segments=["east"], at=soon())
    scheduler = daemon(settings, db, Recorder(fail=RuntimeError("provider down")), at=info.send_at)
    assert scheduler.execute_send(EDITION, "east") == "failed"
    assert "provider down" in (state(db, "east").note or "")
    moved = move(db, settings, EDITION, "east", soon(30))
    assert moved.state == "scheduled" and moved.send_at > info.send_at


def test_cancel_and_move(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    schedule_edition(db, settings, manifest, at="2099-01-05 08:00")
    moved = move(db, settings, EDITION, "london", "2099-01-05 07:15")
    assert moved.send_at == datetime(2099, 1, 5, 7, 15, tzinfo=UTC)
    cancelled = cancel(db, settings, EDITION, "east")
    assert [(i.segment, i.state) for i in cancelled] == [("east", "cancelled")]
    assert waiting(db, settings) == {f"{EDITION}:london": datetime(2099, 1, 5, 7, 15, tzinfo=UTC),
                                     f"{EDITION}:scotland": datetime(2099, 1, 5, 8, 0, tzinfo=UTC)}
    deliver = Recorder()
    scheduler = daemon(settings, db, deliver, at=datetime(2099, 1, 5, 8, 0, tzinfo=UTC))
    assert scheduler.execute_send(EDITION, "east") == "cancelled" and deliver.sent == []
    cancel(db, settings, EDITION)
    assert {i.state for i in list_schedule(db, settings)} == {"cancelled"}
    with pytest.raises(NotFound):
        cancel(db, settings, "1999-01")
    with pytest.raises(ScheduleError, match="in the past"):
        move(db, settings, EDITION, "east", "2001-01-01 08:00")


def _mark_sending(db: Database, segment: str, owner: str, heartbeat: datetime) -> None:
    with db.write_session() as session:
        session.execute(update(ScheduledSend).where(ScheduledSend.segment == segment).values(
            state="sending", owner=owner, heartbeat_at=heartbeat))


def test_a_send_left_sending_by_a_dead_daemon_is_resumed_once(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    schedule_edition(db, settings, manifest, segments=["east", "london"], at=soon())
    host = socket.gethostname()
    _mark_sending(db, "east", f"{host}:99999999:dead", datetime.now(UTC))       # process gone
    _mark_sending(db, "london", f"{host}:{os.getppid()}:live", datetime.now(UTC))  # alive
    deliver = Recorder()
    assert daemon(settings, db, deliver).resume_orphans() == [f"{EDITION}:east"]
    assert [s for _, s, _ in deliver.sent] == ["east"]
    assert state(db, "east").state == "sent" and state(db, "london").state == "sending"
    # A live owner that stopped renewing its heartbeat (another host, hung) is taken over too.
    _mark_sending(db, "london", "elsewhere:1:x", datetime.now(UTC) - timedelta(minutes=5))
    assert daemon(settings, db, deliver).resume_orphans() == [f"{EDITION}:london"]
    assert daemon(settings, db, deliver).resume_orphans() == []


def test_a_send_this_daemon_holds_but_no_longer_runs_is_taken_up_again_by_it(env) -> None:  # type: ignore[no-untyped-def]
    """A send thread that stopped before recording the outcome (the database was away, say)."""
    settings, db, manifest = env
    schedule_edition(db, settings, manifest, segments=["east"], at=soon())
    deliver = Recorder()
    holder = daemon(settings, db, deliver)
    _mark_sending(db, "east", holder.owner, datetime.now(UTC))
    assert daemon(settings, db, deliver).resume_orphans() == []  # its holder is alive: hands off
    assert holder.resume_orphans() == [f"{EDITION}:east"]
    assert [s for _, s, _ in deliver.sent] == ["east"] and state(db, "east").state == "sent"


def test_real_delivery_through_the_outbox(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    [info] = schedule_edition(db, settings, manifest, segments=["east"], at=soon())
    scheduler = daemon_for(settings, db, clock=lambda: info.send_at)
    assert scheduler.execute_send(EDITION, "east") == "sent"
    files = sorted((settings.resolved_outbox_dir / EDITION / "east").glob("*.json"))
    emails = [to["email"] for f in files for p in json.loads(f.read_text())["personalizations"]
              for to in p["to"]]
    assert sorted(emails) == sorted(MEMBERS["east"])
    assert "5 accepted" in (state(db, "east").note or "")


def test_the_audience_shown_is_the_one_delivery_counts_and_sends(env) -> None:  # type: ignore[no-untyped-def]
    """One eligibility rule: `schedule list` asks delivery, so it agrees with `send --dry-run`
    before sending, and shows the frozen audience once the send has started."""
    from newsletter.delivery import send_edition

    settings, db, manifest = env
    infos = schedule_edition(db, settings, manifest, segments=["east", "london"], at=soon())

    def listed() -> dict[str, int | None]:
        return {i.segment: i.audience for i in list_schedule(db, settings)}

    def dry_run() -> dict[str, int]:
        reports = send_edition(db, settings, infos[0].build_dir, segments=["east", "london"], dry_run=True)
        return {r.segment: r.audience for r in reports}

    def join(email: str, region: str, status: str = "active") -> None:
        with db.session() as session:
            session.add(Subscriber(email=email, email_key=email, region=region, status=status))

    assert listed() == dry_run() == {"east": 5, "london": 2}
    join("kim@example.org", "east")
    join("lee@example.org", "london", status="bounced")
    assert listed() == dry_run() == {"east": 6, "london": 2}
    assert daemon_for(settings, db, clock=lambda: infos[0].send_at).execute_send(EDITION, "east") == "sent"
    join("max@example.org", "east")  # joined after east's audience was frozen: not sent this edition
    join("ned@example.org", "london")
    assert listed() == dry_run() == {"east": 6, "london": 3}


# ------------------------------------------------------------------ the CLI


def test_cli_schedule_list_move_cancel(env, cli) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    # The spelling: `newsletter schedule MANIFEST ...` (same as `schedule add`).
    result = cli("schedule", "issues/edition.yaml", "--segment", "east", "--segment", "london",
                 "--at", "2099-01-05 08:00", "--json")
    assert result.exit_code == 0, result.stderr
    assert [(i["segment"], i["send_at_utc"]) for i in json.loads(result.stdout)] == [
        ("east", "2099-01-05T08:00:00+00:00"), ("london", "2099-01-05T08:00:00+00:00")]
    result = cli("schedule", "add", "issues/edition.yaml", "--segment", "scotland",
                 "--at", "2099-07-01T07:30+01:00")
    assert result.exit_code == 0, result.stderr
    assert "scheduled 2099-01:scotland for 2099-07-01 07:30 BST (06:30 UTC)" in result.stdout

    result = cli("schedule", "move", EDITION, "--segment", "east", "--at", "2099-01-05 07:00")
    assert result.exit_code == 0 and "2099-01-05 07:00 GMT (07:00 UTC)" in result.stdout
    result = cli("schedule", "cancel", EDITION, "--segment", "london")
    assert result.exit_code == 0 and "cancelled" in result.stdout

    listed = json.loads(cli("schedule", "list", "--json").stdout)
    assert [(i["segment"], i["state"], i["send_at_local"], i["audience"]) for i in listed] == [
        ("east", "scheduled", "2099-01-05T07:00:00+00:00", 5),
        ("london", "cancelled", "2099-01-05T08:00:00+00:00", 2),
        ("scotland", "scheduled", "2099-07-01T07:30:00+01:00", 3),
    ]
    table = cli("schedule", "list").stdout
    assert "scotland" in table and "BST" in table and "cancelled" in table


def test_cli_errors_are_clear(env, cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("schedule", "issues/edition.yaml", "--at", "2027-03-28 01:30")
    assert result.exit_code == 2
    assert "did you mean 2027-03-28 02:30 BST (01:30 UTC)?" in result.stderr
    result = cli("schedule", "issues/edition.yaml", "--at", "2020-06-01 08:00")
    assert result.exit_code == 2 and "in the past" in result.stderr
    result = cli("schedule", "cancel", "1999-01")
    assert result.exit_code == 2 and "nothing scheduled for edition 1999-01" in result.stderr
    result = cli("schedule", "issues/missing.yaml", "--at", "2099-01-05 08:00")
    assert result.exit_code == 2 and "missing.yaml" in result.stderr


def test_cli_scheduler_run_once_sends_what_is_due(env, cli) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    assert cli("schedule", "issues/edition.yaml", "--at", soon()).exit_code == 0
    set_send_at(db, EDITION, "london", datetime.now(UTC) - timedelta(minutes=5))
    result = cli("scheduler", "run", "--once")
    assert result.exit_code == 0, result.stderr
    states = {i["segment"]: i["state"] for i in json.loads(cli("schedule", "list", "--json").stdout)}
    assert states == {"east": "scheduled", "london": "sent", "scotland": "scheduled"}
    assert set(waiting(db, settings)) == {f"{EDITION}:east", f"{EDITION}:scotland"}


def test_demo_step_schedules_and_cancels_in_a_throwaway_database(env) -> None:  # type: ignore[no-untyped-def]
    from newsletter.cli.demo import schedule_demo

    settings, db, manifest = env
    lines = schedule_demo(settings, manifest)
    assert lines[0].startswith("scheduled 2099-01:east for ") and "cancelled all 3" in lines[-1]
    assert list_schedule(db, settings) == []  # the project's database is untouched


def test_the_manifest_send_window_is_honoured(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    text = manifest.read_text("utf-8").replace("  east: {}", '  east: {window: "07:00-20:00"}')
    manifest.write_text(text, "utf-8")
    with pytest.raises(ScheduleError, match="outside its send window 07:00-20:00"):
        schedule_edition(db, settings, manifest, segments=["east"], at="2099-01-05 21:00")
    [info] = schedule_edition(db, settings, manifest, segments=["east"], at="2099-01-05 08:00")
    assert info.window == "07:00-20:00"
    [other] = schedule_edition(db, settings, manifest, segments=["london"], at="2099-01-05 21:00")
    assert other.window is None


def test_an_unrelated_broken_draft_does_not_stop_a_scheduled_send(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    [info] = schedule_edition(db, settings, manifest, segments=["east"], at=soon())
    (manifest.parent / "articles" / "half-written-draft.md").write_text("no front matter yet\n")
    deliver = Recorder()
    assert daemon(settings, db, deliver, at=info.send_at).execute_send(EDITION, "east") == "sent"
    assert len(deliver.sent) == 1


def test_a_segment_already_sent_by_send_cannot_be_scheduled(env) -> None:  # type: ignore[no-untyped-def]
    from newsletter.delivery.send import send_edition
    from newsletter.delivery.transports.base import TransportResponse
    from newsletter.delivery.transports.memory import MemoryTransport

    settings, db, manifest = env
    build = build_edition(manifest, settings)
    send_edition(db, settings, build.out_dir, segments=["east"],
                 transport=MemoryTransport(handler=lambda r: TransportResponse(202)))
    with pytest.raises(ScheduleError, match="already being sent or sent by `newsletter send`: east"):
        schedule_edition(db, settings, manifest, segments=["east", "london"], at=soon())
    assert list_schedule(db, settings) == []
    [london] = schedule_edition(db, settings, manifest, segments=["london"], at=soon())
    assert london.state == "scheduled"


def test_a_job_that_fires_while_it_is_being_moved_does_not_send(env, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import newsletter.schedule.daemon as daemon_module

    settings, db, manifest = env
    [info] = schedule_edition(db, settings, manifest, segments=["east"], at=soon())

    def moved_meanwhile(settings_, send):  # type: ignore[no-untyped-def]
        move(db, settings, EDITION, "east", soon(60))
        return None

    monkeypatch.setattr(daemon_module, "frozen_build_problem", moved_meanwhile)
    deliver = Recorder()
    assert daemon(settings, db, deliver, at=info.send_at).execute_send(EDITION, "east") is None
    assert deliver.sent == [] and state(db, "east").state == "scheduled"


def test_a_send_due_while_its_edition_is_paused_fails_naming_the_pause_and_a_move_after_resuming_sends_it(  # type: ignore[no-untyped-def]
        env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The complaint guard's pause holds for scheduled sends too: the due send sends nothing and is
    failed with the pause as its note (it does not wait by itself), and the "failed" notice says to
    resume the edition first, then move the send; after a person resumes the edition, `schedule
    move` sends it."""
    from newsletter.delivery import pause_edition, resume_edition

    _, db, manifest = env
    monkeypatch.setenv("NEWSLETTER_NOTIFY_EMAIL", "comms@example.org")
    settings = load_settings()
    [info] = schedule_edition(db, settings, manifest, segments=["east"], at=soon())
    assert pause_edition(db, EDITION, actor="complaint-guard", reason="complaint guard: 3 spam reports")
    assert daemon_for(settings, db, clock=lambda: info.send_at).execute_send(EDITION, "east") == "failed"
    note = state(db, "east").note or ""
    assert "is paused" in note and "complaint guard: 3 spam reports" in note
    assert not (settings.resolved_outbox_dir / EDITION).exists()  # nothing went to members
    [failed] = (settings.resolved_outbox_dir / "_notices" / "failed").glob("*.json")
    text = " ".join(json.loads(failed.read_text())["content"][0]["value"].split())
    resume = text.index(f"newsletter sends resume {EDITION}")
    assert resume < text.index(f"newsletter schedule move {EDITION} --segment east --at TIME")
    assert "Fix the cause" not in text

    resume_edition(db, EDITION, actor="cli:ann")
    moved = move(db, settings, EDITION, "east", soon(30))
    assert moved.state == "scheduled"
    assert daemon_for(settings, db, clock=lambda: moved.send_at).execute_send(EDITION, "east") == "sent"
    files = (settings.resolved_outbox_dir / EDITION / "east").glob("*.json")
    emails = [to["email"] for f in files for p in json.loads(f.read_text())["personalizations"] for to in p["to"]]
    assert sorted(emails) == sorted(MEMBERS["east"])
