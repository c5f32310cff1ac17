"""`newsletter scheduler run`: sends due jobs through the real delivery code; misfire; two
daemons on one database; kill -9 mid-send and restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from scheduling_support import (
    EDITION,
    MEMBERS,
    Sink,
    add_members,
    install_edition,
    loopback_sink,
    now,
    set_send_at,
    wait_until,
)

from newsletter.config import load_settings
from newsletter.db import Database, open_database
from newsletter.schedule.daemon import context_for, run_daemon
from newsletter.schedule.planning import list_schedule, schedule_edition

ALL_MEMBERS = sorted(e for emails in MEMBERS.values() for e in emails)


@pytest.fixture
def env(project: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Database]]:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    manifest = install_edition(project)
    db = open_database(db_url)
    add_members(db)
    yield manifest, db
    db.dispose()


def states(db: Database) -> dict[str, str]:
    return {i.segment: i.state for i in list_schedule(db, load_settings(), estimate=False)}


def daemon(*args: str, log: Path) -> subprocess.Popen[bytes]:
    """`python -m newsletter scheduler run` in the project (environment inherited)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "newsletter", "scheduler", "run", "--poll", "0.5", *args],
            stdout=out, stderr=subprocess.STDOUT,
        )


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def use_sink(monkeypatch: pytest.MonkeyPatch, sink: Sink, batch_size: int) -> None:
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", "sendgrid")
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.test-key")
    monkeypatch.setenv("NEWSLETTER_SENDGRID_HOST", sink.url)
    monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", str(batch_size))
    monkeypatch.setenv("NEWSLETTER_CONCURRENCY", "1")
    monkeypatch.setenv("NEWSLETTER_MAX_REQUESTS_PER_SECOND", "1000")


