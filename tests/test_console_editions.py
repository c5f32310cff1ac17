"""Console editions and reports over HTTP (SQLite and PostgreSQL): states, test sends that are not
sends (console and `send --test`), scheduling in Europe/London with the DST gap refused, batches
settled from the report with a confirmation and an audit row, the complaint pause resumed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from console_support import ADMIN, COMMS, Console, csrf_of, make_console

from newsletter.db import Database
from newsletter.delivery import (
    MemoryTransport,
    batch_audit,
    edition_pause,
    list_runs,
    pause_edition,
    send_edition,
)
from newsletter.models import Batch, BatchStatus
from newsletter.render import build_edition
from newsletter.schedule import edition_summary


@pytest.fixture
def console(project: Path, db: Database, db_url: str) -> Console:
    return make_console(project, db, db_url)


def test_a_test_send_is_one_test_request_and_never_a_send(console: Console) -> None:
    console.login(COMMS)
    page = console.client.get("/admin/editions/2026-12")
    assert page.status_code == 200 and "checked" in page.text
    done = console.client.post("/admin/editions/2026-12/test", data={"csrf": csrf_of(page.text), "segment": "wales",
                                                                    "to": "me"})
    assert done.status_code == 303
    (request,) = console.mail.requests
    body = request.json()
    assert body["subject"].startswith("[TEST] ") and body["personalizations"][0]["to"] == [{"email": COMMS}]
    assert body["personalizations"][0]["custom_args"] == {"test": "true"}  # no run: the webhook counts it nowhere
    assert list_runs(console.db) == []
    shown = console.client.get(done.headers["location"])
    assert "Test of wales sent to casey.comms@example.org" in shown.text
    # proof addresses, every variant; a bad address is named and nothing is sent
    bad = console.client.post("/admin/editions/2026-12/test", data={"csrf": csrf_of(page.text), "segment": "*",
                                                                   "to": "list", "addresses": "ok@example.org, nope@"})
    assert bad.status_code == 400 and "nope@" in bad.text and len(console.mail.requests) == 1
    console.client.post("/admin/editions/2026-12/test", data={"csrf": csrf_of(page.text), "segment": "*", "to": "list",
                                                             "addresses": "a@example.org\nb@example.org"})
    assert len(console.mail.requests) == 1 + 12 and list_runs(console.db) == []


def test_send_test_from_the_cli_goes_through_the_same_function(project: Path, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    done = cli("send", "issues/2026-12.yaml", "--test", "proof@example.org", "--segment", "london",
               "--transport", "outbox", "--outbox", str(tmp_path / "outbox"))
    assert done.exit_code == 0, done.stderr
    (request,) = (tmp_path / "outbox").rglob("*.json")
    body = json.loads(request.read_bytes())
    assert body["subject"].startswith("[TEST] ") and body["personalizations"][0]["to"] == [{"email": "proof@example.org"}]
    assert request.parent.parent.name == "_test-sends"
    listed = cli("sends", "list", "--json")
    assert json.loads(listed.stdout) == []


def test_schedule_move_cancel_with_the_london_clock(console: Console) -> None:
    console.login(COMMS)
    token = console.csrf("/admin/editions/2026-12")
    answer = console.client.post("/admin/editions/2026-12/schedule", data={"csrf": token, "segment": "london",
                                                                           "at": "2030-07-01T08:00"})
    assert "london at 2030-07-01 08:00 BST (07:00 UTC)" in console.client.get(answer.headers["location"]).text
    summary = edition_summary(console.db, console.settings, "2026-12")
    assert summary.state == "scheduled" and {s.segment: s.state for s in summary.segments}["london"] == "scheduled"
    gap = console.client.post("/admin/editions/2026-12/move", data={"csrf": token, "segment": "london",
                                                                    "at": "2030-03-31T01:30"})
    assert gap.status_code == 400 and "does not exist in Europe/London" in gap.text
    moved = console.client.post("/admin/editions/2026-12/move", data={"csrf": token, "segment": "*",
                                                                      "at": "2030-07-02T09:15"})
    assert "london to 2030-07-02 09:15 BST" in console.client.get(moved.headers["location"]).text
    cancelled = console.client.post("/admin/editions/2026-12/cancel", data={"csrf": token, "segment": "*"})
    assert cancelled.status_code == 303
    assert {s.segment: s.state for s in edition_summary(console.db, console.settings, "2026-12").segments}["london"] == \
        "cancelled"


def test_check_shows_problems_with_file_and_line(console: Console) -> None:
    manifest = console.settings.project_dir / "issues" / "2027-02.yaml"
    manifest.write_text((console.settings.project_dir / "issues" / "2026-12.yaml").read_text()
                        .replace('edition: "2026-12"', 'edition: "2027-02"').replace("gdpr-roadmap", "gdpr-roadmp"))
    console.login(COMMS)
    listed = console.client.get("/admin/editions")
    assert "2027-02" in listed.text and "draft" in listed.text
    page = console.client.get("/admin/editions/2027-02")
    assert "issues/2027-02.yaml:" in page.text and "unknown article &#39;gdpr-roadmp&#39;" in page.text


def test_report_settles_an_uncertain_batch_with_confirmation_and_audit(console: Console) -> None:
    build = build_edition(console.settings.path("issues/2026-12.yaml"), console.settings,
                          console.settings.project_dir / "build" / "2026-12")
    send_edition(console.db, console.settings, build.out_dir, segments=["london"], transport=MemoryTransport())
    with console.db.session() as session:
        batch = session.query(Batch).one()
        batch.status = BatchStatus.UNCERTAIN.value
        run_id, seq = batch.run_id, batch.seq
    console.login(COMMS)
    report = console.client.get("/admin/reports/2026-12")
    assert report.status_code == 200 and "<svg" in report.text and "Mark delivered" in report.text
    confirm = console.client.get(f"/admin/runs/{run_id}/batches/{seq}?action=delivered&edition=2026-12")
    token = csrf_of(confirm.text)
    unticked = console.client.post(f"/admin/runs/{run_id}/batches/{seq}", data={
        "csrf": token, "action": "delivered", "edition": "2026-12", "reason": "seen in the feed"})
    assert unticked.status_code == 303 and batch_audit(console.db, run_id) == []
    done = console.client.post(f"/admin/runs/{run_id}/batches/{seq}", data={
        "csrf": token, "action": "delivered", "edition": "2026-12", "reason": "seen in the feed", "confirm": "yes"})
    assert done.status_code == 303
    (row,) = batch_audit(console.db, run_id)
    assert row.actor == f"console:{COMMS}" and row.action == "mark-delivered" and row.reason == "seen in the feed"


def test_a_paused_edition_is_resumed_from_its_report(console: Console) -> None:
    build = build_edition(console.settings.path("issues/2026-12.yaml"), console.settings,
                          console.settings.project_dir / "build" / "2026-12")
    send_edition(console.db, console.settings, build.out_dir, segments=["london"], transport=MemoryTransport())
    pause_edition(console.db, "2026-12", actor="complaint-guard", reason="complaint guard: test")
    console.login(ADMIN)
    report = console.client.get("/admin/reports/2026-12")
    assert "Paused by the complaint guard" in report.text
    done = console.client.post("/admin/reports/2026-12/resume", data={"csrf": csrf_of(report.text), "confirm": "yes",
                                                                      "reason": "one complainer, known"})
    assert done.status_code == 303
    pause = edition_pause(console.db, "2026-12")
    assert pause is not None and not pause.active and pause.resumed_by == f"console:{ADMIN}"
