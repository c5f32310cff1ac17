"""Sending an edition: frozen audience, exactly one variant per member, resume, reports."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from delivery_support import make_project, project_settings, seed_members
from sqlalchemy import func, select

from newsletter.db import Database
from newsletter.delivery.send import list_runs, run_report, send_edition
from newsletter.delivery.tokens import UNSUBSCRIBE, token_secret, verify_token
from newsletter.delivery.transports.base import (
    ConnectionFailed,
    OutcomeUnknown,
    TransportResponse,
)
from newsletter.delivery.transports.memory import MemoryTransport
from newsletter.errors import GateFailed, TransportAuthError
from newsletter.models import Batch, Subscriber, utcnow


@pytest.fixture
def setup(tmp_path: Path, db: Database, db_url: str):  # type: ignore[no-untyped-def]
    build = make_project(tmp_path)
    settings = project_settings(tmp_path, db_url, batch_size=10, concurrency=3)
    return build, settings


def test_every_active_member_gets_one_variant_and_excluded_are_counted(setup, db: Database) -> None:  # type: ignore[no-untyped-def]
    build, settings = setup
    active = seed_members(db, {"wales": 25, "scotland": 12, "london": 3},
                          {"unsubscribed": 2, "bounced": 1, "complained": 1})
    transport = MemoryTransport()
    reports = send_edition(db, settings, build, transport=transport)
    assert sorted(transport.recipients()) == sorted(active)
    by_segment = {r.segment: r for r in reports}
    assert by_segment["wales"].accepted == 25 and by_segment["wales"].batches == 3
    assert by_segment["wales"].excluded == {"unsubscribed": 2, "bounced": 1, "complained": 1, "erased": 0, "paused": 0}
    assert all(r.status == "finished" and r.uncertain == 0 for r in reports)
    # each request is one variant, at most batch_size personalizations, segment in custom_args
    run_ids = {r.segment: str(r.run_id) for r in reports}
    for request in transport.delivered:
        body = request.json()
        assert len(body["personalizations"]) <= 10
        assert {p["custom_args"]["segment"] for p in body["personalizations"]} == {request.segment}
        # events carry the run and batch, so SendGrid's events can be tied back to this batch
        assert {(p["custom_args"]["run"], p["custom_args"]["batch"]) for p in body["personalizations"]} == {
            (run_ids[request.segment], str(request.batch_seq))}
        assert body["categories"] == ["2026-12", request.segment]
        assert "-first_name-" in body["content"][1]["value"]


def test_personalization_substitutions_and_unsubscribe_headers(setup, db: Database) -> None:  # type: ignore[no-untyped-def]
    build, settings = setup
    seed_members(db, {"wales": 7})
    transport = MemoryTransport()
    send_edition(db, settings, build, transport=transport)
    secret = token_secret(db, settings)
    with db.session() as session:
        names = dict(session.execute(select(Subscriber.email, Subscriber.id)).all())
    for p in transport.personalizations():
        email = p["to"][0]["email"]
        subs = p["substitutions"]
        assert subs["-email-"] == email
        assert subs["-first_name-"] in (f"First{email[6:-12]}", "colleague")
        token = subs["-unsubscribe_url-"].rsplit("/u/", 1)[1]
        assert subs["-unsubscribe_url-"].startswith("https://news.example.org/u/")
        assert verify_token(secret, token, UNSUBSCRIBE) == names[email]
        assert p["headers"] == {"List-Unsubscribe": f"<{subs['-unsubscribe_url-']}>, <mailto:digest@example.org?subject=unsubscribe>",
                                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
        assert p["custom_args"]["subscriber_id"] == str(names[email])
        assert "," not in p["to"][0].get("name", "")


def test_rerun_of_finished_send_sends_nothing(setup, db: Database) -> None:  # type: ignore[no-untyped-def]
    build, settings = setup
    seed_members(db, {"wales": 15})
    send_edition(db, settings, build, transport=MemoryTransport())
    again = MemoryTransport()
    reports = send_edition(db, settings, build, transport=again)
    assert again.requests == []
    assert sum(r.sent_now for r in reports) == 0 and sum(r.accepted for r in reports) == 15


def test_frozen_audience_does_not_change_on_resume(setup, db: Database) -> None:  # type: ignore[no-untyped-def]
    build, settings = setup
    seed_members(db, {"wales": 12})
    first = MemoryTransport(script=[TransportResponse(202), ConnectionFailed("down")], handler=lambda r: TransportResponse(400, {}, "bad"))
    send_edition(db, settings.model_copy(update={"max_retries": 0}), build, transport=first, segments=["wales"])
    seed_members(db, {"london": 0, "wales": 0})
    with db.session() as session:  # a member who joins after the freeze is not added
        session.add(Subscriber(email="late@example.org", email_key="late@example.org", region="wales"))
    reports = run_report(db, "2026-12")
    assert reports[0].audience == 12


def test_failed_4xx_kept_and_retryable_failures_resume(setup, db: Database) -> None:  # type: ignore[no-untyped-def]
    build, settings = setup
    active = seed_members(db, {"wales": 30})
    flaky = MemoryTransport(script=[TransportResponse(400, {}, '{"errors":[{"message":"bad"}]}'),
                                    TransportResponse(500), TransportResponse(500)])
    reports = send_edition(db, settings.model_copy(update={"max_retries": 0, "concurrency": 1}), build,
                           transport=flaky, segments=["wales"])
    assert reports[0].failed == 30 and reports[0].accepted == 0 and reports[0].status == "incomplete"
    assert reports[0].failed_final == 10 and not reports[0].all_accepted
    with db.session() as session:
        bodies = session.scalars(select(Batch.response_body).where(Batch.response_status == 400)).all()
    assert bodies == ['{"errors":[{"message":"bad"}]}']
    again = MemoryTransport()
    reports = send_edition(db, settings, build, transport=again, segments=["wales"])
    assert reports[0].failed == 10 and reports[0].accepted == 20  # the 5xx batch went; the 400 stays failed
    assert reports[0].status == "incomplete" and reports[0].failed_final == 10
    assert flaky.recipients() == [] and len(set(again.recipients())) == 20
    assert set(again.recipients()) < set(active)


def test_uncertain_batches_are_resent_only_when_asked(setup, db: Database) -> None:  # type: ignore[no-untyped-def]
    build, settings = setup
    active = seed_members(db, {"wales": 20})
    first = MemoryTransport(script=[OutcomeUnknown("timeout after sending")])
    reports = send_edition(db, settings.model_copy(update={"concurrency": 1}), build, transport=first, segments=["wales"])
    assert reports[0].uncertain == 10 and "timeout after sending" in reports[0].problems[0]
    second = MemoryTransport()
    assert send_edition(db, settings, build, transport=second, segments=["wales"])[0].uncertain == 10
    assert second.requests == []
    third = MemoryTransport()
    reports = send_edition(db, settings, build, transport=third, segments=["wales"], resend_uncertain=True)
    assert reports[0].accepted == 20 and reports[0].uncertain == 0
    assert sorted(first.recipients() + third.recipients()) == sorted(active)


def test_auth_error_stops_the_send_and_keeps_batches_pending(setup, db: Database) -> None:  # type: ignore[no-untyped-def]
    build, settings = setup
    seed_members(db, {"wales": 30})
    denied = MemoryTransport(handler=lambda r: TransportResponse(401, {}, "unauthorized"))
    with pytest.raises(TransportAuthError) as info:
        send_edition(db, settings.model_copy(update={"concurrency": 1}), build, transport=denied, segments=["wales"])
    assert len(denied.requests) == 1 and "API key" in str(info.value)
    report = run_report(db, "2026-12")[0]
    assert report.pending == 30 and report.status == "sending"


def test_rate_limited_batch_waits_and_goes(setup, db: Database) -> None:  # type: ignore[no-untyped-def]
    build, settings = setup
    active = seed_members(db, {"wales": 20})
    limited = MemoryTransport(script=[TransportResponse(429, {"Retry-After": "0"})] * 3)
    reports = send_edition(db, settings, build, transport=limited, segments=["wales"])
    assert sorted(limited.recipients()) == sorted(active) and reports[0].accepted == 20


def test_changed_build_file_is_refused(setup, db: Database) -> None:  # type: ignore[no-untyped-def]
    build, settings = setup
    (build / "wales.html").write_text("tampered", "utf-8")
    with pytest.raises(GateFailed):
        send_edition(db, settings, build, transport=MemoryTransport())


def test_dry_run_and_confirmation_write_nothing(setup, db: Database) -> None:  # type: ignore[no-untyped-def]
    build, settings = setup
    seed_members(db, {"wales": 4, "london": 2}, {"erased": 1})
    plans = []
    reports = send_edition(db, settings, build, transport=MemoryTransport(), dry_run=True)
    assert {r.segment: r.audience for r in reports} == {"scotland": 0, "wales": 4, "london": 2}
    assert send_edition(db, settings, build, transport=MemoryTransport(),
                        confirm=lambda plan: plans.append(plan) or False) == []
    assert plans[0].audience == 6 and plans[0].excluded["erased"] == 1
    assert list_runs(db) == []


def test_one_variant_per_member_when_segments_overlap(tmp_path: Path, db: Database, db_url: str) -> None:
    build = make_project(tmp_path)
    (tmp_path / "subscribers" / "segments.yaml").write_text(
        "priority: [scotland, wales, london]\nsegments:\n  scotland: {rule: {region: scotland}}\n"
        "  wales: {rule: {any: [{region: wales}, {region: scotland}]}}\n  london: {rule: {region: london}}\n")
    settings = project_settings(tmp_path, db_url)
    seed_members(db, {"scotland": 5, "wales": 5})
    transport = MemoryTransport()
    send_edition(db, settings, build, transport=transport)
    assert Counter(transport.recipients()).most_common(1)[0][1] == 1
    assert {r.segment: r.accepted for r in list_runs(db)} == {"scotland": 5, "wales": 5, "london": 0}


def test_a_member_who_moves_segment_between_two_freezes_is_sent_once(setup, db: Database) -> None:  # type: ignore[no-untyped-def]
    """Scotland is sent, then a Scottish member moves to Wales: the Welsh freeze meets a member
    frozen for the edition already (the plain insert collides) and leaves them out, with the
    batch counts and the run's audience right."""
    build, settings = setup
    seed_members(db, {"scotland": 12, "wales": 25})
    transport = MemoryTransport()
    send_edition(db, settings, build, segments=["scotland"], transport=transport)
    with db.session() as session:
        moved = session.scalars(select(Subscriber).where(Subscriber.region == "scotland").order_by(Subscriber.id)).first()
        moved.region = "wales"
        moved_email = moved.email
        session.commit()
    [wales] = send_edition(db, settings, build, segments=["wales"], transport=transport)
    assert Counter(transport.recipients())[moved_email] == 1
    assert len(transport.recipients()) == 37
    assert (wales.audience, wales.accepted, wales.batches) == (25, 25, 3)
    with db.session() as session:
        counts = session.scalars(select(Batch.recipient_count).where(Batch.run_id == wales.run_id).order_by(Batch.seq)).all()
    assert sum(counts) == 25 and max(counts) <= 10


