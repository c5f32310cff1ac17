"""Recurring digests (issue 16): with two local feed files and a fake clock, a weekly digest picks
only new items, writes a manifest `check` passes and sends per region; a week with no new items
is skipped with the reason; a feed that fails is named and the other used; the review policy
sends nothing before approval, skips after the deadline and sends once when approved after a
restart; two daemons prepare and send each occurrence once; missed occurrences are reported."""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from digest_support import (
    COMMS,
    DIGEST,
    MEMBERS,
    Clock,
    Item,
    add_members,
    daemon,
    notices,
    received,
    utc,
    without_sample_digest,
    write_digest,
    write_feed,
)
from sqlalchemy import func, select

from newsletter.config import Settings, load_settings
from newsletter.content import load_digest
from newsletter.db import Database, open_database
from newsletter.errors import ScheduleError
from newsletter.models import DigestOccurrence
from newsletter.render import load_build
from newsletter.schedule import approve_occurrence, list_occurrences, list_schedule, skip_occurrence

WEEK1 = utc(2099, 1, 6, 8, 0)  # a Tuesday; GMT, so 08:00 London is 08:00 UTC
PREPARE = timedelta(hours=1, minutes=-1)  # a minute after preparation time (an hour before)
FEED_A = "issues/digests/feeds/council-news.xml"
FEED_B = "issues/digests/feeds/partner-news.xml"

A1 = Item("shetland-ferry-booking-goes-online", utc(2099, 1, 5, 10, 0), "Scotland")
A2 = Item("councils-share-a-cloud-exit-plan", utc(2099, 1, 4, 9, 0))
A_OLD = Item("last-years-budget-round", utc(2098, 12, 1, 9, 0))  # older than the 7-day lookback
B1 = Item("cardiff-libraries-upgrade-their-wifi", utc(2099, 1, 5, 15, 0), "Cymru")
B2 = Item("camden-publishes-open-data-on-repairs", utc(2099, 1, 3, 11, 0), "London")
A3 = Item("a-new-guide-to-accessible-forms", utc(2099, 1, 19, 9, 0))


@pytest.fixture
def env(project: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, Database, Path]]:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    monkeypatch.setenv("NEWSLETTER_NOTIFY_EMAIL", COMMS)
    without_sample_digest(project)
    write_feed(project / FEED_A, [A1, A2, A_OLD])
    write_feed(project / FEED_B, [B1, B2])
    settings = load_settings()
    db = open_database(db_url)
    add_members(db)
    yield settings, db, project
    db.dispose()


def occurrences(db: Database, settings: Settings) -> dict[str, tuple[str, str | None]]:
    return {str(o.occurs_on): (o.status, o.reason) for o in list_occurrences(db, settings, DIGEST)}


def articles_by_segment(db: Database, settings: Settings, edition: str) -> dict[str, set[str]]:
    sends = [i for i in list_schedule(db, settings, edition=edition, check=False)]
    build = load_build(sends[0].build_dir)
    return {v.segment: set(v.articles) for v in build.variants}