@pytest.mark.slow
def test_a_job_a_few_seconds_ahead_is_sent_by_the_daemon(env, project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    manifest, db = env
    at = (now() + timedelta(seconds=3)).isoformat()
    result = cli("schedule", str(manifest), "--segment", "east", "--at", at, "--json")
    assert result.exit_code == 0, result.stderr
    log = project / "daemon.log"
    proc = daemon(log=log)
    try:
        wait_until(lambda: states(db).get("east") == "sent", what="east sent")
    finally:
        assert stop(proc) == 0  # SIGTERM stops it cleanly
    listed = json.loads(cli("schedule", "list", "--json").stdout)
    assert [(i["segment"], i["state"]) for i in listed] == [("east", "sent")]
    outbox = project / "outbox" / EDITION / "east"
    emails = [to["email"] for f in sorted(outbox.glob("*.json"))
              for p in json.loads(f.read_text())["personalizations"] for to in p["to"]]
    assert sorted(emails) == sorted(MEMBERS["east"])
    text = log.read_text()
    assert "2099-01:east: sending" in text and "scheduler stopped" in text


def test_a_daemon_started_two_hours_late_marks_the_job_missed(env, project: Path) -> None:  # type: ignore[no-untyped-def]
    manifest, db = env
    settings = load_settings()
    schedule_edition(db, settings, manifest, segments=["east"], at=(now() + timedelta(hours=1)))
    set_send_at(db, EDITION, "east", now() - timedelta(hours=2))  # as if the server was down
    ctx = context_for(settings, db=db, grace_minutes=30)
    stop_event = threading.Event()
    thread = threading.Thread(target=run_daemon, args=(ctx,), kwargs={
        "poll_seconds": 0.2, "stop": stop_event})
    thread.start()
    try:
        wait_until(lambda: states(db)["east"] != "scheduled", what="the job to run")
    finally:
        stop_event.set()
        thread.join(timeout=30)
    [info] = list_schedule(db, settings)
    assert info.state == "missed" and "misfire grace of 30 min" in (info.note or "")
    assert not (project / "outbox").exists()


def test_an_edited_article_makes_the_daemon_refuse_and_mark_stale(env, project: Path) -> None:  # type: ignore[no-untyped-def]
    manifest, db = env
    settings = load_settings()
    schedule_edition(db, settings, manifest, segments=["london"], at=now() + timedelta(hours=1))
    article = manifest.parent / "articles" / "data-sharing-pilot.md"
    article.write_text(article.read_text().replace("three teams", "four teams"))
    set_send_at(db, EDITION, "london", now())
    stop_event = threading.Event()
    thread = threading.Thread(target=run_daemon, args=(context_for(settings, db=db),), kwargs={
        "poll_seconds": 0.2, "stop": stop_event})
    thread.start()
    try:
        wait_until(lambda: states(db)["london"] != "scheduled", what="the job to run")
    finally:
        stop_event.set()
        thread.join(timeout=30)
    assert states(db) == {"london": "stale"}
    assert not (project / "outbox").exists()


@pytest.mark.slow
def test_two_daemons_on_one_database_send_each_member_once(  # type: ignore[no-untyped-def]
    env, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest, db = env
    with loopback_sink(delay=0.05) as sink:
        use_sink(monkeypatch, sink, batch_size=1)
        schedule_edition(db, load_settings(), manifest, at=now() + timedelta(seconds=4))
        procs = [daemon(log=project / f"daemon{i}.log") for i in range(2)]
        try:
            wait_until(lambda: set(states(db).values()) == {"sent"}, timeout=60, what="all sent")
        finally:
            codes = [stop(p) for p in procs]
        assert codes == [0, 0]
        counts = Counter(sink.emails)
    assert sorted(counts) == ALL_MEMBERS
    assert set(counts.values()) == {1}, counts


@pytest.mark.slow
def test_kill_9_mid_send_then_restart_sends_everyone_exactly_once(  # type: ignore[no-untyped-def]
    env, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest, db = env
    with loopback_sink(delay=0.5) as sink:
        use_sink(monkeypatch, sink, batch_size=1)
        schedule_edition(db, load_settings(), manifest, segments=["east"],
                         at=now() + timedelta(seconds=2))
        first = daemon(log=project / "first.log")
        wait_until(lambda: sink.count >= 2, what="two requests")
        os.kill(first.pid, signal.SIGKILL)  # while the sink holds the 2nd request
        first.wait(timeout=10)
        assert states(db) == {"east": "sending"}
        received_before_restart = sink.count
        second = daemon(log=project / "second.log")
        try:
            wait_until(lambda: states(db)["east"] != "sending", timeout=60, what="resumed send")
        finally:
            assert stop(second) == 0
        counts = Counter(sink.emails)
    assert states(db) == {"east": "sent"}
    assert received_before_restart < len(MEMBERS["east"])  # it really was cut off mid-send
    assert sorted(counts) == sorted(MEMBERS["east"])  # none missing
    assert set(counts.values()) == {1}, counts  # no duplicates
    assert "resuming a send interrupted" in (project / "second.log").read_text()


def test_a_daemon_busy_with_many_sends_still_proves_it_is_alive(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every send thread busy must not starve the heartbeat, or another daemon would take over
    sends that are alive (found in review)."""
    import newsletter.schedule.daemon as daemon_module
    from newsletter.db import open_database
    from newsletter.models import ScheduledSend
    from newsletter.schedule.jobs import JobRegistry

    monkeypatch.setattr(daemon_module, "HEARTBEAT_INTERVAL", timedelta(seconds=0.2))
    monkeypatch.setattr(daemon_module, "HEARTBEAT_TIMEOUT", timedelta(seconds=1))
    monkeypatch.setattr(daemon_module, "frozen_build_problem", lambda settings, send: None)
    db = open_database(db_url)
    at = now() + timedelta(seconds=1)
    with db.session() as s:
        for i in range(8):  # as many sends as the daemon has send threads
            s.add(ScheduledSend(edition=EDITION, segment=f"seg{i}", manifest_path="m", build_dir="b", send_at=at,
                                zone="UTC", fingerprint="f", variant_sha256="v"))
    registry = JobRegistry(db)
    for i in range(8):
        registry.put(EDITION, f"seg{i}", at)
    release = threading.Event()
    busy = daemon_module.DaemonContext(db, None, lambda send: release.wait(30) and "ok", timedelta(minutes=5))
    other = daemon_module.DaemonContext(db, None, lambda send: "x", timedelta(minutes=5))
    stop_event = threading.Event()
    thread = threading.Thread(target=run_daemon, args=(busy,), kwargs={"poll_seconds": 0.2, "stop": stop_event})
    thread.start()
    try:
        wait_until(lambda: len(busy.running) == 8, what="eight sends running")
        time.sleep(2.5)  # well past HEARTBEAT_TIMEOUT
        assert daemon_module.resume_orphans(other, submit=lambda send: None) == []
    finally:
        release.set()
        stop_event.set()
        thread.join(timeout=30)
        db.dispose()
