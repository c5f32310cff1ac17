"""The member web over HTTP: RFC 8058 one-click unsubscribe, the unsubscribe and preferences pages,
erasure by confirmed email, sign-up with double opt-in, the archive, headers and limits."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import select
from web_support import Web, csrf_of, make_web

from newsletter.db import Database
from newsletter.delivery import PREFERENCES, SIGNUP, UNSUBSCRIBE, make_token, send_edition, token_secret
from newsletter.delivery.tokens import make_expiring_token
from newsletter.members import access, find_subscriber
from newsletter.models import AuditEntry, Subscriber, utcnow
from newsletter.web.security import RedactTokens

ONE_CLICK = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def web(tmp_path: Path, db: Database, db_url: str) -> Web:
    return make_web(tmp_path, db, db_url)


def _id(web: Web, email: str) -> int:
    with web.db.session() as session:
        return find_subscriber(session, email).id


def _status(web: Web, email: str) -> str:
    with web.db.session() as session:
        return find_subscriber(session, email).status


def _token(web: Web, email: str, purpose: str = UNSUBSCRIBE) -> str:
    return make_token(token_secret(web.db, web.settings), _id(web, email), purpose)


def test_one_click_post_unsubscribes_at_once_idempotently_and_is_audited(web: Web) -> None:
    email = web.members[0]
    token = _token(web, email)
    first = web.client.post(f"/u/{token}", content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert first.status_code == 200 and "set-cookie" not in first.headers
    assert _status(web, email) == "unsubscribed"
    again = web.client.post(f"/u/{token}", content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert again.status_code == 200
    with web.db.session() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.subscriber_id == _id(web, email),
                                                        AuditEntry.action == "status")).all()
    assert [(r.actor, r.new_status) for r in rows] == [("one-click", "unsubscribed")]


def test_one_click_accepts_multipart_form_data(web: Web) -> None:
    email = web.members[1]
    response = web.client.post(f"/u/{_token(web, email)}", files={"List-Unsubscribe": (None, "One-Click")})
    assert response.status_code == 200 and _status(web, email) == "unsubscribed"


@pytest.mark.parametrize("body", [b"", b"List-Unsubscribe=Yes", b"List-Unsubscribe=One-Click&also=1",
                                  b"list-unsubscribe=one-click", b"One-Click"])
def test_a_post_without_the_exact_body_changes_nothing(web: Web, body: bytes) -> None:
    email = web.members[0]
    response = web.client.post(f"/u/{_token(web, email)}", content=body, headers=ONE_CLICK)
    assert response.status_code == 400
    assert _status(web, email) == "active"


def test_get_never_changes_anything(web: Web) -> None:
    email = web.members[0]
    for path in (f"/u/{_token(web, email)}", f"/p/{_token(web, email, PREFERENCES)}"):
        assert web.client.get(path).status_code == 200
        assert web.client.head(path).status_code == 200
    assert _status(web, email) == "active"
    page = web.client.get(f"/u/{_token(web, email)}")
    assert "Unsubscribe from the digest?" in page.text and email in page.text


def test_bad_tokens_are_refused_alike_and_change_nothing(web: Web) -> None:
    email, other = web.members[0], web.members[1]
    good = _token(web, email)
    ident, mac = good.split(".")
    secret = token_secret(web.db, web.settings)
    refused = {
        "forged": f"{ident}.{'A' * 32}",
        "forged, as the links before": f"{ident}.{'A' * 43}",
        "truncated": good[:-3],
        "other purpose": _token(web, email, PREFERENCES),
        "other member": f"{_id(web, other)}.{mac}",
        "superscript": "\u00b2.x",
        "leading zeros": f"00{ident}.{mac}",
        "expiring kind": make_expiring_token(secret, _id(web, email), SIGNUP, utcnow().replace(year=2100)),
        "empty mac": f"{ident}.",
    }
    bodies = set()
    for why, token in refused.items():
        for method in ("get", "post"):
            response = getattr(web.client, method)(f"/u/{token}", content=b"List-Unsubscribe=One-Click",
                                                   headers=ONE_CLICK) if method == "post" else web.client.get(f"/u/{token}")
            assert response.status_code == 404, why
            bodies.add(response.text)
    assert len(bodies) == 1  # the same page, whatever was wrong
    assert email not in bodies.pop()
    assert _status(web, email) == _status(web, other) == "active"


def test_links_of_an_erased_member_are_refused(web: Web) -> None:
    email = web.members[2]
    token, preferences = _token(web, email), _token(web, email, PREFERENCES)
    from newsletter.members import erase

    with web.db.write_session() as session:
        erase(session, email)
    assert web.client.get(f"/u/{token}").status_code == 404
    assert web.client.post(f"/u/{token}", content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK).status_code == 404
    assert web.client.get(f"/p/{preferences}").status_code == 404


def test_confirm_page_then_done_page_offers_resubscribe_and_preferences(web: Web) -> None:
    email = web.members[0]
    token = _token(web, email)
    page = web.client.get(f"/u/{token}")
    assert 'action="?via=page"' in page.text
    posted = web.client.post(f"/u/{token}?via=page", data={"List-Unsubscribe": "One-Click"})
    assert posted.status_code == 303 and posted.headers["location"] == f"/u/{token}"
    assert _status(web, email) == "unsubscribed"
    with web.db.session() as session:
        actor = session.scalar(select(AuditEntry.actor).where(AuditEntry.action == "status"))
    assert actor == "web"
    done = web.client.get(f"/u/{token}")
    assert "You are unsubscribed" in done.text and "Resubscribe" in done.text
    assert f"/p/{_token(web, email, PREFERENCES)}" in done.text
    back = web.client.post(f"/u/{token}/resubscribe", data={"csrf": csrf_of(done.text)})
    assert back.status_code == 303 and back.headers["location"].startswith("/p/")
    assert _status(web, email) == "active"


def _preferences(web: Web, email: str) -> tuple[str, str]:
    path = f"/p/{_token(web, email, PREFERENCES)}"
    return path, csrf_of(web.client.get(path).text)


def test_preferences_change_region_name_and_pause(web: Web) -> None:
    email = web.members[0]
    path, csrf = _preferences(web, email)
    saved = web.client.post(path, data={"csrf": csrf, "action": "details", "first_name": "Ceri",
                                        "last_name": "Evans", "region": "london"})
    assert saved.status_code == 303 and saved.headers["location"] == f"{path}?done=details"
    with web.db.session() as session:
        sub = find_subscriber(session, email)
        assert (sub.first_name, sub.last_name, sub.region) == ("Ceri", "Evans", "london")
    assert "Your details were saved." in web.client.get(saved.headers["location"]).text
    web.client.post(path, data={"csrf": csrf, "action": "pause", "months": "3"})
    with web.db.session() as session:
        sub = find_subscriber(session, email)
        assert sub.paused_until is not None and sub.status == "active"
    assert "paused until" in web.client.get(path).text.lower()
    bad = web.client.post(path, data={"csrf": csrf, "action": "details", "region": "Narnia"})
    assert bad.status_code == 400 and "unknown region" in bad.text


def test_preferences_forms_need_their_form_token_and_our_origin(web: Web) -> None:
    email = web.members[0]
    path, csrf = _preferences(web, email)
    for data, headers in (({"action": "unsubscribe"}, {}),
                          ({"action": "unsubscribe", "csrf": "1.bad"}, {}),
                          ({"action": "unsubscribe", "csrf": _preferences(web, web.members[1])[1]}, {}),
                          ({"action": "unsubscribe", "csrf": csrf}, {"origin": "https://evil.example"}),
                          ({"action": "unsubscribe", "csrf": csrf}, {"sec-fetch-site": "cross-site"})):
        response = web.client.post(path, data=data, headers=headers)
        assert response.status_code == 403
    assert _status(web, email) == "active"
    ok = web.client.post(path, data={"action": "unsubscribe", "csrf": csrf}, headers={"origin": "http://testserver"})
    assert ok.status_code == 303 and _status(web, email) == "unsubscribed"


def test_download_my_data_is_the_access_json(web: Web) -> None:
    email = web.members[0]
    path, csrf = _preferences(web, email)
    response = web.client.post(path, data={"csrf": csrf, "action": "data"})
    assert response.status_code == 200 and "attachment" in response.headers["content-disposition"]
    with web.db.session() as session:
        expected = access(session, email)
    assert json.loads(response.text) == json.loads(json.dumps(expected, default=str))


def test_erase_me_needs_the_emailed_confirmation_then_erases_like_the_cli(web: Web) -> None:
    email = web.members[0]
    path, csrf = _preferences(web, email)
    asked = web.client.post(path, data={"csrf": csrf, "action": "erase"})
    assert asked.status_code == 303 and _status(web, email) == "active"
    message = web.mail.requests[-1].json()
    assert message["personalizations"][0]["to"] == [{"email": email}]
    assert message["tracking_settings"]["click_tracking"]["enable"] is False
    link = web.last_mail_link("e")
    page = web.client.get(link)
    assert page.status_code == 200 and _status(web, email) == "active"  # opening the link erases nothing
    done = web.client.post(link, data={"csrf": csrf_of(page.text)})
    assert done.status_code == 200 and "erased" in done.text
    with web.db.session() as session:
        assert session.scalar(select(Subscriber.status).where(Subscriber.id == _id_erased(web))) == "erased"
        assert access(session, email)["erased"] is True
    assert web.client.get(link).status_code == 404
    assert web.client.get(path).status_code == 404


def _id_erased(web: Web) -> int:
    with web.db.session() as session:
        return int(session.scalar(select(Subscriber.id).where(Subscriber.status == "erased")) or 0)


def _sign_up(web: Web, email: str, **extra: str) -> object:
    page = web.client.get("/subscribe")
    data = {"csrf": csrf_of(page.text), "email": email, "first_name": "Nia", "last_name": "", "region": "wales",
            "consent": "yes", "website": ""}
    data.update(extra)
    return web.client.post("/subscribe", data=data)


def test_sign_up_double_opt_in(web: Web) -> None:
    response = _sign_up(web, "nia@example.org")
    assert response.status_code == 303 and response.headers["location"] == "/subscribe?sent=1"  # type: ignore[attr-defined]
    with web.db.session() as session:
        assert session.scalar(select(Subscriber).where(Subscriber.email_key == "nia@example.org")) is None
    link = web.last_mail_link("c")
    page = web.client.get(link)
    assert "nia@example.org" in page.text
    confirmed = web.client.post(link, data={"csrf": csrf_of(page.text)})
    assert confirmed.status_code == 200 and "You are subscribed" in confirmed.text
    with web.db.session() as session:
        sub = find_subscriber(session, "nia@example.org")
        assert sub.status == "active" and sub.consent_version == web.settings.consent_version
        assert sub.consent_at is not None and "double opt-in" in (sub.consent_source or "")


def test_sign_up_answers_alike_for_known_and_unknown_addresses_and_traps_robots(web: Web) -> None:
    known = _sign_up(web, web.members[0])
    unknown = _sign_up(web, "someone-new@example.org")
    assert known.status_code == unknown.status_code == 303  # type: ignore[attr-defined]
    assert known.headers["location"] == unknown.headers["location"]  # type: ignore[attr-defined]
    assert len(web.mail.requests) == 2
    trapped = _sign_up(web, "robot@example.org", website="http://spam.example")
    assert trapped.headers["location"] == unknown.headers["location"]  # type: ignore[attr-defined]
    assert len(web.mail.requests) == 2  # no email for the robot
    missing = _sign_up(web, "x@example.org", consent="")
    assert missing.status_code == 400 and "tick the box" in missing.text  # type: ignore[attr-defined]


def test_archive_shows_sent_variants_without_personal_data_or_tokens(web: Web) -> None:
    from newsletter.delivery import MemoryTransport

    assert "No edition has been sent yet" in web.client.get("/archive/").text
    send_edition(web.db, web.settings, web.build, transport=MemoryTransport())
    index = web.client.get("/archive/")
    assert "/archive/2026-12/wales" in index.text
    page = web.client.get("/archive/2026-12/wales")
    assert page.status_code == 200
    assert "Dear," in page.text and "your address" in page.text
    for leak in ("-first_name", "-email", "-unsubscribe_url-", "-preferences_url-", "/u/", "/p/", "@example.org"):
        assert leak not in page.text, leak
    assert "script-src" not in page.headers["content-security-policy"]
    assert web.client.get("/archive/2026-12/narnia").status_code == 404


def test_security_headers_and_no_open_redirect(web: Web) -> None:
    page = web.client.get(f"/p/{_token(web, web.members[0], PREFERENCES)}")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store" and "<script" not in page.text
    redirect = web.client.get("/archive")
    assert redirect.headers["location"] == "/archive/"


def test_bodies_are_capped(web: Web) -> None:
    path = f"/u/{_token(web, web.members[0])}"
    assert web.client.post(path, content=b"x" * 10_000, headers=ONE_CLICK).status_code == 413
    assert web.client.post("/subscribe", content=b"x" * 70_000, headers=ONE_CLICK).status_code == 413
    assert _status(web, web.members[0]) == "active"


def test_token_paths_are_redacted_from_log_lines() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "POST", "/u/12.abcDEF_-xyz?via=page", "1.1", 200), None)
    RedactTokens().filter(record)
    assert "12.abc" not in record.getMessage() and "/u/…?via=page" in record.getMessage()
