"""The console in a real browser (Playwright for Python driving Debian's Chromium, one browser for
the run) against `newsletter serve`'s app on loopback, with the sample project and the outbox
transport. Three journeys: a comms user (preview, test send, schedule, move, cancel, 403 on member
pages), a comms user approving then skipping a digest's occurrence, and an admin (a segment with its live count, a member's new address, an import with its
reject report). Screenshots go to build/screenshots/console-*.png."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from console_support import ADMIN, COMMS, PASSWORD, make_user
from digest_support import Item, utc, write_digest, write_feed
from playwright.sync_api import expect

from newsletter.config import Settings, load_settings
from newsletter.db import Database
from newsletter.delivery import list_runs
from newsletter.members import find_subscriber, import_sample
from newsletter.models import ScheduledSend
from newsletter.schedule import list_schedule, occurrence, run_digest_now
from newsletter.web import create_app

pytestmark = pytest.mark.slow
SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"


@dataclass
class Site:
    base: str
    settings: Settings
    db: Database


@pytest.fixture
def site(project: Path, db: Database, db_url: str) -> Iterator[Site]:
    settings = load_settings(project, database_url=db_url, transport="outbox")
    import_sample(db, project)
    make_user(db, COMMS, "comms")
    make_user(db, ADMIN, "admin")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(create_app(settings, db=db), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield Site(f"http://localhost:{port}", settings, db)
    finally:
        server.should_exit = True
        thread.join(10)


def _shot(page: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"console-{name}.png"), full_page=True)  # type: ignore[attr-defined]


def _sign_in(page: object, site: Site, email: str) -> None:
    page.goto(site.base + "/admin/")  # type: ignore[attr-defined]
    page.fill("input[name=email]", email)  # type: ignore[attr-defined]
    page.fill("input[name=password]", PASSWORD)  # type: ignore[attr-defined]
    page.click("button:has-text('Sign in')")  # type: ignore[attr-defined]
    page.wait_for_url(site.base + "/admin/")  # type: ignore[attr-defined]


def _scheduled(db: Database) -> dict[str, str]:
    with db.session() as session:
        return {r.segment: r.state for r in session.query(ScheduledSend)}


def test_comms_previews_test_sends_schedules_moves_and_cancels(site: Site, browser: object, cli) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(site.base + "/admin/editions")
    assert "/admin/login" in page.url
    _shot(page, "sign-in")
    _sign_in(page, site, COMMS)
    _shot(page, "home")
    page.click("a:has-text('2026-12')")
    assert "checked" in page.inner_text("h1")
    # the preview: the page `newsletter preview` writes, every variant at 600 and 375 px
    preview = context.new_page()
    preview.goto(site.base + "/admin/editions/2026-12/preview")
    assert preview.locator("iframe[width='600']").count() == 12 and preview.locator("iframe[width='375']").count() == 12
    _shot(preview, "preview")
    preview.close()
    # a test of the London variant to me: one [TEST] request in the outbox, no send
    page.select_option("#test-form select[name=segment]", "london")
    page.click("#test-form button[type=submit]")
    assert "Test of london sent to casey.comms@example.org" in page.inner_text(".notice")
    (request,) = (site.settings.resolved_outbox_dir / "_test-sends").rglob("*.json")
    body = json.loads(request.read_bytes())
    assert body["subject"].startswith("[TEST] ") and body["personalizations"][0]["to"] == [{"email": COMMS}]
    assert list_runs(site.db) == []
    assert json.loads(cli("sends", "list", "--json").stdout) == []
    _shot(page, "edition-tested")
    # schedule the London segment, move it, cancel it
    page.select_option("#schedule-form select[name=segment]", "london")
    page.fill("#schedule-form input[name=at]", "2030-07-01T08:00")
    page.click("#schedule-form button[type=submit]")
    assert "london at 2030-07-01 08:00 BST (07:00 UTC)" in page.inner_text(".notice")
    assert _scheduled(site.db) == {"london": "scheduled"}
    _shot(page, "edition-scheduled")
    page.select_option("#move-form select[name=segment]", "london")
    page.fill("#move-form input[name=at]", "2030-07-02T09:30")
    page.click("#move-form button[type=submit]")
    assert "london to 2030-07-02 09:30 BST" in page.inner_text(".notice")
    with site.db.session() as session:
        (row,) = session.query(ScheduledSend).all()
        assert row.send_at.isoformat() == "2030-07-02T08:30:00+00:00"
    page.click("#cancel-form button[type=submit]")
    assert "Cancelled: london" in page.inner_text(".notice")
    assert _scheduled(site.db) == {"london": "cancelled"}
    _shot(page, "edition-cancelled")
    # members and segments are for admins
    for path in ("/admin/members", "/admin/segments"):
        answer = page.goto(site.base + path)
        assert answer.status == 403 and "for admins" in page.inner_text("main")
    _shot(page, "comms-403")
    context.close()


def test_comms_approves_a_digest_occurrence_then_skips_it(site: Site, browser: object) -> None:
    project, prepared = site.settings.project_dir, utc(2099, 1, 5, 10, 0)
    write_feed(project / "issues/digests/feeds/test.xml", [
        Item("shetland-ferry-booking-goes-online", utc(2099, 1, 4, 14, 0), "Scotland"),
        Item("councils-share-a-cloud-exit-plan", utc(2099, 1, 3, 9, 0))])
    write_digest(project, feeds=["issues/digests/feeds/test.xml"], policy="review", deadline="30m")
    assert run_digest_now(site.db, site.settings, "test-weekly", now=prepared).state == "awaiting_review"
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    _sign_in(page, site, COMMS)
    page.click("nav a:has-text('Digests')")
    expect(page.locator("#digests")).to_contain_text("lgit-weekly")
    _shot(page, "digests")
    page.click("#digests a:has-text('test-weekly')")
    row = page.locator("#occurrence-2099-01-05")
    expect(row).to_contain_text("awaiting review")
    _shot(page, "digest-review")
    row.locator("button:has-text('Approve')").click()
    expect(page.locator(".notice")).to_contain_text("Approved test-weekly 2099-01-05")
    expect(row).to_contain_text("scheduled")
    assert {s.state for s in list_schedule(site.db, site.settings, edition="test-weekly-2099-01-05")} == {"scheduled"}
    _shot(page, "digest-approved")
    row.locator("input[name=reason]").fill("sent by hand instead")
    row.locator("button:has-text('Skip')").click()
    expect(page.locator(".notice")).to_contain_text("Skipped test-weekly 2099-01-05")
    assert occurrence(site.db, site.settings, "test-weekly", "2099-01-05").reason == \
        f"skipped by console:{COMMS}: sent by hand instead"
    _shot(page, "digest-skipped")
    context.close()


def test_admin_creates_a_segment_edits_a_member_and_imports_a_csv(site: Site, browser: object, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)  # type: ignore[attr-defined]
    page = context.new_page()
    _sign_in(page, site, ADMIN)
    # a new segment: the count follows the rule as it is typed; a rule that does not compile is refused
    page.goto(site.base + "/admin/segments/new")
    page.fill("input[name=name]", "scots-and-welsh")
    page.fill("#rule", "region: scotland")
    expect(page.locator("#live-count")).to_contain_text("active member")
    first = page.inner_text("#live-count")
    page.fill("#rule", "region: [scotland, wales]")
    expect(page.locator("#live-count")).not_to_have_text(first)
    second = page.inner_text("#live-count")
    assert int(second.split()[0]) > int(first.split()[0])
    page.fill("#rule", "region: Narnia")
    page.wait_for_selector("#live-error:not([hidden])")
    assert "unknown region 'Narnia'" in page.inner_text("#live-error")
    _shot(page, "segment-refused")
    page.fill("#rule", "region: [scotland, wales]")
    expect(page.locator("#live-count")).to_have_text(second)
    _shot(page, "segment-editing")
    page.click("#segment-form button[type=submit]")
    assert "Saved scots-and-welsh (version 1)" in page.inner_text(".notice")
    page.goto(site.base + "/admin/segments")
    assert "scots-and-welsh" in page.inner_text("table")
    _shot(page, "segments")
    # a member's new address
    page.goto(site.base + "/admin/members")
    page.fill("input[name=q]", "ailsa")
    page.click("form.search button")
    page.click("a:has-text('ailsa.macleod@example.org')")
    page.fill("#email-form input[name=new_email]", "ailsa.new@example.org")
    page.click("#email-form button")
    assert "The address was changed" in page.inner_text(".notice")
    assert "ailsa.new@example.org" in page.inner_text("h1")
    _shot(page, "member")
    with site.db.session() as session:
        assert find_subscriber(session, "ailsa.new@example.org").status == "active"
    # an import: dry run with its progress bar, the reject report, then for real
    csv = tmp_path / "new-members.csv"
    csv.write_text("Email,First name,Region\nrowan.new@example.org,Rowan,Wales\nnot-an-address,Bad,London\n"
                   "sam.new@example.org,Sam,Atlantis\n", "utf-8")
    page.goto(site.base + "/admin/members/import")
    page.set_input_files("input[type=file]", str(csv))
    page.click("#import-form button[type=submit]")
    page.wait_for_selector("#report-link", timeout=30_000)
    assert "Would import 1" in page.inner_text("main") and "rejected 2" in page.inner_text("main")
    _shot(page, "import-dry-run")
    with page.expect_download() as download:
        page.click("#report-link")
    report = Path(download.value.path()).read_text("utf-8-sig")
    assert "not-an-address" in report and "Atlantis" in report and report.splitlines()[0].startswith("row,reason")
    page.click("button:has-text('Import it for real')")
    page.wait_for_selector("#report-link", timeout=30_000)
    assert "Imported 1" in page.inner_text("main")
    _shot(page, "import-done")
    with site.db.session() as session:
        assert find_subscriber(session, "rowan.new@example.org").region == "wales"
    context.close()
