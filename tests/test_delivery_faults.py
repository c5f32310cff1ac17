"""Faults against a loopback SendGrid stub: every member delivered exactly once, or reported.

The stub records every personalization it processed. Uncertain batches (the request may have been
processed) are reported and only re-sent with --resend-uncertain, so the tests account for them.
"""

from __future__ import annotations

import email.utils
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from delivery_support import make_project, project_settings, seed_members
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.engine import make_url
from stub_sendgrid import StubSendGrid

from newsletter.db import Database, normalise_url, open_database
from newsletter.delivery.batches import OutcomeNotRecorded
from newsletter.delivery.journal import journal_dir
from newsletter.delivery.send import edition_started, policy_from_settings, run_report, send_edition
from newsletter.delivery.transports import TransportResponse
from newsletter.delivery.transports.memory import MemoryTransport
from newsletter.delivery.transports.outbox import OutboxTransport
from newsletter.delivery.transports.sendgrid import SendGridTransport
from newsletter.errors import DeliveryError
from newsletter.models import Batch, BatchStatus, Recipient

REPO = Path(__file__).resolve().parent.parent


def _members_of(db: Database, status: str) -> set[str]:
    with db.session() as session:
        return set(session.scalars(
            select(Recipient.email).join(Batch, Batch.id == Recipient.batch_id).where(Batch.status == status)))


def test_429_burst_500s_timeout_and_dropped_connection(tmp_path: Path, db: Database, db_url: str) -> None:
    build = make_project(tmp_path, segments=("wales",))
    active = seed_members(db, {"wales": 50})
    settings = project_settings(tmp_path, db_url, batch_size=5, concurrency=2, request_timeout=0.5)
    script = ["429", "429", "429", "500", "500", "timeout", "drop", "500"]
    with StubSendGrid(script, slow=1.0) as stub:
        transport = SendGridTransport("SG.test-key", stub.url, timeout=0.5)
        reports = send_edition(db, settings, build, transport=transport)
        first = list(stub.recorded)
        assert Counter(first).most_common(1)[0][1] == 1  # nobody twice
        assert reports[0].accepted == 40 and reports[0].uncertain == 10 and len(reports[0].problems) == 2
        uncertain = _members_of(db, BatchStatus.UNCERTAIN.value)
        assert set(active) - set(first) <= uncertain  # the missing ones are reported, not lost
        assert len(set(active) - set(first)) == 5  # the dropped request was not processed

        before = stub.requests
        again = send_edition(db, settings, build, transport=transport)
        assert stub.requests == before and again[0].sent_now == 0 and again[0].uncertain == 10

        resent = send_edition(db, settings, build, transport=transport, resend_uncertain=True)
        assert resent[0].accepted == 50 and resent[0].uncertain == 0
        counts = Counter(stub.recorded)
        assert set(counts) == set(active)
        # only the timed-out batch (processed, then re-sent on request) arrives twice: the documented cost
        assert len([e for e, n in counts.items() if n == 2]) == 5


def _send_process(tmp_path: Path, db_url: str, stub_url: str, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "NEWSLETTER_PROJECT_DIR": str(tmp_path), "NEWSLETTER_DATABASE_URL": db_url,
           "SENDGRID_API_KEY": "SG.test-key", "SENDGRID_HOST": stub_url, "NEWSLETTER_BATCH_SIZE": "5",
           "NEWSLETTER_CONCURRENCY": "2", "NEWSLETTER_MAX_REQUESTS_PER_SECOND": "1000",
           "NEWSLETTER_RETRY_BACKOFF_SECONDS": "0.01", "NEWSLETTER_REQUEST_TIMEOUT": "5"}
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "send", "x.yaml", "--build", "build/2026-12",
         "--transport", "sendgrid", "--yes", "--json", *extra],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # as from a terminal: Ctrl-C interrupts (a test runner's worker may have SIGINT ignored,
        # and an ignored signal stays ignored in the children it starts)
        preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_kill_9_at_several_points_then_send_again(tmp_path: Path, db: Database, db_url: str) -> None:
    make_project(tmp_path, segments=("wales", "london"))
    active = seed_members(db, {"wales": 40, "london": 12})
    points = ["kill-before", "kill-after-record", "kill-after-response"]
    with StubSendGrid(["ok", points[0], "ok", points[1], "ok", points[2]]) as stub:
        for _ in points:
            proc = _send_process(tmp_path, db_url, stub.url)
            stub.kill = lambda proc=proc: os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=60)
            assert proc.returncode == -signal.SIGKILL
        final = _send_process(tmp_path, db_url, stub.url)
        out, err = final.communicate(timeout=60)
    counts = Counter(stub.recorded)
    assert max(counts.values()) == 1, "a member was sent twice"
    uncertain = _members_of(db, BatchStatus.UNCERTAIN.value)
    assert set(active) - set(counts) <= uncertain, "a member is missing and not reported"
    assert set(counts) | uncertain == set(active)
    assert uncertain, "the batches in flight at each kill are reported"
    assert len(uncertain) <= 3 * 2 * 5  # at most one batch per sending thread per kill
    reports = run_report(db, "2026-12")
    assert sum(r.accepted + r.uncertain for r in reports) == len(active)
    # reported on the command line, not silently re-sent
    assert final.returncode == 1 and "--resend-uncertain" in err


