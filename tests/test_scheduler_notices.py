"""No silent surprises (issue 13, "Stale sends are silent"): a send whose approved inputs changed
shows as at risk in `schedule list` naming the file, the daemon re-checks 24 h and 1 h before and
emails the comms address once per reason, `scheduler run --once` exits 1 naming the file, and
missed, failed, uncertain, paused and sent sends are told too."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from scheduling_support import EDITION, add_members, install_edition, set_send_at

from newsletter.config import Settings, load_settings
from newsletter.db import Database, open_database
from newsletter.delivery import list_notices, notify_send_paused, retry_notices
from newsletter.errors import ConfigError
from newsletter.schedule import Daemon, Delivered, list_schedule, schedule_edition

COMMS = "comms@example.org"
AT = datetime(2099, 1, 5, 8, 0, tzinfo=UTC)  # the sends' time in these tests


@pytest.fixture
def env(project: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, Database, Path]]:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    monkeypatch.setenv("NEWSLETTER_NOTIFY_EMAIL", COMMS)
    manifest = install_edition(project)
    settings = load_settings()
    db = open_database(db_url)
    add_members(db)
    yield settings, db, manifest
    db.dispose()


def notices(settings: Settings, kind: str | None = None) -> list[dict]:
    """The notices emailed so far (outbox files), oldest first, as {to, subject, text}."""
    folder = settings.resolved_outbox_dir / "_notices"
    found = []
    for path in sorted(folder.glob("*/*.json"), key=lambda p: (int(p.stem), p.parent.name)):
        body = json.loads(path.read_text())
        if kind is None or path.parent.name == kind:
            found.append({"kind": path.parent.name, "to": body["personalizations"][0]["to"][0]["email"],
                          "subject": body["subject"], "text": body["content"][0]["value"]})
    return found


def edit(manifest: Path, slug: str, old: str, new: str) -> None:
    article = manifest.parent / "articles" / f"{slug}.md"
    text = article.read_text()
    assert old in text
    article.write_text(text.replace(old, new))


def daemon_at(settings: Settings, db: Database, when: datetime, deliver=None) -> Daemon:  # type: ignore[no-untyped-def]
    return Daemon(db, settings, deliver or (lambda send: "5 accepted"), grace=timedelta(minutes=30),
                  clock=lambda: when)


def test_schedule_list_shows_a_send_at_risk_naming_the_changed_file_and_what_to_run(env, cli) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    schedule_edition(db, settings, manifest, segments=["scotland", "east"], at="2099-01-05 08:00")
    assert {i.segment: i.at_risk for i in list_schedule(db, settings)} == {"east": None, "scotland": None}
    edit(manifest, "leading-change", "Small wins", "Big wins")

    listed = {i["segment"]: i for i in json.loads(cli("schedule", "list", "--json").stdout)}
    for segment in ("east", "scotland"):  # both variants use the article
        risk = listed[segment]["at_risk"]
        assert listed[segment]["state"] == "scheduled"
        assert risk["reason"] == "issues/articles/leading-change.md changed"
        assert risk["changes"] == ["issues/articles/leading-change.md changed"]
        assert f"newsletter schedule issues/edition.yaml --segment {segment} --at '2099-01-05 08:00'" in risk["fix"]
    table = cli("schedule", "list").stdout
    assert "at risk: issues/articles/leading-change.md changed" in table
    assert "To do: check the change, then run `newsletter schedule issues/edition.yaml --segment east" in table

    # Scheduling again approves the new text: no longer at risk.
    schedule_edition(db, settings, manifest, segments=["east"], at="2099-01-05 08:00")
    risks = {i.segment: i.at_risk for i in list_schedule(db, settings)}
    assert risks["east"] is None and risks["scotland"] is not None
    # Undoing the edit puts scotland back as approved (and east, approved with the edit, at risk).
    edit(manifest, "leading-change", "Big wins", "Small wins")
    risks = {i.segment: i.at_risk for i in list_schedule(db, settings)}
    assert risks["scotland"] is None and risks["east"] is not None
    assert risks["east"].reason == "issues/articles/leading-change.md changed"


def test_scheduler_run_once_with_a_stale_build_exits_1_names_the_file_and_emails_once(env, cli) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    schedule_edition(db, settings, manifest, segments=["scotland"],
                     at=datetime.now(UTC) + timedelta(hours=3))
    edit(manifest, "leading-change", "Small wins", "Big wins")
    set_send_at(db, EDITION, "scotland", datetime.now(UTC) - timedelta(minutes=1))

    result = cli("scheduler", "run", "--once")
    assert result.exit_code == 1
    assert "2099-01:scotland: stale: not sent: issues/articles/leading-change.md changed after scheduling" in result.stderr
    [sent] = notices(settings)
    assert sent["kind"] == "stale" and sent["to"] == COMMS
    assert "issues/articles/leading-change.md changed" in sent["subject"] + sent["text"]
    assert "newsletter schedule issues/edition.yaml --segment scotland" in sent["text"]
    [row] = json.loads(cli("schedule", "list", "--json").stdout)
    assert row["state"] == "stale" and "issues/articles/leading-change.md changed" in row["note"]
    assert not (settings.resolved_outbox_dir / EDITION).exists()  # nothing went to members

    assert cli("scheduler", "run", "--once").exit_code == 0  # nothing more to do, nothing repeated
    assert len(notices(settings)) == 1


def test_the_daemon_rechecks_24_h_and_1_h_before_and_tells_once_per_reason(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    schedule_edition(db, settings, manifest, segments=["scotland"], at=AT, now=AT - timedelta(days=3))
    edit(manifest, "leading-change", "Small wins", "Big wins")

    assert daemon_at(settings, db, AT - timedelta(hours=25)).check_waiting() == []  # no checkpoint yet
    [(send, risk)] = daemon_at(settings, db, AT - timedelta(hours=23, minutes=59)).check_waiting()
    assert send.key == f"{EDITION}:scotland" and risk.reason == "issues/articles/leading-change.md changed"
    [told] = notices(settings, "at-risk")
    assert told["to"] == COMMS and "issues/articles/leading-change.md changed" in told["subject"]
    assert "2099-01-05 08:00 GMT" in told["text"] and "newsletter schedule issues/edition.yaml" in told["text"]
    # Every poll after that: already checked, nothing repeated.
    assert daemon_at(settings, db, AT - timedelta(hours=20)).check_waiting() == []

    # 1 h before: checked again; the same reason is not emailed twice, a new one is.
    assert len(daemon_at(settings, db, AT - timedelta(minutes=59)).check_waiting()) == 1
    assert len(notices(settings, "at-risk")) == 1
    schedule_edition(db, settings, manifest, segments=["scotland"], at=AT, now=AT - timedelta(hours=2))
    edit(manifest, "data-sharing-pilot", "three teams", "four teams")
    [(_, risk)] = daemon_at(settings, db, AT - timedelta(minutes=58)).check_waiting()
    assert risk.reason == "issues/articles/data-sharing-pilot.md changed"
    assert [n["subject"].split(": ", 2)[-1] for n in notices(settings, "at-risk")] == [
        "issues/articles/leading-change.md changed", "issues/articles/data-sharing-pilot.md changed"]


def test_two_daemons_checking_at_once_tell_once(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    schedule_edition(db, settings, manifest, segments=["east", "scotland"], at=AT, now=AT - timedelta(days=3))
    edit(manifest, "leading-change", "Small wins", "Big wins")
    found: list[int] = []
    daemons = [daemon_at(settings, db, AT - timedelta(minutes=30)) for _ in range(3)]
    threads = [threading.Thread(target=lambda d=d: found.append(len(d.check_waiting()))) for d in daemons]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(found) == 2  # each send checked by one daemon
    assert len(notices(settings)) == len(notices(settings, "at-risk")) == 2
    assert sorted(n.about for n in list_notices(db)) == [f"{EDITION}:east", f"{EDITION}:scotland"]


def test_missed_failed_uncertain_and_sent_sends_are_told(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, manifest = env
    schedule_edition(db, settings, manifest, at=AT, now=AT - timedelta(days=1))
    set_send_at(db, EDITION, "east", AT - timedelta(hours=2))  # the daemon was down: missed
    assert daemon_at(settings, db, AT).execute_send(EDITION, "east") == "missed"

    def fail(send):  # type: ignore[no-untyped-def]
        raise RuntimeError("provider down")

    assert daemon_at(settings, db, AT, fail).execute_send(EDITION, "london") == "failed"
    uncertain = daemon_at(settings, db, AT, lambda send: Delivered("2 accepted, 1 uncertain", 2, 0, 1))
    assert uncertain.execute_send(EDITION, "scotland") == "sent"

    told = {n["kind"]: n for n in notices(settings)}
    assert set(told) == {"missed", "failed", "sent", "uncertain"}
    assert all(n["to"] == COMMS for n in told.values())
    assert "2099-01:east" in told["missed"]["subject"] and "misfire grace" in told["missed"]["text"]
    assert "schedule move 2099-01 --segment east" in told["missed"]["text"]
    assert "provider down" in told["failed"]["text"]
    assert told["sent"]["subject"] == "Sent: 2099-01:scotland (2 accepted, 1 uncertain)"
    assert "newsletter sends show 2099-01" in told["uncertain"]["text"]
    # Asking again (a second firing) tells nothing new.
    daemon_at(settings, db, AT).execute_send(EDITION, "scotland")
    assert len(notices(settings)) == 4


def test_a_paused_send_is_told_once_per_reason(env) -> None:  # type: ignore[no-untyped-def]
    settings, db, _ = env
    first = notify_send_paused(db, settings, EDITION, "east", "spam complaints above 0.1 %")
    again = notify_send_paused(db, settings, EDITION, "east", "spam complaints above 0.1 %")
    assert first.new and first.emailed and not again.new
    [told] = notices(settings, "paused")
    assert told["subject"] == "Paused: 2099-01:east (spam complaints above 0.1 %)"


class Hook:
    def __init__(self, answers: list[int]) -> None:
        self.answers, self.bodies = answers, []


@pytest.fixture
def hook() -> Iterator[tuple[str, Hook]]:
    state = Hook([500, 204])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            state.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(state.answers.pop(0) if state.answers else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", state
    finally:
        server.shutdown()
        server.server_close()


def test_the_webhook_gets_json_and_a_failed_post_is_tried_again(env, hook, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    url, state = hook
    monkeypatch.setenv("NEWSLETTER_NOTIFY_WEBHOOK_URL", url)
    settings = load_settings()
    _, db, _ = env
    result = notify_send_paused(db, settings, EDITION, "london", "complaints")
    assert result.emailed and not result.webhook and "HTTP Error 500" in (result.problem or "")
    assert retry_notices(db, settings, now=datetime.now(UTC) + timedelta(minutes=5)) == [result.notice_id]
    assert [b["kind"] for b in state.bodies] == ["paused", "paused"]
    assert state.bodies[-1]["about"] == f"{EDITION}:london" and state.bodies[-1]["segment"] == "london"
    [view] = list_notices(db)
    assert view.webhook_at is not None and view.last_error is None
    assert len(notices(settings)) == 1  # the email was not sent again
    assert retry_notices(db, settings, now=datetime.now(UTC) + timedelta(minutes=10)) == []


@pytest.mark.parametrize("url", ["http://hooks.example.org/x", "ftp://127.0.0.1/x", "https://"])
def test_a_webhook_url_that_is_not_https_or_loopback_is_refused(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                                url: str) -> None:
    monkeypatch.setenv("NEWSLETTER_NOTIFY_WEBHOOK_URL", url)
    with pytest.raises(ConfigError, match="notify_webhook_url must be an https:// URL"):
        load_settings()


def test_without_notify_email_the_notice_is_kept_and_says_why(env, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("NEWSLETTER_NOTIFY_EMAIL")
    settings = load_settings()
    _, db, _ = env
    result = notify_send_paused(db, settings, EDITION, "east", "complaints")
    assert result.new and not result.emailed and result.problem == "no notify_email setting: nobody was emailed"
    assert [n.kind for n in list_notices(db)] == ["paused"]