def test_a_weekly_digest_picks_new_items_writes_a_checked_manifest_and_sends_per_region(env, cli) -> None:  # type: ignore[no-untyped-def]
    settings, db, project = env
    write_digest(project, feeds=[FEED_A, FEED_B])
    clock = Clock(WEEK1 - PREPARE)
    daemon(settings, db, clock).run_once()

    edition = f"{DIGEST}-2099-01-06"
    manifest = project / "issues" / f"{edition}.yaml"
    assert manifest.is_file()
    checked = cli("check", f"issues/{edition}.yaml")
    assert checked.exit_code == 0, checked.stdout + checked.stderr
    assert "manifest OK" in checked.stdout and "gates: all passed" in checked.stdout
    assert occurrences(db, settings) == {"2099-01-06": ("scheduled", None)}
    assert received(settings, edition) == {}  # not before its time

    clock.at = WEEK1 + timedelta(seconds=10)
    daemon(settings, db, clock).run_once()
    assert occurrences(db, settings)["2099-01-06"][0] == "sent"
    got = received(settings, edition)
    assert {segment: sorted(emails) for segment, emails in got.items()} == {
        "scotland": MEMBERS["scotland"], "wales": MEMBERS["wales"], "london": MEMBERS["london"]}
    assert articles_by_segment(db, settings, edition) == {  # each region's own news, then the national one
        "scotland": {A1.slug, A2.slug}, "wales": {B1.slug, A2.slug}, "london": {B2.slug, A2.slug}}
    assert A_OLD.slug not in manifest.read_text()  # older than the lookback
    assert notices(settings, "sent")  # the comms team hears it went

    # The next week, nothing new in either feed: skipped, with the reason, and told.
    clock.at = WEEK1 + timedelta(days=7) - PREPARE
    daemon(settings, db, clock).run_once()
    assert occurrences(db, settings)["2099-01-13"] == ("skipped", "no new articles since the 6 January 2099 digest")
    assert not (project / "issues" / f"{DIGEST}-2099-01-13.yaml").exists()
    [skipped] = notices(settings, "digest-skipped")
    assert skipped["to"] == COMMS and "no new articles since the 6 January 2099 digest" in skipped["subject"]

    # A week later one new item: only it goes, to every segment.
    write_feed(project / FEED_A, [A3, A1, A2, A_OLD])
    clock.at = WEEK1 + timedelta(days=14) - PREPARE
    daemon(settings, db, clock).run_once()
    assert occurrences(db, settings)["2099-01-20"] == ("scheduled", None)
    week3 = f"{DIGEST}-2099-01-20"
    assert articles_by_segment(db, settings, week3) == {s: {A3.slug} for s in ("scotland", "wales", "london")}
    clock.at = WEEK1 + timedelta(days=14, seconds=10)
    daemon(settings, db, clock).run_once()
    assert sorted(e for emails in received(settings, week3).values() for e in emails) == sorted(
        MEMBERS["scotland"] + MEMBERS["wales"] + MEMBERS["london"])