@pytest.mark.slow
def test_two_concurrent_senders_send_once(tmp_path: Path, db: Database, db_url: str) -> None:
    make_project(tmp_path)
    active = seed_members(db, {"wales": 60, "scotland": 25, "london": 15})
    with StubSendGrid(delay=0.02) as stub:
        procs = [_send_process(tmp_path, db_url, stub.url) for _ in range(2)]
        results = [p.communicate(timeout=90) for p in procs]
    # the one that finishes first may see the other's last batches in flight: "in progress elsewhere"
    assert sorted(p.returncode for p in procs) in ([0, 0], [0, 3]), results
    assert all("in progress elsewhere" in err for p, (_, err) in zip(procs, results, strict=True) if p.returncode == 3)
    assert sorted(stub.recorded) == sorted(active)
    assert sum(r.accepted for r in run_report(db, "2026-12")) == 100


def test_rerun_of_finished_send_says_so(tmp_path: Path, db: Database, db_url: str, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    make_project(tmp_path, segments=("wales",))
    seed_members(db, {"wales": 7})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSLETTER_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    first = cli("send", "x.yaml", "--build", "build/2026-12", "--yes")
    assert first.exit_code == 0 and len(list((tmp_path / "outbox" / "2026-12" / "wales").glob("*.json"))) == 1
    again = cli("send", "x.yaml", "--build", "build/2026-12", "--yes", "--json")
    assert again.exit_code == 0 and "nothing to send" in again.stderr
    assert json.loads(again.stdout)[0]["sent_now"] == 0


@pytest.mark.slow
def test_ctrl_c_finishes_requests_in_flight_and_resumes(tmp_path: Path, db: Database, db_url: str) -> None:
    make_project(tmp_path, segments=("wales",))
    active = seed_members(db, {"wales": 60})
    procs: list[subprocess.Popen[str]] = []

    def interrupt(body: dict[str, object]) -> str:
        procs[0].send_signal(signal.SIGINT)
        return "ok"  # this request (in flight when Ctrl-C arrives) still succeeds

    with StubSendGrid(["ok", interrupt], delay=0.2) as stub:
        procs.append(_send_process(tmp_path, db_url, stub.url))
        _, err = procs[0].communicate(timeout=60)
        assert procs[0].returncode == 130 and "again to resume" in err
        interrupted = list(stub.recorded)
        assert 0 < len(interrupted) < len(active)
        resumed = _send_process(tmp_path, db_url, stub.url)
        resumed.communicate(timeout=60)
    assert resumed.returncode == 0
    assert sorted(stub.recorded) == sorted(active)  # everyone once: nothing uncertain after a clean stop
    assert _members_of(db, BatchStatus.UNCERTAIN.value) == set()


def test_outbox_write_failure_fails_the_batch_and_the_next_send_resumes(tmp_path: Path, db: Database, db_url: str) -> None:
    build = make_project(tmp_path, segments=("wales",))
    active = seed_members(db, {"wales": 12})
    settings = project_settings(tmp_path, db_url, batch_size=5, max_retries=1)
    blocked = tmp_path / "outbox"
    blocked.write_text("a file where the outbox directory should be")
    reports = send_edition(db, settings, build, transport=OutboxTransport(blocked))
    assert reports[0].failed == 12 and reports[0].uncertain == 0 and reports[0].accepted == 0
    assert all("cannot write" in p for p in reports[0].problems)
    blocked.unlink()
    again = send_edition(db, settings, build, transport=OutboxTransport(blocked))
    assert again[0].accepted == 12 and again[0].failed == 0 and again[0].sent_now == 12
    written = [json.loads(p.read_bytes()) for p in sorted(blocked.glob("2026-12/wales/*.json"))]
    assert sorted(to["email"] for body in written for p in body["personalizations"] for to in p["to"]) == sorted(active)


def test_unwritable_outbox_is_refused_before_anything_is_frozen(tmp_path: Path, db: Database, db_url: str, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    make_project(tmp_path, segments=("wales",))
    seed_members(db, {"wales": 3})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSLETTER_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    (tmp_path / "a-file").write_text("x")
    result = cli("send", "x.yaml", "--build", "build/2026-12", "--yes", "--outbox", "a-file/out")
    assert result.exit_code == 2 and str(tmp_path / "a-file" / "out") in result.stderr
    assert not edition_started(db, "2026-12")


def _closed_port() -> int:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def _cli_env(monkeypatch, tmp_path: Path, db_url: str, host: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    for name, value in {"NEWSLETTER_PROJECT_DIR": str(tmp_path), "NEWSLETTER_DATABASE_URL": db_url,
                        "SENDGRID_API_KEY": "SG.test-key", "SENDGRID_HOST": host, "NEWSLETTER_BATCH_SIZE": "5",
                        "NEWSLETTER_MAX_RETRIES": "1", "NEWSLETTER_RETRY_BACKOFF_SECONDS": "0.01",
                        "NEWSLETTER_MAX_REQUESTS_PER_SECOND": "1000", "NEWSLETTER_REQUEST_TIMEOUT": "0.5"}.items():
        monkeypatch.setenv(name, value)


def test_failed_send_is_incomplete_and_says_what_is_left(tmp_path: Path, db: Database, db_url: str, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    make_project(tmp_path, segments=("scotland",))
    active = seed_members(db, {"scotland": 8})
    _cli_env(monkeypatch, tmp_path, db_url, f"http://127.0.0.1:{_closed_port()}")
    send = ("send", "x.yaml", "--build", "build/2026-12", "--yes", "--transport", "sendgrid")
    for _ in range(2):  # SendGrid unreachable, twice: never "already sent"
        down = cli(*send)
        assert down.exit_code == 1 and "already sent" not in down.stderr
        assert "8 failed" in down.stderr and "send again" in down.stderr
        assert [r.status for r in run_report(db, "2026-12")] == ["incomplete"]
    with StubSendGrid() as stub:
        monkeypatch.setenv("SENDGRID_HOST", stub.url)
        up = cli(*send)
        assert up.exit_code == 0, up.stderr
        assert sorted(stub.recorded) == sorted(active)
        assert [r.status for r in run_report(db, "2026-12")] == ["finished"]
        again = cli(*send)
    assert again.exit_code == 0 and "already sent" in again.stderr and stub.requests == 2


def test_uncertain_send_says_how_to_check_and_resend(tmp_path: Path, db: Database, db_url: str, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    make_project(tmp_path, segments=("wales",))
    seed_members(db, {"wales": 4})
    with StubSendGrid(["timeout", "timeout"], slow=1.0) as stub:
        _cli_env(monkeypatch, tmp_path, db_url, stub.url)
        for _ in range(2):
            result = cli("send", "x.yaml", "--build", "build/2026-12", "--yes", "--transport", "sendgrid")
            assert result.exit_code == 1 and "already sent" not in result.stderr
            assert "4 uncertain" in result.stderr and "sends show" in result.stderr
            assert "--resend-uncertain" in result.stderr
        assert stub.requests == 1  # the uncertain batch is not re-sent without being asked
    assert [r.status for r in run_report(db, "2026-12")] == ["incomplete"]


# ---------------------------------------------------------------- issue 12: waits, 5xx, lost 202s


class Waits:
    """A ProgressSink that keeps what the send said while waiting."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def start(self, total_recipients: int, total_batches: int, done_recipients: int, done_batches: int) -> None:
        pass

    def advance(self, recipients: int, batches: int) -> None:
        pass

    def waiting(self, seconds: float, message: str) -> None:
        self.messages.append(message)


@pytest.mark.parametrize("header", ["date", "delta"])
def test_a_rate_limit_wait_is_capped_and_the_send_stops_instead_of_hanging(
        tmp_path: Path, db: Database, db_url: str, header: str) -> None:
    build = make_project(tmp_path, segments=("wales",))
    active = seed_members(db, {"wales": 12})
    settings = project_settings(tmp_path, db_url, batch_size=5, concurrency=1)
    action = "retry-after-date" if header == "date" else (lambda body: "retry-after-date")
    with StubSendGrid(["ok", action]) as stub:
        if header == "delta":
            stub.retry_after_date = "99999999"  # seconds: the delta form, as large
        transport = SendGridTransport("SG.test-key", stub.url, timeout=5)
        started = time.monotonic()
        with pytest.raises(DeliveryError, match="asks to wait .* more than the 300 s a send waits"):
            send_edition(db, settings, build, transport=transport)
        assert time.monotonic() - started < 10  # not 2099
        again = send_edition(db, settings, build, transport=transport)  # SendGrid is asked again at once
        assert time.monotonic() - started < 15
    assert again[0].accepted == 12 and sorted(stub.recorded) == sorted(active)


def test_a_short_rate_limit_wait_is_shown(tmp_path: Path, db: Database, db_url: str) -> None:
    build = make_project(tmp_path, segments=("wales",))
    seed_members(db, {"wales": 6})
    settings = project_settings(tmp_path, db_url, batch_size=5, concurrency=1)
    waits = Waits()
    with StubSendGrid(["retry-after-date"]) as stub:
        stub.retry_after_date = email.utils.formatdate(time.time() + 5, usegmt=True)
        transport = SendGridTransport("SG.test-key", stub.url, timeout=5)
        reports = send_edition(db, settings, build, transport=transport, progress=waits)
    assert reports[0].accepted == 6
    assert any(re.fullmatch(r"waiting [1-5] s for SendGrid's rate limit", m) for m in waits.messages), waits.messages


def test_gateway_5xx_is_uncertain_and_sendgrid_5xx_is_retried(tmp_path: Path, db: Database, db_url: str) -> None:
    build = make_project(tmp_path, segments=("wales",))
    active = seed_members(db, {"wales": 20})
    settings = project_settings(tmp_path, db_url, batch_size=5, concurrency=1)
    with StubSendGrid(["accept-504", "503", "500", "502"]) as stub:
        transport = SendGridTransport("SG.test-key", stub.url, timeout=5)
        report = send_edition(db, settings, build, transport=transport)[0]
        again = send_edition(db, settings, build, transport=transport)[0]
    assert Counter(stub.recorded).most_common(1)[0][1] == 1, "a batch SendGrid took was sent twice"
    assert report.accepted == 10 and report.uncertain == 10 and again.sent_now == 0
    with db.session() as session:
        uncertain = dict(session.execute(select(Batch.response_status, Batch.last_error)
                                         .where(Batch.status == BatchStatus.UNCERTAIN.value)).all())
    assert set(uncertain) == {502, 504} and all("gateway" in e for e in uncertain.values())
    assert set(active) - set(stub.recorded) <= _members_of(db, BatchStatus.UNCERTAIN.value)


def test_a_server_dribbling_its_answer_is_cut_off_at_the_request_timeout(tmp_path: Path, db: Database, db_url: str) -> None:
    build = make_project(tmp_path, segments=("wales",))
    seed_members(db, {"wales": 3})
    settings = project_settings(tmp_path, db_url, concurrency=1)
    with StubSendGrid(["dribble"], dribble=0.5) as stub:
        transport = SendGridTransport("SG.test-key", stub.url, timeout=1.0)
        started = time.monotonic()
        report = send_edition(db, settings, build, transport=transport)[0]
        took = time.monotonic() - started
    assert report.uncertain == 3 and "within 1s" in report.problems[0]
    assert took < 3.0  # the answer would take ~35 s at one byte every 0.5 s


class DatabaseOutage:
    """Makes the test's own database refuse work for a while: SQLite by holding its write lock from
    another connection (past a short busy timeout), PostgreSQL by refusing connections to this
    database and ending the ones open (as a restart does)."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.name = make_url(db_url).database
        self.lock: sqlite3.Connection | None = None

    def begin(self) -> None:
        if self.db_url.startswith("sqlite"):
            self.lock = sqlite3.connect(self.name, isolation_level=None, check_same_thread=False)
            self.lock.execute("BEGIN EXCLUSIVE")
            return
        admin = create_engine(normalise_url(os.environ["NEWSLETTER_TEST_POSTGRES_URL"]), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": self.name})
        admin.dispose()

    def end(self) -> None:
        if self.lock is not None:
            self.lock.execute("ROLLBACK")
            self.lock.close()
            self.lock = None
            return
        admin = create_engine(normalise_url(os.environ["NEWSLETTER_TEST_POSTGRES_URL"]), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("newsletter.db.SQLITE_BUSY_TIMEOUT_MS", 200)


def test_a_202_is_recorded_across_a_database_outage(tmp_path: Path, db_url: str, short_busy_timeout: None) -> None:
    db = open_database(db_url)
    build = make_project(tmp_path, segments=("wales",))
    active = seed_members(db, {"wales": 15})
    settings = project_settings(tmp_path, db_url, batch_size=5, concurrency=1)
    outage = DatabaseOutage(db_url)

    def down_for_a_while(body: dict[str, object]) -> str:
        outage.begin()
        threading.Timer(1.5, outage.end).start()
        return "ok"  # SendGrid takes the batch while the database is away

    try:
        with StubSendGrid(["ok", down_for_a_while]) as stub:
            report = send_edition(db, settings, build, transport=SendGridTransport("SG.k", stub.url, timeout=5))[0]
    finally:
        db.dispose()
    assert report.accepted == 15 and report.uncertain == 0
    assert sorted(stub.recorded) == sorted(active)


def test_a_202_the_database_could_not_take_is_replayed_from_the_journal(
        tmp_path: Path, db_url: str, short_busy_timeout: None) -> None:
    db = open_database(db_url)
    build = make_project(tmp_path, segments=("wales",))
    active = seed_members(db, {"wales": 15})
    settings = project_settings(tmp_path, db_url, batch_size=5, concurrency=1)
    outage = DatabaseOutage(db_url)
    policy = replace(policy_from_settings(settings), db_retry_seconds=0.5)

    def down(body: dict[str, object]) -> str:
        outage.begin()
        return "ok"

    try:
        with StubSendGrid(["ok", down]) as stub:
            transport = SendGridTransport("SG.k", stub.url, timeout=5)
            with pytest.raises(OutcomeNotRecorded, match="replays it"):
                send_edition(db, settings, build, transport=transport, policy=policy)
            outage.end()
            journals = list(journal_dir(settings, db).glob("*.jsonl"))
            assert len(journals) == 1 and oct(journals[0].stat().st_mode & 0o777) == "0o600"
            report = send_edition(db, settings, build, transport=transport)[0]
    finally:
        outage.end() if outage.lock is not None else None
        db.dispose()
    assert report.accepted == 15 and report.uncertain == 0 and report.sent_now == 5
    assert sorted(stub.recorded) == sorted(active), "the journaled batch was sent again"
    assert not list(journal_dir(settings, open_database(db_url)).glob("*.jsonl"))


def _hold_one_batch_elsewhere(db: Database) -> None:
    """Batch 0 in flight for a live sender of another process on this host (we stand in for it)."""
    from newsletter.delivery.leases import HOST

    with db.session() as session:
        session.execute(update(Batch).where(Batch.seq == 0).values(
            status=BatchStatus.IN_FLIGHT.value, claimed_by=f"{HOST}:{os.getppid()}:elsewhere",
            claimed_at=datetime.now(UTC)))


def test_send_exits_3_while_another_process_holds_batches(tmp_path: Path, db: Database, db_url: str, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    build = make_project(tmp_path, segments=("wales",))
    seed_members(db, {"wales": 12})
    settings = project_settings(tmp_path, db_url, batch_size=5)
    first = send_edition(db, settings, build, transport=MemoryTransport(handler=lambda r: TransportResponse(500)),
                         policy=replace(policy_from_settings(settings), max_retries=0))
    assert first[0].failed == 12
    _hold_one_batch_elsewhere(db)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSLETTER_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    result = cli("send", "x.yaml", "--build", "build/2026-12", "--yes")
    assert result.exit_code == 3, result.stderr
    assert "error: in progress elsewhere: 5 recipients are being sent by another process" in result.stderr


def test_daemon_says_what_it_does_when_another_process_holds_the_last_batch(tmp_path: Path, db: Database, db_url: str) -> None:
    from newsletter.schedule.daemon import delivery_sender
    from newsletter.schedule.planning import ScheduledSendInfo

    build = make_project(tmp_path, segments=("wales",))
    seed_members(db, {"wales": 12})
    settings = project_settings(tmp_path, db_url, batch_size=5, transport="memory")
    send_edition(db, settings, build, transport=MemoryTransport(handler=lambda r: TransportResponse(500)),
                 policy=replace(policy_from_settings(settings), max_retries=0))
    _hold_one_batch_elsewhere(db)
    info = ScheduledSendInfo("2026-12", "wales", "sending", datetime.now(UTC), "Europe/London", build,
                             tmp_path / "x.yaml", "0" * 64, "0" * 64, None, None)
    with pytest.raises(DeliveryError) as caught:
        delivery_sender(db, settings)(info)
    assert "another process" in str(caught.value) and "resume" not in str(caught.value)
