"""What members do for themselves: pause (kept out of sends by the one eligibility rule), sign-up
with double opt-in (proof of consent, no enumeration, honeypot, rate limits in the database)."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from delivery_support import make_project, project_settings, seed_members
from sqlalchemy import select

from newsletter.db import Database, open_database
from newsletter.delivery.send import send_edition
from newsletter.delivery.transports.memory import MemoryTransport
from newsletter.errors import InputError
from newsletter.members import (
    SignupForm,
    add_months,
    confirm_signup,
    erase,
    find_subscriber,
    pause_member,
    request_signup,
    resume_member,
    unsubscribe,
)
from newsletter.models import AuditEntry, SignupRequest, Subscriber, utcnow


def _sub(db: Database, email: str) -> Subscriber:
    with db.session() as session:
        return find_subscriber(session, email)


def test_a_paused_member_is_left_out_until_the_pause_ends(tmp_path: Path, db: Database, db_url: str) -> None:
    build = make_project(tmp_path)
    settings = project_settings(tmp_path, db_url)
    active = seed_members(db, {"wales": 3})
    with db.write_session() as session:
        until = pause_member(session, find_subscriber(session, active[0]), 3, actor="test")
    assert until.date() == add_months(utcnow(), 3).date()
    transport = MemoryTransport()
    reports = send_edition(db, settings, build, segments=["wales"], transport=transport)
    assert sorted(transport.recipients()) == sorted(active[1:])
    assert reports[0].excluded["paused"] == 1
    with db.session() as session:
        reasons = [a.reason for a in session.scalars(select(AuditEntry).where(AuditEntry.action == "pause"))]
    assert reasons and "3 month" in reasons[0]


def test_a_member_who_pauses_after_the_freeze_is_not_sent_to(tmp_path: Path, db: Database, db_url: str) -> None:
    """Scheduled sends freeze early: the request itself checks the same rule at sending time."""
    build = make_project(tmp_path)
    settings = project_settings(tmp_path, db_url)
    active = seed_members(db, {"wales": 3})
    from newsletter.delivery.audience import freeze_audience
    from newsletter.delivery.send import _assignments, load_variants

    edition, variants = load_variants(build)
    wales = [v for v in variants if v.segment == "wales"]
    from newsletter.members import load_segments

    segment_set = load_segments(settings.path("subscribers/segments.yaml"))
    assignments = _assignments(segment_set, [v.segment for v in variants], ["wales"])
    freeze_audience(db, edition, wales, assignments)  # as `schedule` does, early
    with db.write_session() as session:
        pause_member(session, find_subscriber(session, active[1]), 1, actor="test")
    transport = MemoryTransport()
    send_edition(db, settings, build, segments=["wales"], transport=transport)
    assert sorted(transport.recipients()) == sorted([active[0], active[2]])
    with db.write_session() as session:
        assert resume_member(session, find_subscriber(session, active[1]), actor="test")


def test_pause_takes_1_3_or_6_months_and_months_end_well() -> None:
    from datetime import UTC, datetime

    assert add_months(datetime(2026, 1, 31, tzinfo=UTC), 1) == datetime(2026, 2, 28, tzinfo=UTC)
    assert add_months(datetime(2026, 8, 31, tzinfo=UTC), 6) == datetime(2027, 2, 28, tzinfo=UTC)
    assert add_months(datetime(2026, 11, 15, tzinfo=UTC), 3) == datetime(2027, 2, 15, tzinfo=UTC)


def test_pause_refuses_other_lengths(db: Database) -> None:
    seed_members(db, {"wales": 1})
    with db.write_session() as session, pytest.raises(InputError, match="1, 3 or 6"):
        pause_member(session, find_subscriber(session, "member1@example.org"), 2, actor="test")


def _form(email: str = "new@example.org", **kw: object) -> SignupForm:
    values: dict[str, object] = {"first_name": "Nia", "last_name": "Jones", "region": "Cymru", "consent": True}
    values.update(kw)
    return SignupForm(email, **values)  # type: ignore[arg-type]


def test_sign_up_becomes_active_only_when_confirmed_with_proof_of_consent(db: Database) -> None:
    with db.write_session() as session:
        decision = request_signup(session, _form(), client="192.0.2.1", consent_version="web-7")
    assert decision.signup_id is not None and decision.held_back is None
    with db.session() as session:
        assert session.scalar(select(Subscriber).where(Subscriber.email_key == "new@example.org")) is None
    with db.write_session() as session:
        confirmed = confirm_signup(session, decision.signup_id)
    assert confirmed is not None and confirmed.outcome == "created"
    sub = _sub(db, "new@example.org")
    assert sub.status == "active" and sub.region == "wales" and sub.first_name == "Nia"
    assert sub.consent_version == "web-7" and "double opt-in" in (sub.consent_source or "")
    assert sub.consent_at is not None
    with db.session() as session:
        proof = session.scalar(select(AuditEntry.reason).where(AuditEntry.subscriber_id == sub.id))
        assert proof and "requested" in proof and "confirmed" in proof and "web-7" in proof
        assert session.scalar(select(SignupRequest)) is None  # the request is gone once used
    with db.write_session() as session:
        assert confirm_signup(session, decision.signup_id) is None  # a link works once


def test_the_answer_does_not_depend_on_the_address_being_known(db: Database) -> None:
    seed_members(db, {"wales": 1})
    with db.write_session() as session:
        unsubscribe(session, "member1@example.org")
    with db.write_session() as session:
        known = request_signup(session, _form("member1@example.org"), client="192.0.2.1", consent_version="v")
        stranger = request_signup(session, _form("stranger@example.org"), client="192.0.2.1", consent_version="v")
    assert known.signup_id and stranger.signup_id and known.held_back == stranger.held_back is None
    with db.write_session() as session:
        assert confirm_signup(session, known.signup_id).outcome == "reactivated"  # type: ignore[union-attr]
    assert _sub(db, "member1@example.org").status == "active"


def test_expired_requests_cannot_be_confirmed(db: Database) -> None:
    long_ago = utcnow() - timedelta(hours=49)
    with db.write_session() as session:
        decision = request_signup(session, _form(), client="192.0.2.1", consent_version="v", now=long_ago)
    with db.write_session() as session:
        assert confirm_signup(session, decision.signup_id or 0) is None


def test_honeypot_and_rate_limits_hold_back_the_email(db: Database) -> None:
    with db.write_session() as session:
        trapped = request_signup(session, _form(trap="http://spam.example"), client="192.0.2.9", consent_version="v")
    assert trapped.signup_id is None and trapped.held_back == "honeypot field filled"
    # per address: 3 a day, whatever the client
    decisions = []
    for i in range(4):
        with db.write_session() as session:
            decisions.append(request_signup(session, _form("victim@example.org"), client=f"198.51.100.{i}",
                                            consent_version="v"))
    assert [d.signup_id is not None for d in decisions] == [True, True, True, False]
    # per client: 10 an hour, counted in the database (a second connection sees the same count)
    other = open_database(str(db.engine.url.render_as_string(hide_password=False)))
    try:
        results = []
        for i in range(11):
            target = db if i % 2 else other
            with target.write_session() as session:
                results.append(request_signup(session, _form(f"p{i}@example.org"), client="203.0.113.5",
                                              consent_version="v").signup_id is not None)
    finally:
        other.dispose()
    assert results == [True] * 10 + [False]


def test_bad_input_is_named(db: Database) -> None:
    with db.write_session() as session:
        with pytest.raises(InputError, match="email"):
            request_signup(session, _form("not an address"), client="192.0.2.1", consent_version="v")
        with pytest.raises(InputError, match="region"):
            request_signup(session, _form(region="Narnia"), client="192.0.2.1", consent_version="v")
        with pytest.raises(InputError, match="tick"):
            request_signup(session, _form(consent=False), client="192.0.2.1", consent_version="v")


def test_an_erased_member_may_come_back_only_by_confirming_a_sign_up(db: Database) -> None:
    seed_members(db, {"wales": 1})
    with db.write_session() as session:
        erase(session, "member1@example.org")
    with db.write_session() as session, pytest.raises(InputError, match="erased"):
        from newsletter.members import SubscriberDetails, add_subscriber

        add_subscriber(session, "member1@example.org", SubscriberDetails())
    with db.write_session() as session:
        decision = request_signup(session, _form("member1@example.org"), client="192.0.2.1", consent_version="v")
    with db.write_session() as session:
        assert confirm_signup(session, decision.signup_id or 0).outcome == "returned after erasure"  # type: ignore[union-attr]
    sub = _sub(db, "member1@example.org")
    assert sub.status == "active" and sub.id != 1


def test_erasure_also_removes_a_pending_sign_up(db: Database) -> None:
    seed_members(db, {"wales": 1})
    with db.write_session() as session:
        request_signup(session, _form("member1@example.org"), client="192.0.2.1", consent_version="v")
    with db.write_session() as session:
        erase(session, "member1@example.org")
    with db.session() as session:
        assert session.scalar(select(SignupRequest)) is None


def test_sqlite_database_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    database = open_database(f"sqlite:///{path}")
    database.dispose()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
