"""Helpers for the recurring-digest tests: feed files written from a list of items, a digest
definition, members in three regions, a daemon on a fake clock, and what the outbox received."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

from newsletter.config import Settings
from newsletter.db import Database
from newsletter.models import Subscriber
from newsletter.schedule import Daemon, daemon_for

MEMBERS = {
    "scotland": ["ailsa@example.org", "hamish@example.org"],
    "wales": ["bethan@example.org", "owain@example.org"],
    "london": ["priya@example.org", "tom@example.org"],
    "east": ["nobody-in-the-digest@example.org"],
}
DIGEST = "test-weekly"
COMMS = "comms@example.org"


@dataclass(frozen=True)
class Item:
    slug: str  # the guid, and the title's first words
    published: datetime
    region: str | None = None  # a feed category naming a region

    @property
    def title(self) -> str:
        return self.slug.replace("-", " ").capitalize()


def write_feed(path: Path, items: list[Item], *, title: str = "Test feed") -> Path:
    entries = "".join(
        f"<item><title>{escape(i.title)}</title><link>https://news.example.org/{i.slug}</link>"
        f'<guid isPermaLink="false">{i.slug}</guid><pubDate>{format_datetime(i.published)}</pubDate>'
        + (f"<category>{escape(i.region)}</category>" if i.region else "")
        + f"<description>About {escape(i.title.lower())}.</description></item>"
        for i in items
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{title}</title>'
                    f"<link>https://news.example.org/</link><description>Test.</description>{entries}</channel></rss>")
    return path


def write_digest(project: Path, *, feeds: list[str], policy: str = "auto", deadline: str = "30m",
                 min_new: int = 1, max_articles: int = 3, name: str = DIGEST,
                 recurrence: str = "{day_of_week: tue, hour: 8, minute: 0}") -> Path:
    approval = f"{{policy: review, deadline: {deadline}}}" if policy == "review" else "auto"
    path = project / "issues" / "digests" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        'title: "Test weekly: {date}"\n'
        'subject: "This week: {first_title}"\n'
        'preheader: "{count} new stories"\n'
        f"feeds: [{', '.join(feeds)}]\n"
        f"recurrence: {recurrence}\n"
        "timezone: Europe/London\n"
        "prepare_before: 1h\n"
        "segments: [Scotland, Cymru, London]\n"  # names and aliases, as people write them
        f"rules: {{max_articles: {max_articles}, per_region: true, min_new: {min_new}, lookback_days: 7}}\n"
        f"approval: {approval}\n"
    )
    return path


def without_sample_digest(project: Path) -> None:
    for path in (project / "issues" / "digests").glob("*.yaml"):
        path.unlink()


def add_members(db: Database) -> None:
    with db.session() as session:
        for region, emails in MEMBERS.items():
            for email in emails:
                session.add(Subscriber(email=email, email_key=email, first_name=email.split("@")[0].title(),
                                       region=region, status="active"))


class Clock:
    """A fake clock the daemons read; tests move it."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def daemon(settings: Settings, db: Database, clock: Clock) -> Daemon:
    """A scheduler daemon (real delivery, to the outbox) on the fake clock."""
    return daemon_for(settings, db, clock=clock)


def received(settings: Settings, edition: str) -> dict[str, list[str]]:
    """Per segment, every address the outbox got the edition for (repeats kept)."""
    found: dict[str, list[str]] = {}
    folder = settings.resolved_outbox_dir / edition
    for path in sorted(folder.glob("*/*.json")):
        body = json.loads(path.read_text())
        found.setdefault(path.parent.name, []).extend(
            to["email"] for p in body["personalizations"] for to in p["to"])
    return found


def notices(settings: Settings, kind: str | None = None) -> list[dict[str, str]]:
    """The notices emailed (outbox files), oldest first."""
    folder = settings.resolved_outbox_dir / "_notices"
    found = []
    for path in sorted(folder.glob("*/*.json"), key=lambda p: int(p.stem)):
        body = json.loads(path.read_text())
        if kind is None or path.parent.name == kind:
            found.append({"kind": path.parent.name, "to": body["personalizations"][0]["to"][0]["email"],
                          "subject": body["subject"], "text": body["content"][0]["value"]})
    return found


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def all_files(folder: Path) -> Iterator[Path]:
    return (p for p in folder.rglob("*") if p.is_file())
