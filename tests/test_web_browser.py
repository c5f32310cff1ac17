"""The member web in a real browser: Playwright for Python driving Debian's Chromium against
`newsletter.web` served by uvicorn on loopback, with the sample project, a real build, and the
outbox transport. Screenshots go to build/screenshots/ (kept for a person to look at)."""

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
from sqlalchemy import select

from newsletter.config import Settings, load_settings
from newsletter.db import Database
from newsletter.delivery import make_transport, send_edition
from newsletter.members import find_subscriber, import_sample
from newsletter.models import Subscriber
from newsletter.render import build_edition
from newsletter.web import create_app

SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"  # the `browser` fixture: conftest.py
BASE = "https://www.example.org/newsletter"  # public_base_url of the sample project

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Site:
    base: str
    settings: Settings
    db: Database
    outbox: Path

    def local(self, url: str) -> str:
        """A link from an email, pointed at the test server instead of the public site."""
        assert url.startswith(BASE), url
        return self.base + url[len(BASE):]

    def send(self, manifest: str, edition: str) -> Path:
        build = build_edition(self.settings.path(manifest), self.settings, self.settings.project_dir / "build" / edition)
        send_edition(self.db, self.settings, build.out_dir, transport=make_transport(self.settings, "outbox"))
        return self.outbox / edition

    def status(self, email: str) -> Subscriber:
        with self.db.session() as session:
            return find_subscriber(session, email)


@pytest.fixture
def site(project: Path, db: Database, db_url: str) -> Iterator[Site]:
    second = (project / "issues" / "2026-12.yaml").read_text("utf-8").replace('edition: "2026-12"', 'edition: "2027-01"')
    (project / "issues" / "2027-01.yaml").write_text(second, "utf-8")
    settings = load_settings(project, database_url=db_url, transport="outbox")
    import_sample(db, project)
    app = create_app(settings, db=db)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield Site(f"http://127.0.0.1:{port}", settings, db, settings.resolved_outbox_dir)
    finally:
        server.should_exit = True
        thread.join(10)


def _shot(page: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def _personalization(outbox: Path, email: str) -> dict[str, object]:
    for request in sorted(outbox.glob("*/*.json")):
        for p in json.loads(request.read_bytes())["personalizations"]:
            if p["to"][0]["email"] == email:
                return p  # type: ignore[no-any-return]
    raise AssertionError(f"{email} is in no request of {outbox}")


def test_sign_up_confirm_by_email_link(site: Site, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(site.base + "/subscribe")
    page.fill("input[name=email]", "rhiannon.new@example.org")
    page.fill("input[name=first_name]", "Rhiannon")
    page.select_option("select[name=region]", "wales")
    page.check("input[name=consent]")
    _shot(page, "subscribe-form")
    page.click("button[type=submit]")
    assert "Check your inbox" in page.inner_text("h1")
    (mail,) = (site.outbox / "_member-mail" / "signup-confirmation").glob("*.json")
    message = json.loads(mail.read_bytes())
    assert message["personalizations"][0]["to"] == [{"email": "rhiannon.new@example.org"}]
    link = next(word for word in message["content"][0]["value"].split() if word.startswith(BASE + "/c/"))
    page.goto(site.local(link))
    _shot(page, "subscribe-confirm")
    page.click("text=Confirm my subscription")
    assert "You are subscribed" in page.inner_text("h1")
    _shot(page, "subscribe-done")
    member = site.status("rhiannon.new@example.org")
    assert member.status == "active" and member.region == "wales" and member.consent_at is not None
    page.close()


def test_unsubscribe_from_a_sent_email_then_preferences_then_the_next_send(site: Site, browser: object) -> None:
    leaving, moving = "ailsa.macleod@example.org", "callum.fraser@example.org"
    outbox = site.send("issues/2026-12.yaml", "2026-12")
    page = browser.new_page()  # type: ignore[attr-defined]
    # the unsubscribe link exactly as it is in the request SendGrid would get
    header = str(_personalization(outbox, leaving)["headers"]["List-Unsubscribe"])  # type: ignore[index]
    https, mailto = (part.strip().strip("<>") for part in header.split(","))  # one-click link, then mailto:
    assert mailto.startswith("mailto:") and mailto.endswith("?subject=unsubscribe")
    page.goto(site.local(https))
    _shot(page, "unsubscribe-confirm")
    assert site.status(leaving).status == "active"  # opening the link changes nothing
    page.click("button:has-text('Unsubscribe')")
    assert "You are unsubscribed" in page.inner_text("h1")
    _shot(page, "unsubscribe-done")
    assert site.status(leaving).status == "unsubscribed"
    # the preferences link of another member: change the region
    preferences = str(_personalization(outbox, moving)["substitutions"]["-preferences_url-"])  # type: ignore[index]
    page.goto(site.local(preferences))
    page.select_option("#region", "london")
    page.click("button:has-text('Save')")
    assert "Your details were saved." in page.inner_text(".notice")
    _shot(page, "preferences")
    assert site.status(moving).region == "london"
    # the next edition: the unsubscribed member is left out, the other gets the London variant
    later = site.send("issues/2027-01.yaml", "2027-01")
    sent_to = {p["to"][0]["email"]: request.parent.name for request in later.glob("*/*.json")
               for p in json.loads(request.read_bytes())["personalizations"]}
    assert leaving not in sent_to and sent_to[moving] == "london"
    page.close()


def test_archive_has_no_token_or_address(site: Site, browser: object) -> None:
    site.send("issues/2026-12.yaml", "2026-12")
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(site.base + "/archive/")
    _shot(page, "archive-index")
    page.click("a:has-text('London')")
    page.wait_for_load_state()
    assert page.url.endswith("/archive/2026-12/london")
    html = page.content()
    assert "Hello," in html and "View in your browser" in html
    with site.db.session() as session:
        addresses = session.scalars(select(Subscriber.email)).all()
    for leak in ("/u/", "/p/", "-first_name", "-email", *addresses):
        assert leak not in html, leak
    _shot(page, "archive-london")
    page.close()