def test_cli_send_list_show(tmp_path: Path, db: Database, db_url: str, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import json

    make_project(tmp_path)
    seed_members(db, {"wales": 12, "london": 3}, {"bounced": 2})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSLETTER_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    dry = cli("send", "x.yaml", "--build", "build/2026-12", "--dry-run", "--json")
    assert dry.exit_code == 0 and {r["segment"]: r["audience"] for r in json.loads(dry.stdout)}["wales"] == 12
    assert cli("sends", "list", "--json").stdout.strip() == "[]"
    sent = cli("send", "x.yaml", "--build", "build/2026-12", "--yes", "--outbox", "out", "--json")
    assert sent.exit_code == 0, sent.stderr
    assert len(list((tmp_path / "out" / "2026-12" / "wales").glob("*.json"))) == 1
    runs = json.loads(cli("sends", "list", "--json").stdout)
    assert {r["segment"]: r["accepted"] for r in runs} == {"scotland": 0, "wales": 12, "london": 3}
    wales = next(r for r in runs if r["segment"] == "wales")
    shown = json.loads(cli("sends", "show", str(wales["run_id"]), "--json").stdout)
    assert shown[0]["excluded"]["bounced"] == 2 and shown[0]["transport"] == "outbox"
    missing = cli("sends", "show", "1999-01")
    assert missing.exit_code == 2 and "no send run" in missing.stderr


def test_rate_limit_headers() -> None:
    import time as _time

    from newsletter.delivery.batches import retry_after

    soon = retry_after(TransportResponse(429, {"X-RateLimit-Reset": str(int(_time.time()) + 30)}), 1.0)
    assert 28 <= soon <= 30
    assert retry_after(TransportResponse(429, {"x-ratelimit-reset": "12"}), 1.0) == 12.0
    assert retry_after(TransportResponse(429, {"Retry-After": "7"}), 1.0) == 7.0
    # what SendGrid asked, uncapped: the sender caps it and says so (tests/test_delivery_faults.py)
    assert retry_after(TransportResponse(429, {"Retry-After": "99999999"}), 1.0) == 99999999.0
    assert retry_after(TransportResponse(429, {"Retry-After": "Fri, 31 Dec 2099 23:59:59 GMT"}), 1.0) > 2e9
    assert retry_after(TransportResponse(429, {}), 2.5) == 2.5


def test_members_who_leave_after_the_freeze_are_not_sent_on_resume(setup, db: Database) -> None:  # type: ignore[no-untyped-def]
    from newsletter.members.privacy import erase
    from newsletter.members.subscribers import unsubscribe

    build, settings = setup
    active = seed_members(db, {"wales": 12})  # batches of 10: the second request fails first time
    first = MemoryTransport(script=[TransportResponse(202), ConnectionFailed("down")])
    send_edition(db, settings.model_copy(update={"max_retries": 0, "concurrency": 1}), build,
                 transport=first, segments=["wales"])
    sent_first = set(first.recipients())
    left = [email for email in active if email not in sent_first]
    assert len(left) == 2
    with db.session() as session:  # between the two attempts: one unsubscribes, one is erased
        unsubscribe(session, left[0], actor="test", reason="asked")
        erase(session, left[1], actor="test")
    second = MemoryTransport(handler=lambda r: TransportResponse(202))
    send_edition(db, settings, build, transport=second, segments=["wales"])
    assert second.recipients() == []
    assert run_report(db, "2026-12")[0].pending == 0


def test_every_kind_of_member_who_left_since_the_freeze_is_left_out_of_the_request(setup, db: Database) -> None:  # type: ignore[no-untyped-def]
    """A request is built from the frozen batch minus whoever the eligibility rule now leaves
    out: each status, an erased address, a pause still running; a pause that has ended is sent."""
    build, settings = setup
    active = seed_members(db, {"wales": 9})
    failing = MemoryTransport(script=[ConnectionFailed("down")])
    send_edition(db, settings.model_copy(update={"max_retries": 0, "concurrency": 1}), build,
                 transport=failing, segments=["wales"])  # frozen, nothing sent
    now = utcnow()
    changes = {active[0]: {"status": "unsubscribed"}, active[1]: {"status": "bounced"},
               active[2]: {"status": "complained"}, active[3]: {"status": "erased"},
               active[4]: {"email": None}, active[5]: {"paused_until": now + timedelta(days=30)},
               active[6]: {"paused_until": now - timedelta(minutes=1)}}
    with db.session() as session:
        for email, values in changes.items():
            member = session.scalars(select(Subscriber).where(Subscriber.email_key == email)).one()
            for key, value in values.items():
                setattr(member, key, value)
    resumed = MemoryTransport(handler=lambda r: TransportResponse(202))
    send_edition(db, settings, build, transport=resumed, segments=["wales"])
    assert sorted(resumed.recipients()) == sorted([active[6], active[7], active[8]])


def test_cli_bad_api_key_stops_at_once_and_never_shows_the_key(tmp_path: Path, db: Database, db_url: str, cli,  # type: ignore[no-untyped-def]
                                                                 monkeypatch) -> None:
    from stub_sendgrid import StubSendGrid

    make_project(tmp_path)
    seed_members(db, {"wales": 25})
    monkeypatch.chdir(tmp_path)
    for name, value in {"NEWSLETTER_PROJECT_DIR": str(tmp_path), "NEWSLETTER_DATABASE_URL": db_url,
                        "SENDGRID_API_KEY": "SG.do-not-print-me", "NEWSLETTER_BATCH_SIZE": "10",
                        "NEWSLETTER_CONCURRENCY": "1"}.items():
        monkeypatch.setenv(name, value)
    with StubSendGrid(["401"] * 10) as stub:
        monkeypatch.setenv("SENDGRID_HOST", stub.url)
        result = cli("send", "x.yaml", "--build", "build/2026-12", "--segment", "wales", "--yes")
    assert result.exit_code == 1
    assert "refused the API key" in result.stderr
    assert "do-not-print-me" not in result.stdout + result.stderr
    assert stub.requests == 1 and stub.authorizations == ["Bearer SG.do-not-print-me"]
    assert run_report(db, "2026-12")[0].pending == 25  # nothing lost: the next send resumes


def test_a_sender_goes_on_to_another_segment_while_one_is_being_frozen_elsewhere(setup, db: Database) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL: two senders that reach the same segment do not both wait for one freeze. While
    another sender holds the first segment's freeze lock, this one freezes and sends the others,
    then waits for that one (frozen by the other, or by itself once the lock is free)."""
    import threading

    from sqlalchemy import func, literal

    from newsletter.delivery.audience import FREEZE_LOCK_SPACE

    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer: a freeze waits for the write lock")
    build, settings = setup
    active = seed_members(db, {"wales": 5, "scotland": 6, "london": 7})
    order = []
    with db.engine.connect() as other:  # "another sender", freezing Wales
        with other.begin():
            other.execute(select(func.pg_advisory_xact_lock(literal(FREEZE_LOCK_SPACE),
                                                            func.hashtext(literal("2026-12/wales")))))
            transport = MemoryTransport(handler=lambda r: order.append(r.segment) or TransportResponse(202))
            sending = threading.Thread(target=send_edition, args=(db, settings, build),
                                       kwargs={"transport": transport, "segments": ["wales", "scotland", "london"]})
            sending.start()
            sending.join(timeout=3)
            assert sending.is_alive()  # waiting for Wales, the others sent
            assert set(order) == {"scotland", "london"}
        sending.join(timeout=30)  # the lock is free: this sender freezes Wales itself
    assert not sending.is_alive()
    assert sorted(transport.recipients()) == sorted(active) and order[-1] == "wales"


def test_a_member_who_joins_during_the_freeze_lands_in_a_batch_of_their_own_run(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL freezes segments in parallel at READ COMMITTED: a member committed between the
    count and the INSERT ... SELECT must still get a batch of their own run (found in review)."""
    import threading

    from sqlalchemy import insert

    import newsletter.delivery.audience as audience
    from newsletter.delivery.requests import VariantToSend
    from newsletter.models import Recipient, SendRun

    if db.dialect != "postgresql":
        pytest.skip("SQLite serialises freezes (BEGIN IMMEDIATE): no window to test")
    with db.session() as s:
        s.execute(insert(Subscriber), [{"email": f"{r}{i}@x.org", "email_key": f"{r}{i}@x.org", "region": r,
                                        "status": "active"} for r in ("a", "b") for i in range(4)])
    b_batches_added = threading.Event()
    original = audience._add_batches

    def add_batches_then_a_member_joins(session, run_id, first_seq, count, size):  # type: ignore[no-untyped-def]
        original(session, run_id, first_seq, count, size)
        segment = session.scalar(select(SendRun.segment).where(SendRun.id == run_id))
        if segment == "b":
            session.flush()
            b_batches_added.set()
        elif segment == "a" and first_seq == 0:
            b_batches_added.wait(10)
            with db.session() as other:  # an import commits one more member of segment a
                other.add(Subscriber(email="late@x.org", email_key="late@x.org", region="a", status="active"))

    monkeypatch.setattr(audience, "_add_batches", add_batches_then_a_member_joins)
    variants = [VariantToSend("2026-12", seg, "s", "<p>", "t", seg * 32, "f@x.org", "F") for seg in ("a", "b")]
    audience.freeze_audience(db, "2026-12", variants, [("a", Subscriber.region == "a"), ("b", Subscriber.region == "b")],
                             batch_size=2, workers=2)
    with db.session() as s:
        rows = s.execute(select(Recipient.email, Recipient.run_id, Batch.run_id)
                         .outerjoin(Batch, Batch.id == Recipient.batch_id)).all()
        counts = {run.segment: (run.audience_count, sum(b.recipient_count for b in s.scalars(
            select(Batch).where(Batch.run_id == run.id)))) for run in s.scalars(select(SendRun))}
    assert all(own == batch_run for _, own, batch_run in rows), rows
    assert "late@x.org" in {email for email, _, _ in rows}
    assert counts == {"a": (5, 5), "b": (4, 4)}


def test_an_answer_that_arrives_after_the_batch_was_presumed_lost_is_kept(setup, db: Database) -> None:  # type: ignore[no-untyped-def]
    """Another sender may mark a long in-flight request uncertain; the owner's 202 still counts."""
    from sqlalchemy import update

    from newsletter.models import BatchStatus

    build, settings = setup
    seed_members(db, {"wales": 5})

    def slow_answer(request):  # type: ignore[no-untyped-def]
        with db.write_session() as session:  # what prepare_runs in another process does
            session.execute(update(Batch).where(Batch.status == BatchStatus.IN_FLIGHT.value)
                            .values(status=BatchStatus.UNCERTAIN.value))
        return TransportResponse(202, {"X-Message-Id": "late-but-fine"})

    send_edition(db, settings, build, transport=MemoryTransport(handler=slow_answer), segments=["wales"])
    with db.session() as session:
        batch = session.scalars(select(Batch)).one()
    assert (batch.status, batch.message_id) == ("accepted", "late-but-fine")


def test_members_stored_before_cleaning_are_sent_with_ascii_domains_and_plain_names(setup, db: Database) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import insert

    build, settings = setup
    with db.session() as session:  # as an older version stored them
        session.execute(insert(Subscriber), [{"email": "ann@bücher.example", "email_key": "ann@bücher.example",
                                              "first_name": "An\u202en", "last_name": "Lee\u200b",
                                              "region": "wales", "status": "active"}])
    transport = MemoryTransport()
    send_edition(db, settings, build, transport=transport)
    (p,) = transport.personalizations()
    assert p["to"] == [{"email": "ann@xn--bcher-kva.example", "name": "Ann Lee"}]
    assert p["substitutions"]["-first_name-"] == "Ann"


def test_one_scan_census_agrees_with_counting_each_segment(setup, db: Database) -> None:  # type: ignore[no-untyped-def]
    import newsletter.delivery.audience as audience

    seed_members(db, {"wales": 7, "scotland": 4, "london": 2}, {"unsubscribed": 3, "bounced": 2, "erased": 1})
    with db.session() as session:
        paused = session.scalars(select(Subscriber).where(Subscriber.region == "wales", Subscriber.status == "active")
                                 .order_by(Subscriber.id)).first()
        paused.paused_until = utcnow() + timedelta(days=3)
    clauses = [("scotland", Subscriber.region == "scotland"), ("wales", Subscriber.region == "wales"),
               ("london", Subscriber.region == "london"), ("north-east", Subscriber.region == "north-east")]
    with db.session() as session:
        one_by_one = {name: audience._census(session, clause) for name, clause in clauses}
        together = audience._censuses(session, clauses)
        # SQLite's census beside a staged audience (it is given the eligible count)
        staged = {name: audience._staged_census(session, clause, one_by_one[name][0]) for name, clause in clauses}
    assert together == one_by_one == staged
    assert together["wales"][0] == 6 and together["wales"][1]["paused"] == 1
    assert together["north-east"] == (0, {"unsubscribed": 0, "bounced": 0, "complained": 0, "erased": 0, "paused": 0})


def test_batches_are_consecutive_runs_of_members_in_member_order(setup, db: Database) -> None:  # type: ignore[no-untyped-def]
    import newsletter.delivery.audience as audience
    from newsletter.delivery.requests import VariantToSend
    from newsletter.models import Recipient

    seed_members(db, {"wales": 10, "scotland": 2}, {"unsubscribed": 2})
    clauses = [("wales", Subscriber.region == "wales")]
    variant = VariantToSend("2026-12", "wales", "s", "<p>", "t", "w" * 64, "f@x.org", "F")
    audience.freeze_audience(db, "2026-12", [variant], clauses, batch_size=3)
    with db.session() as session:
        members = list(session.scalars(select(Subscriber.id).where(Subscriber.region == "wales",
                                                                   Subscriber.status == "active")
                                       .order_by(Subscriber.id)))
        batches = session.execute(select(Batch.id, Batch.seq, Batch.recipient_count).order_by(Batch.seq)).all()
        frozen = {batch_id: list(session.scalars(select(Recipient.subscriber_id).where(Recipient.batch_id == batch_id)
                                                 .order_by(Recipient.subscriber_id)))
                  for batch_id, _, _ in batches}
    assert [(seq, n) for _, seq, n in batches] == [(0, 3), (1, 3), (2, 3), (3, 1)]
    assert [frozen[batch_id] for batch_id, _, _ in batches] == [members[0:3], members[3:6], members[6:9], members[9:]]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_sqlite_freeze_selects_its_audience_without_holding_the_write_lock(setup, db: Database, db_url: str) -> None:  # type: ignore[no-untyped-def]
    """Senders record batches while the next segment's audience is selected: only copying it
    into the recipients takes the database's one write lock."""
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import make_url

    import newsletter.delivery.audience as audience
    from newsletter.delivery.requests import VariantToSend

    seed_members(db, {"wales": 20})
    other = sqlite3.connect(make_url(db_url).database, timeout=0, isolation_level=None)
    wrote: list[str] = []

    def meanwhile(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if statement.startswith("INSERT INTO freeze_stage"):
            other.execute("BEGIN IMMEDIATE")  # raises "database is locked" if the freeze held the lock
            other.execute("UPDATE subscribers SET status = 'unsubscribed' WHERE email = 'member1@example.org'")
            other.execute("COMMIT")
            wrote.append(statement)

    event.listen(db.engine, "after_cursor_execute", meanwhile)
    variant = VariantToSend("2026-12", "wales", "s", "<p>", "t", "w" * 64, "f@x.org", "F")
    audience.freeze_audience(db, "2026-12", [variant], [("wales", Subscriber.region == "wales")], batch_size=7)
    event.remove(db.engine, "after_cursor_execute", meanwhile)
    other.close()
    assert len(wrote) == 1
    with db.session() as session:
        batches = list(session.scalars(select(Batch.recipient_count).order_by(Batch.seq)))
    assert batches == [7, 7, 6]  # the audience is the members as they were when it was selected


def test_a_census_counted_before_the_freeze_does_not_change_who_is_frozen(setup, db: Database) -> None:  # type: ignore[no-untyped-def]
    """The counts handed to the freeze are from an earlier moment: a member who joined since is
    frozen in a batch of their own run, one who left is not, and the batches add up."""
    import newsletter.delivery.audience as audience
    from newsletter.delivery.requests import VariantToSend
    from newsletter.models import Recipient, SendRun

    seed_members(db, {"wales": 5, "scotland": 3})
    clauses = [("scotland", Subscriber.region == "scotland"), ("wales", Subscriber.region == "wales")]
    with db.session() as session:
        census = audience._censuses(session, clauses)
        session.add(Subscriber(email="late@x.org", email_key="late@x.org", region="wales", status="active"))
        left = session.scalars(select(Subscriber).where(Subscriber.region == "scotland")).first()
        left.status = "unsubscribed"
    variants = [VariantToSend("2026-12", seg, "s", "<p>", "t", seg[0] * 64, "f@x.org", "F") for seg in ("scotland", "wales")]
    audience.freeze_audience(db, "2026-12", variants, clauses, batch_size=2, census=census)
    with db.session() as session:
        runs = {run.segment: run for run in session.scalars(select(SendRun))}
        batched = {segment: sum(session.scalars(select(Batch.recipient_count).where(Batch.run_id == run.id)))
                   for segment, run in runs.items()}
        unbatched = session.scalar(select(func.count()).where(Recipient.batch_id.is_(None)))
        frozen = set(session.scalars(select(Recipient.email)))
    assert {s: r.audience_count for s, r in runs.items()} == {"scotland": 2, "wales": 6} == batched
    assert unbatched == 0 and "late@x.org" in frozen and left.email not in frozen
    assert runs["wales"].excluded["unsubscribed"] == census["wales"][1]["unsubscribed"]
