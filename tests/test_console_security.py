"""Console security over HTTP (SQLite and PostgreSQL): form tokens, session fixation, lockout,
passwords never in clear, cookies, roles, and an audit entry naming the user for every change."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path

import pytest
from console_support import ADMIN, COMMS, PASSWORD, Console, csrf_of, make_console
from sqlalchemy import select, text

from newsletter.accounts import LOCK_AFTER, LOCK_FOR, LoginRefused, authenticate, list_users
from newsletter.db import Database
from newsletter.models import (
    AuditEntry,
    BatchAudit,
    ConsoleAudit,
    ConsoleUser,
    ScheduledSend,
    SegmentDefinition,
    Subscriber,
    utcnow,
)


@pytest.fixture
def console(project: Path, db: Database, db_url: str) -> Console:
    return make_console(project, db, db_url)


def _scheduled(db: Database) -> list[ScheduledSend]:
    with db.session() as session:
        return list(session.scalars(select(ScheduledSend)))


@pytest.mark.parametrize("token", [None, "", "1795649116.forged", "wrong-shape"])
def test_a_post_without_the_right_form_token_is_refused_and_changes_nothing(console: Console, token: str | None) -> None:
    console.login(COMMS)
    data = {"segment": "london", "at": "2030-01-02T08:00"}
    if token is not None:
        data["csrf"] = token
    answer = console.client.post("/admin/editions/2026-12/schedule", data=data)
    assert answer.status_code == 403 and "nothing was changed" in answer.text
    assert _scheduled(console.db) == []
    # a token that is right for another session is wrong for this one
    other = make_other_session_token(console)
    answer = console.client.post("/admin/editions/2026-12/schedule", data={**data, "csrf": other})
    assert answer.status_code == 403 and _scheduled(console.db) == []


def make_other_session_token(console: Console) -> str:
    mine = console.client.cookies.get("nl_console")
    console.client.cookies.clear()
    console.login(ADMIN)
    token = console.csrf()
    console.client.cookies.clear()
    console.client.cookies.set("nl_console", mine or "", domain="testserver.local", path="/admin")
    console.login(COMMS)
    return token


def test_a_post_from_another_site_is_refused_even_with_a_token(console: Console) -> None:
    console.login(ADMIN)
    token = console.csrf("/admin/segments/new")
    answer = console.client.post("/admin/segments/new", data={"csrf": token, "create": "yes", "name": "evil",
                                                              "rule": "region: london"},
                                 headers={"origin": "https://evil.example", "sec-fetch-site": "cross-site"})
    assert answer.status_code == 403
    with console.db.session() as session:
        assert session.get(SegmentDefinition, "evil") is None


def test_the_session_id_changes_at_sign_in(console: Console) -> None:
    planted = "attacker-chosen-session-id-0123456789abcdef"
    console.client.cookies.set("nl_console", planted, domain="testserver.local", path="/admin")
    answer = console.login(COMMS)
    assert answer.status_code == 303
    issued = answer.cookies.get("nl_console")
    assert issued and issued != planted
    # the planted id does not open a session; the issued one does
    fresh = console.client
    fresh.cookies.clear()
    fresh.cookies.set("nl_console", planted, domain="testserver.local", path="/admin")
    assert fresh.get("/admin/").status_code == 303
    fresh.cookies.clear()
    fresh.cookies.set("nl_console", issued, domain="testserver.local", path="/admin")
    assert fresh.get("/admin/").status_code == 200
    # signing in again gives yet another id, and the earlier one stops working
    again = console.login(COMMS).cookies.get("nl_console")
    assert again and again != issued
    fresh.cookies.clear()
    fresh.cookies.set("nl_console", issued, domain="testserver.local", path="/admin")
    assert fresh.get("/admin/").status_code == 303


def test_cookies_are_secure_httponly_samesite_and_sign_out_ends_the_session(console: Console) -> None:
    answer = console.login(COMMS)
    cookie = answer.headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
    session_id = answer.cookies["nl_console"]
    console.client.post("/admin/logout", data={"csrf": console.csrf()})
    console.client.cookies.set("nl_console", session_id, domain="testserver.local", path="/admin")
    assert console.client.get("/admin/").status_code == 303


def test_twenty_wrong_passwords_lock_the_account_for_a_while(console: Console) -> None:
    for _ in range(LOCK_AFTER - 1):
        assert console.login(COMMS, "not the password").status_code == 401
    assert console.login(COMMS).status_code == 303  # 19 wrong, then right: fine, and the count starts again
    console.client.cookies.clear()
    for _ in range(LOCK_AFTER):
        assert console.login(COMMS, "not the password").status_code == 401
    locked = console.login(COMMS)  # the right password, but locked: the same refusal
    assert locked.status_code == 401 and "locked" in locked.text
    user = next(u for u in list_users(console.db) if u.email == COMMS)
    assert user.locked_until is not None and user.locked_until > utcnow() + LOCK_FOR - timedelta(minutes=1)
    with pytest.raises(LoginRefused):
        authenticate(console.db, COMMS, PASSWORD, now=utcnow() + LOCK_FOR - timedelta(seconds=5))
    assert authenticate(console.db, COMMS, PASSWORD, now=utcnow() + LOCK_FOR + timedelta(seconds=5)).email == COMMS
    with console.db.session() as session:
        assert session.scalar(select(ConsoleAudit).where(ConsoleAudit.action == "user-locked")) is not None


def test_passwords_are_never_stored_or_logged_in_clear(console: Console, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "a very particular passphrase 4711"
    console.login(ADMIN)
    page = console.client.get("/admin/users")
    added = console.client.post("/admin/users", data={"csrf": csrf_of(page.text), "action": "add",
                                                      "email": "newbie@example.org", "role": "comms"})
    link = added.text.split('id="setup-link">')[1].split("<")[0]
    path = link.split("testserver", 1)[1]
    console.client.cookies.clear()
    form = console.client.get(path)
    assert console.client.post(path, data={"csrf": csrf_of(form.text), "password": secret,
                                           "password_again": secret}).status_code == 303
    assert console.login("newbie@example.org", secret).status_code == 303
    console.client.cookies.clear()
    assert console.login("newbie@example.org", secret + " wrong").status_code == 401
    with console.db.session() as session:
        stored = session.scalar(select(ConsoleUser.password_hash).where(ConsoleUser.email == "newbie@example.org"))
        assert stored and stored.startswith("$argon2id$")
        everything = []
        for table in ("console_users", "console_sessions", "console_audit", "audit_log", "limit_counters", "meta"):
            everything += [repr(tuple(row)) for row in session.execute(text(f"SELECT * FROM {table}"))]
    dump = "\n".join(everything)
    assert secret not in dump and PASSWORD not in dump
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert secret not in logged and PASSWORD not in logged
    assert path.rsplit("/", 1)[1] not in dump  # the one-time link's token is kept only as a hash


def test_comms_users_get_403_on_member_segment_and_user_pages(console: Console) -> None:
    console.login(COMMS)
    for path in ("/admin/members", "/admin/members/1", "/admin/members/import", "/admin/members/export?segment=london",
                 "/admin/segments", "/admin/segments/new", "/admin/segments/london", "/admin/users", "/admin/audit"):
        assert console.client.get(path).status_code == 403, path
    token = console.csrf()
    assert console.client.post("/admin/segments/preview", data={"csrf": token, "rule": "region: london"}).status_code == 403
    for path in ("/admin/", "/admin/editions", "/admin/editions/2026-12", "/admin/reports"):
        assert console.client.get(path).status_code == 200, path


def test_signed_out_pages_redirect_to_sign_in_and_back_only_to_our_own_paths(console: Console) -> None:
    answer = console.client.get("/admin/editions/2026-12")
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/login?next=/admin/editions/2026-12"
    page = console.client.get("/admin/login?next=https://evil.example/")
    done = console.client.post("/admin/login", data={"csrf": csrf_of(page.text), "email": COMMS, "password": PASSWORD,
                                                     "next": "//evil.example/admin/"})
    assert done.headers["location"] == "/admin/"


def test_every_change_has_an_audit_entry_naming_the_user(console: Console) -> None:
    console.login(COMMS)
    token = console.csrf()
    actor = f"console:{COMMS}"
    console.client.post("/admin/editions/2026-12/test", data={"csrf": token, "segment": "london", "to": "me"})
    console.client.post("/admin/editions/2026-12/schedule", data={"csrf": token, "segment": "london",
                                                                  "at": "2030-01-02T08:00"})
    console.client.post("/admin/editions/2026-12/move", data={"csrf": token, "segment": "*", "at": "2030-01-03T08:00"})
    console.client.post("/admin/editions/2026-12/cancel", data={"csrf": token, "segment": "london"})
    console.client.cookies.clear()
    console.login(ADMIN)
    token = console.csrf()
    console.client.post("/admin/segments/new", data={"csrf": token, "create": "yes", "name": "heads-of-it",
                                                     "rule": "attributes: {role: head of it}"})
    console.client.post("/admin/segments/heads-of-it", data={"csrf": token, "rule": "member_type: corporate"})
    console.client.post("/admin/users", data={"csrf": token, "action": "add", "email": "x@example.org", "role": "comms"})
    console.client.post("/admin/users", data={"csrf": token, "action": "disable", "email": "x@example.org"})
    console.client.post("/admin/members/1", data={"csrf": token, "action": "email", "new_email": "moved@example.org"})
    console.client.post("/admin/members/1", data={"csrf": token, "action": "details", "organisation": "Fife Council"})
    console.client.post("/admin/members/1", data={"csrf": token, "action": "unsubscribe"})
    with console.db.session() as session:
        audit = {(a.actor, a.action) for a in session.scalars(select(ConsoleAudit))}
        members = [(a.actor, a.action) for a in session.scalars(select(AuditEntry).where(AuditEntry.subscriber_id == 1))]
        versions = session.execute(text("SELECT actor, action FROM segment_versions WHERE name = 'heads-of-it'")).all()
    for action in ("test-send", "schedule", "schedule-move", "schedule-cancel"):
        assert (actor, action) in audit, action
    admin = f"console:{ADMIN}"
    for action in ("segment-create", "segment-update", "user-add", "user-disable"):
        assert (admin, action) in audit, action
    assert {(a, b) for a, b in versions} == {(admin, "create"), (admin, "update")}
    assert (f"admin:{ADMIN}", "email") in members and (f"admin:{ADMIN}", "update") in members
    assert (f"admin:{ADMIN}", "status") in members
    with console.db.session() as session:
        assert session.scalar(select(BatchAudit)) is None  # batches: see test_console_editions.py


def test_member_erase_resubscribe_access_import_and_export_are_audited_without_the_address(console: Console) -> None:
    console.login(ADMIN)
    token = console.csrf()
    admin = f"console:{ADMIN}"
    with console.db.session() as session:
        erased_email = session.scalar(select(Subscriber.email).where(Subscriber.id == 2))
    console.client.post("/admin/members/1", data={"csrf": token, "action": "unsubscribe"})
    console.client.post("/admin/members/1", data={"csrf": token, "action": "resubscribe"})
    assert console.client.post("/admin/members/1", data={"csrf": token, "action": "access"}).status_code == 200
    assert console.client.post("/admin/members/2", data={"csrf": token, "action": "erase",
                                                         "confirm": erased_email}).status_code == 303
    assert console.client.get("/admin/members/export?segment=london").status_code == 200
    upload = ("new.csv", b"email,first_name,region\nnew.member@example.org,Nia,Wales\n", "text/csv")
    started = console.client.post("/admin/members/import", data={"csrf": token, "dry_run": "yes"},
                                  files={"file": upload})
    assert started.status_code == 303
    status_url = started.headers["location"] + "/status"
    for _ in range(200):  # the import runs on a thread of the app; let it finish before the database goes
        if console.client.get(status_url).json()["state"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert console.client.get(status_url).json()["state"] == "done"
    with console.db.session() as session:
        audit = [(a.actor, a.action, a.target, a.detail) for a in session.scalars(select(ConsoleAudit))]
        member_1 = {(a.actor, a.action) for a in session.scalars(select(AuditEntry).where(AuditEntry.subscriber_id == 1))}
        member_2 = [(a.actor, a.action, a.reason) for a in session.scalars(select(AuditEntry).where(AuditEntry.subscriber_id == 2))]
    actions = {(actor, action) for actor, action, _, _ in audit}
    for action in ("member-access", "member-export", "member-import"):
        assert (admin, action) in actions, action
    assert (f"admin:{ADMIN}", "status") in member_1  # unsubscribe and resubscribe
    assert any(action == "erase" and actor == f"admin:{ADMIN}" for actor, action, _ in member_2)
    assert erased_email and all(erased_email not in repr(row) for row in audit + member_2)