def test_a_feed_that_fails_is_named_and_the_other_is_still_used(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, project = env
    (project / "issues" / "digests" / "feeds" / "broken.xml").write_text("this is not a feed")
    write_digest(project, feeds=["issues/digests/feeds/gone.xml", "issues/digests/feeds/broken.xml", FEED_B])
    daemon(settings, db, Clock(WEEK1 - PREPARE)).run_once()

    [info] = list_occurrences(db, settings, DIGEST)
    assert info.state == "scheduled"
    assert [p.split(":")[0] for p in info.feed_problems] == [
        "feed issues/digests/feeds/gone.xml", "feed issues/digests/feeds/broken.xml"]
    assert "cannot read feed file" in info.feed_problems[0]
    assert set(info.articles) == {B1.slug, B2.slug}
    manifest = (project / "issues" / f"{DIGEST}-2099-01-06.yaml").read_text()
    assert "# note: feed issues/digests/feeds/gone.xml: cannot read feed file" in manifest
    [told] = notices(settings, "digest-feeds")
    assert "issues/digests/feeds/gone.xml" in told["subject"] and "broken.xml" in told["subject"]

    # Every feed failing: the occurrence fails, named, and nothing is scheduled.
    write_digest(project, feeds=["issues/digests/feeds/gone.xml"], name="only-gone")
    daemon(settings, db, Clock(WEEK1 - PREPARE)).run_once()
    [gone] = list_occurrences(db, settings, "only-gone")
    assert gone.state == "failed" and "no feed could be read: feed issues/digests/feeds/gone.xml" in (gone.reason or "")


def test_review_nothing_before_approval_approve_after_a_restart_sends_once_late_is_skipped(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, project = env
    write_digest(project, feeds=[FEED_A, FEED_B], policy="review", deadline="30m")
    edition = f"{DIGEST}-2099-01-06"
    clock = Clock(WEEK1 - PREPARE)
    first = daemon(settings, db, clock)
    first.run_once()
    assert occurrences(db, settings) == {"2099-01-06": ("awaiting_review", None)}
    [review] = notices(settings, "digest-review")
    assert review["to"] == COMMS
    assert f"https://www.example.org/newsletter/admin/editions/{edition}" in review["text"]
    assert f"newsletter digests approve {DIGEST} 2099-01-06" in review["text"]
    assert f"newsletter digests skip {DIGEST} 2099-01-06" in review["text"]
    assert (project / "build" / edition / "build.json").is_file()  # the build the console previews

    clock.at = WEEK1 + timedelta(seconds=10)  # its time: not approved, nothing goes
    first.run_once()
    assert received(settings, edition) == {} and list_schedule(db, settings, edition=edition) == []

    # The daemon restarts; the approval comes 5 minutes after the send time, inside the deadline.
    approved = approve_occurrence(db, settings, DIGEST, "2099-01-06", "cli:ann", now=WEEK1 + timedelta(minutes=5))
    assert approved.state == "scheduled" and approved.decided_by == "cli:ann"
    clock.at = WEEK1 + timedelta(minutes=6, seconds=10)
    second = daemon(settings, db, clock)
    second.run_once()
    second.run_once()
    daemon(settings, db, clock).run_once()
    counts = Counter(e for emails in received(settings, edition).values() for e in emails)
    assert sorted(counts) == sorted(MEMBERS["scotland"] + MEMBERS["wales"] + MEMBERS["london"])
    assert set(counts.values()) == {1}
    assert occurrences(db, settings)["2099-01-06"][0] == "sent"

    # The next week nobody approves: after the deadline it is skipped and never sent.
    write_feed(project / FEED_A, [Item("week-two-news", utc(2099, 1, 12, 9, 0)), A1, A2])
    clock.at = WEEK1 + timedelta(days=7) - PREPARE
    daemon(settings, db, clock).run_once()
    assert occurrences(db, settings)["2099-01-13"][0] == "awaiting_review"
    clock.at = WEEK1 + timedelta(days=7, minutes=31)
    daemon(settings, db, clock).run_once()
    status, reason = occurrences(db, settings)["2099-01-13"]
    assert status == "skipped" and "not approved by its deadline 2099-01-13 08:30 GMT" in (reason or "")
    with pytest.raises(ScheduleError, match="is skipped; only an occurrence awaiting review can be approved"):
        approve_occurrence(db, settings, DIGEST, "2099-01-13", "cli:ann", now=clock.at)
    assert received(settings, f"{DIGEST}-2099-01-13") == {}
    assert any("not approved by its deadline" in n["subject"] for n in notices(settings, "digest-skipped"))


def test_an_approval_after_the_deadline_is_refused_and_skip_skips(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, project = env
    write_digest(project, feeds=[FEED_A, FEED_B], policy="review", deadline="30m")
    daemon(settings, db, Clock(WEEK1 - PREPARE)).run_once()
    with pytest.raises(ScheduleError, match="was not approved by its deadline"):
        approve_occurrence(db, settings, DIGEST, "2099-01-06", "cli:ann", now=WEEK1 + timedelta(minutes=45))
    assert occurrences(db, settings)["2099-01-06"][0] == "skipped"  # recorded at once, not at the next poll

    write_digest(project, feeds=[FEED_A, FEED_B], policy="review", name="other-weekly")
    daemon(settings, db, Clock(WEEK1 - PREPARE)).run_once()
    skipped = skip_occurrence(db, settings, "other-weekly", "2099-01-06", "cli:bo", "holiday week",
                              now=WEEK1 - timedelta(minutes=30))
    assert skipped.state == "skipped" and skipped.reason == "skipped by cli:bo: holiday week"
    daemon(settings, db, Clock(WEEK1 + timedelta(seconds=10))).run_once()
    assert received(settings, "other-weekly-2099-01-06") == {}


def test_two_daemons_prepare_one_manifest_and_send_once(env, db_url: str, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    settings, db, project = env
    write_digest(project, feeds=[FEED_A, FEED_B])
    caplog.set_level(logging.INFO, logger="newsletter.schedule")
    others = [open_database(db_url) for _ in range(2)]  # each daemon its own engine, as two processes
    clock = Clock(WEEK1 - PREPARE)
    try:
        def run_both() -> None:
            workers = [threading.Thread(target=daemon(settings, d, clock).run_once) for d in others]
            for w in workers:
                w.start()
            for w in workers:
                w.join()

        run_both()
        clock.at = WEEK1 + timedelta(seconds=10)
        run_both()
    finally:
        for d in others:
            d.dispose()
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(DigestOccurrence)) == 1
    assert caplog.text.count(f"wrote issues/{DIGEST}-2099-01-06.yaml") == 1
    assert [p.name for p in (project / "issues").glob(f"{DIGEST}-*.yaml")] == [f"{DIGEST}-2099-01-06.yaml"]
    counts = Counter(e for emails in received(settings, f"{DIGEST}-2099-01-06").values() for e in emails)
    assert sorted(counts) == sorted(MEMBERS["scotland"] + MEMBERS["wales"] + MEMBERS["london"])
    assert set(counts.values()) == {1}, counts


def test_occurrences_missed_while_no_daemon_ran_are_reported_never_sent_late(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, project = env
    write_digest(project, feeds=[FEED_A, FEED_B])
    daemon(settings, db, Clock(WEEK1 - PREPARE)).run_once()
    daemon(settings, db, Clock(WEEK1 + timedelta(seconds=10))).run_once()
    write_feed(project / FEED_A, [A3, A1, A2])
    # Down for two weeks: back at 09:00 on the third Tuesday, past the 30-minute grace.
    summary = daemon(settings, db, Clock(WEEK1 + timedelta(days=14, hours=1))).run_once()
    found = occurrences(db, settings)
    assert found["2099-01-13"][0] == found["2099-01-20"][0] == "missed"
    assert "passed while no scheduler ran; not sent late" in (found["2099-01-20"][1] or "")
    assert sorted(n["subject"].split(": ")[1] for n in notices(settings, "digest-missed")) == [
        f"digest {DIGEST} for 13 January 2099", f"digest {DIGEST} for 20 January 2099"]
    assert not list((project / "issues").glob(f"{DIGEST}-2099-01-2*.yaml"))
    assert summary.outcomes == {}


def test_a_preparation_whose_daemon_died_is_taken_over(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, project = env
    write_digest(project, feeds=[FEED_A, FEED_B])
    with db.session() as session:
        session.add(DigestOccurrence(digest=DIGEST, occurs_on=WEEK1.date(), send_at=WEEK1, state="preparing",
                                     edition=f"{DIGEST}-2099-01-06", articles=[], feed_problems=[],
                                     owner="gone-host:1:dead", heartbeat_at=WEEK1 - timedelta(hours=2)))
    summary = daemon(settings, db, Clock(WEEK1 - timedelta(minutes=50))).run_once()
    assert summary.outcomes == {f"digest {DIGEST} 2099-01-06": "scheduled"}
    assert occurrences(db, settings)["2099-01-06"][0] == "scheduled"


def test_a_definition_with_problems_is_named_at_file_line_col(project: Path, cli) -> None:  # type: ignore[no-untyped-def]
    without_sample_digest(project)
    bad = project / "issues" / "digests" / "bad-one.yaml"
    bad.write_text(
        'title: "Weekly {dat}"\n'
        "subject: Hello\n"
        "preheader: Hi\n"
        "feeds: [ftp://example.org/feed.xml]\n"
        "recurrence: {day_of_week: tus, hour: 8}\n"
        "segments: [scotland, Narnia]\n"
        "approval: {policy: sometimes}\n"
        "colour: blue\n"
    )
    result = cli("digests", "list")
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("issues/digests/bad-one.yaml:")]
    assert [line.split(": error: ")[0] for line in lines] == [
        "issues/digests/bad-one.yaml:1:8", "issues/digests/bad-one.yaml:4:9", "issues/digests/bad-one.yaml:5:27",
        "issues/digests/bad-one.yaml:7:20", "issues/digests/bad-one.yaml:8:1"], result.stderr
    assert "unknown placeholder {dat}" in lines[0]
    assert "ftp://example.org/feed.xml" in lines[1]
    assert 'Invalid weekday name "tus"' in lines[2]
    assert "policy must be auto or review, not 'sometimes'" in lines[3]
    assert "unknown field 'colour'" in lines[4]
    # fixed but for the segment: now the unknown segment is named, at its place in the list
    bad.write_text("title: Weekly\nsubject: Hello\npreheader: Hi\nfeeds: [f.xml]\n"
                   "recurrence: {day_of_week: tue, hour: 8}\nsegments: [scotland, Narnia]\n")
    result = cli("digests", "show", "bad-one")
    assert result.exit_code == 2
    assert "issues/digests/bad-one.yaml:6:22: error: no segment 'Narnia' in subscribers/segments.yaml" in result.stderr
    # one occurrence per date: a recurrence firing twice a day is refused
    bad.write_text("title: Weekly\nsubject: Hello\npreheader: Hi\nfeeds: [f.xml]\n"
                   "recurrence: {day_of_week: tue, hour: '8,12'}\nsegments: [scotland]\n")
    result = cli("digests", "show", "bad-one")
    assert result.exit_code == 2
    assert "bad-one.yaml:5:38: error: recurrence fires more than once a day" in result.stderr


def test_the_cli_runs_approves_and_skips(project: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from newsletter.models import utcnow

    monkeypatch.setenv("NEWSLETTER_NOTIFY_EMAIL", COMMS)
    without_sample_digest(project)
    now = utcnow()
    write_feed(project / FEED_A, [Item("fresh-news-for-scotland", now - timedelta(hours=20), "Scotland"),
                                  Item("fresh-national-news", now - timedelta(hours=30))])
    write_digest(project, feeds=[FEED_A], policy="review", deadline="30m")
    assert cli("subscribers", "import", "subscribers/sample.csv").exit_code == 0
    result = cli("digests", "run", DIGEST, "--now", "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["state"] == "awaiting_review" and info["preview"].endswith(f"/admin/editions/{info['edition']}")
    day = info["date"]
    again = cli("digests", "run", DIGEST, "--now")
    assert again.exit_code == 2 and f"already has its {day} occurrence (awaiting_review)" in again.stderr

    approved = cli("digests", "approve", DIGEST, day)
    assert approved.exit_code == 0, approved.stderr
    assert f"{DIGEST} {day}: scheduled" in approved.stdout
    sends = json.loads(cli("schedule", "list", "--json").stdout)
    assert {s["segment"] for s in sends} == {"scotland", "wales", "london"} and {s["state"] for s in sends} == {"scheduled"}
    shown = json.loads(cli("digests", "show", DIGEST, "--json").stdout)
    assert shown["occurrences"][0]["state"] == "scheduled" and shown["occurrences"][0]["decided_by"].startswith("cli:")

    skipped = cli("digests", "skip", DIGEST, day, "--reason", "sent by hand instead")
    assert skipped.exit_code == 0, skipped.stderr
    assert {s["state"] for s in json.loads(cli("schedule", "list", "--json").stdout)} == {"cancelled"}
    assert cli("digests", "approve", DIGEST, day).exit_code == 2
    assert cli("digests", "run", DIGEST).exit_code == 2  # --now is required


def test_the_sample_digest_lists_its_next_occurrence_and_dry_runs_offline(project: Path, cli,  # type: ignore[no-untyped-def]
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    before = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    listed = cli("digests", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    [sample] = json.loads(listed.stdout)
    assert sample["name"] == "lgit-weekly" and sample["valid"] and sample["approval"]["policy"] == "review"
    assert sample["feeds"] == ["issues/digests/feeds/lgit-weekly.xml"]
    nxt = sample["next_occurrence"]
    assert nxt["send_at_local"].endswith("08:00:00+00:00") or nxt["send_at_local"].endswith("08:00:00+01:00")
    from datetime import date
    assert date.fromisoformat(nxt["date"]).weekday() == 1  # a Tuesday

    result = cli("digests", "run", "lgit-weekly", "--now", "--dry-run")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "dry run, nothing written" in result.stdout and "feeds: 8 item(s) read" in result.stdout
    after = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert after == before  # no article, manifest, build or database written


def test_the_running_daemon_prepares_a_due_occurrence_on_one_of_its_threads(env) -> None:  # type: ignore[no-untyped-def]
    from scheduling_support import wait_until

    settings, db, project = env
    write_digest(project, feeds=[FEED_A, FEED_B])
    scheduler = daemon(settings, db, Clock(WEEK1 - PREPARE))
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, kwargs={"poll_seconds": 0.2, "stop": stop})
    thread.start()
    try:
        wait_until(lambda: occurrences(db, settings).get("2099-01-06", ("",))[0] == "scheduled",
                   what="the occurrence prepared and scheduled")
    finally:
        stop.set()
        thread.join(timeout=60)
    assert [s.segment for s in list_schedule(db, settings, edition=f"{DIGEST}-2099-01-06")] == [
        "london", "scotland", "wales"]


def test_digests_use_the_stored_segments_like_every_other_reader(env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A segment that exists only in the database (made in the console, or by `segments apply`)
    may be named by a digest; the file alone would refuse it."""
    from newsletter.members import apply_segments
    from newsletter.schedule.digests import load_digests

    settings, db, project = env
    extra = tmp_path / "segments.yaml"
    extra.write_text((project / "subscribers" / "segments.yaml").read_text()
                     + "  heads-of-it:\n    rule: {attributes: {role: {contains: head of}}}\n")
    apply_segments(db, extra, actor="admin:test")
    path = write_digest(project, feeds=[FEED_A])
    path.write_text(path.read_text().replace("segments: [Scotland, Cymru, London]", "segments: [heads-of-it, London]"))
    [(_, stored, problems)] = load_digests(settings, db)
    assert stored is not None and problems == []
    [(_, from_file, file_problems)] = load_digests(settings)
    assert from_file is None and any("heads-of-it" in p for p in file_problems)


@pytest.mark.parametrize(("recurrence", "shown"), [
    ({"day_of_week": "tue", "hour": "8", "minute": "0"}, "every Tuesday at 08:00 (Europe/London)"),
    ({"day_of_week": "mon,thu", "hour": "17", "minute": "30"}, "every Monday and Thursday at 17:30 (Europe/London)"),
    ({"day_of_week": "mon-fri", "hour": "7", "minute": "5"}, "every weekday at 07:05 (Europe/London)"),
    ({"hour": "6", "minute": "0"}, "every day at 06:00 (Europe/London)"),
    ({"day": "1st mon", "hour": "8", "minute": "0"}, "day 1st mon, hour 8, minute 0 (Europe/London)"),
])
def test_the_recurrence_is_told_in_words_where_it_is_a_plain_week_or_day(project: Path, recurrence: dict[str, str],
                                                                        shown: str) -> None:
    settings = load_settings(project)
    digest = load_digest(project / "issues" / "digests" / "lgit-weekly.yaml", settings)
    assert replace(digest, recurrence=recurrence).recurrence_text == shown
