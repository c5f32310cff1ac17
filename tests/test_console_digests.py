"""Console digests over HTTP (SQLite and PostgreSQL): the list shows each digest with its next
occurrence; Approve schedules an occurrence awaiting review once, Skip skips it (cancelling its
sends), both through the functions `newsletter digests approve|skip` call and audited; what a
person can get wrong (after the deadline, twice, an unknown digest or date) is a message, never a
500; no form token, signed out or a disabled account changes nothing."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from console_support import ADMIN, COMMS, Console, csrf_of, make_console
from digest_support import Item, utc, write_digest, write_feed

from newsletter.accounts import disable_user, list_audit
from newsletter.content import describe
from newsletter.db import Database
from newsletter.models import utcnow
from newsletter.schedule import list_digests, list_schedule, occurrence, run_digest_now

DIGEST = "test-weekly"
LATE = "late-weekly"
PREPARED_AT = utc(2099, 1, 5, 10, 0)  # a Monday: that day's occurrence, reviewed long before its deadline
DAY = "2099-01-05"
EDITION = f"{DIGEST}-{DAY}"


@pytest.fixture
def console(project: Path, db: Database, db_url: str) -> Console:
    return make_console(project, db, db_url)


def awaiting_review(console: Console, name: str = DIGEST, at: datetime = PREPARED_AT) -> str:
    """Prepare `name`'s occurrence of the day of `at` (as `digests run NAME --now` does): it waits
    for review until 1 h 30 min after `at`. Its date."""
    project = console.settings.project_dir
    feed = f"issues/digests/feeds/{name}.xml"
    write_feed(project / feed, [Item(f"{name}-news-for-scotland", at - timedelta(hours=20), "Scotland"),
                                Item(f"{name}-national-news", at - timedelta(hours=30))])
    write_digest(project, feeds=[feed], policy="review", deadline="30m", name=name)
    info = run_digest_now(console.db, console.settings, name, now=at)
    assert info.state == "awaiting_review", info.reason
    return info.occurs_on.isoformat()


def state_of(console: Console, name: str, day: str) -> str:
    return occurrence(console.db, console.settings, name, day).state


def test_the_list_shows_the_sample_digest_with_its_next_occurrence(console: Console) -> None:
    console.login(COMMS)
    home = console.client.get("/admin/")
    assert 'href="/admin/digests"' in home.text
    [sample] = list_digests(console.db, console.settings)
    assert sample.name == "lgit-weekly" and sample.digest is not None and sample.next_send is not None
    nxt = describe(sample.next_send, sample.digest.zone)
    listed = console.client.get("/admin/digests")
    assert listed.status_code == 200
    assert 'href="/admin/digests/lgit-weekly"' in listed.text and nxt in listed.text
    assert "every Tuesday at 08:00 (Europe/London)" in listed.text
    assert "review" in listed.text and "by 2 h after the send time" in listed.text and "north-east" in listed.text
    page = console.client.get("/admin/digests/lgit-weekly")
    assert page.status_code == 200 and nxt in page.text and "No occurrences yet" in page.text
    assert "issues/digests/feeds/lgit-weekly.xml" in page.text


def test_approve_schedules_once_and_skip_skips_audited(console: Console) -> None:
    day = awaiting_review(console)
    assert day == DAY
    console.login(COMMS)
    page = console.client.get(f"/admin/digests/{DIGEST}")
    assert page.status_code == 200 and "awaiting review" in page.text
    assert f'href="/admin/editions/{EDITION}"' in page.text and f'href="/admin/editions/{EDITION}/preview"' in page.text
    assert "2099-01-05 11:30 GMT" in page.text  # the review deadline, in London time
    assert console.client.get(f"/admin/editions/{EDITION}").status_code == 200
    token = csrf_of(page.text)

    approved = console.client.post(f"/admin/digests/{DIGEST}/{DAY}/approve", data={"csrf": token})
    assert approved.status_code == 303
    shown = console.client.get(approved.headers["location"])
    assert f"Approved {DIGEST} {DAY}: edition {EDITION} is scheduled" in shown.text
    sends = list_schedule(console.db, console.settings, edition=EDITION, check=False)
    assert {s.segment for s in sends} == {"scotland", "wales", "london"} and {s.state for s in sends} == {"scheduled"}
    info = occurrence(console.db, console.settings, DIGEST, DAY)
    assert info.state == "scheduled" and info.decided_by == f"console:{COMMS}"

    again = console.client.post(f"/admin/digests/{DIGEST}/{DAY}/approve", data={"csrf": token})
    assert again.status_code == 409
    assert "Not approved: digest test-weekly 2099-01-05 is scheduled; only an occurrence awaiting review" in again.text
    assert len(list_schedule(console.db, console.settings, edition=EDITION, check=False)) == 3  # not scheduled twice

    skipped = console.client.post(f"/admin/digests/{DIGEST}/{DAY}/skip", data={"csrf": token, "reason": "holiday week"})
    assert skipped.status_code == 303
    assert f"Skipped {DIGEST} {DAY}" in console.client.get(skipped.headers["location"]).text
    info = occurrence(console.db, console.settings, DIGEST, DAY)
    assert info.state == "skipped" and info.reason == f"skipped by console:{COMMS}: holiday week"
    assert {s.state for s in list_schedule(console.db, console.settings, edition=EDITION, check=False)} == {"cancelled"}
    twice = console.client.post(f"/admin/digests/{DIGEST}/{DAY}/skip", data={"csrf": token})
    assert twice.status_code == 409 and "is skipped; nothing to skip" in twice.text

    audit = [(a.actor, a.action, a.target) for a in list_audit(console.db)]
    assert (f"console:{COMMS}", "digest-approve", f"digest {DIGEST} {DAY}") in audit
    assert (f"console:{COMMS}", "digest-skip", f"digest {DIGEST} {DAY}") in audit
    assert [a.detail for a in list_audit(console.db) if a.action == "digest-skip"] == [
        f"edition {EDITION}; reason: holiday week"]


def test_an_admin_skips_an_occurrence_waiting_for_review(console: Console) -> None:
    awaiting_review(console)
    console.login(ADMIN)
    token = console.csrf(f"/admin/digests/{DIGEST}")
    done = console.client.post(f"/admin/digests/{DIGEST}/{DAY}/skip", data={"csrf": token})
    assert done.status_code == 303 and state_of(console, DIGEST, DAY) == "skipped"
    assert list_schedule(console.db, console.settings, edition=EDITION, check=False) == []
    assert "Approve" not in console.client.get(f"/admin/digests/{DIGEST}").text


def test_mistakes_are_messages_never_a_500(console: Console) -> None:
    late = awaiting_review(console, LATE, utcnow() - timedelta(hours=3))  # its deadline passed 1 h 30 min ago
    console.login(COMMS)
    page = console.client.get(f"/admin/digests/{LATE}")
    assert "Approve" in page.text  # no scheduler has noticed the deadline yet
    token = csrf_of(page.text)
    refused = console.client.post(f"/admin/digests/{LATE}/{late}/approve", data={"csrf": token})
    assert refused.status_code == 409 and "was not approved by its deadline" in refused.text
    assert "skipped, never sent late" in refused.text
    assert state_of(console, LATE, late) == "skipped"
    assert list_schedule(console.db, console.settings, edition=f"{LATE}-{late}", check=False) == []
    assert "Approve" not in refused.text.split('id="occurrences"')[1]

    unknown = console.client.post(f"/admin/digests/nope/{late}/approve", data={"csrf": token})
    assert unknown.status_code == 404 and "no digest &#39;nope&#39;" in unknown.text
    assert console.client.get("/admin/digests/nope").status_code == 404
    no_day = console.client.post(f"/admin/digests/{LATE}/2099-02-30/skip", data={"csrf": token})
    assert no_day.status_code == 409 and "cannot read the date" in no_day.text
    other_day = console.client.post(f"/admin/digests/{LATE}/2099-02-03/approve", data={"csrf": token})
    assert other_day.status_code == 409 and "has no occurrence on 2099-02-03" in other_day.text
    assert not [a for a in list_audit(console.db) if a.action.startswith("digest-")]


def test_no_token_signed_out_or_disabled_changes_nothing(console: Console) -> None:
    awaiting_review(console)
    path = f"/admin/digests/{DIGEST}/{DAY}/approve"
    signed_out = console.client.post(path, data={})
    assert signed_out.status_code == 403
    assert console.client.get(f"/admin/digests/{DIGEST}").status_code == 303  # to the sign-in page

    console.login(COMMS)
    token = console.csrf(f"/admin/digests/{DIGEST}")
    assert console.client.post(path, data={}).status_code == 403
    assert console.client.post(path, data={"csrf": "1.bad"}).status_code == 403
    assert console.client.post(f"/admin/digests/{DIGEST}/{DAY}/skip", data={"reason": "x"}).status_code == 403
    cross = console.client.post(path, data={"csrf": token}, headers={"origin": "https://evil.example"})
    assert cross.status_code == 403
    disable_user(console.db, COMMS, actor="test")  # an account without rights any more
    assert console.client.post(path, data={"csrf": token}).status_code == 403
    assert state_of(console, DIGEST, DAY) == "awaiting_review"
    assert list_schedule(console.db, console.settings, edition=EDITION, check=False) == []
    assert not [a for a in list_audit(console.db) if a.action.startswith("digest-")]
