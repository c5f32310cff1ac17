"""One occurrence of a digest as an ordinary manifest (`issues/<digest>-<date>.yaml`): which of the
new articles each segment gets, and the manifest text that says so (a reviewed file like any
other: `newsletter check` reads it, a person may edit it before approving).

Rules (see README, "Recurring digests"):
- new: published after the previous digest's newest article (the first digest: within
  `lookback_days`), not in a previous digest, and not dated in the future;
- with `per_region`, a segment of a region gets the articles tagged with its region first, then
  national ones (no regions); articles tagged only with other regions go to those regions'
  segments; a segment that is no region gets national articles only. Without it every segment
  gets every new article;
- at most `max_articles` per segment, newest first; a segment left with none is left out of
  this occurrence (and said so).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import yaml

from newsletter.content.articles import Article
from newsletter.content.digest_definition import Digest
from newsletter.content.send_times import zone
from newsletter.regions import normalise_region


@dataclass(frozen=True)
class SegmentPick:
    segment: str
    region: str | None
    regional: tuple[str, ...]  # the region's own articles (the manifest's `add`)
    national: tuple[str, ...]  # national articles it gets


@dataclass(frozen=True)
class Selection:
    new: tuple[Article, ...]  # every new article, newest first
    national: tuple[str, ...]  # the edition's own list (each segment omits what it has no room for)
    picks: tuple[SegmentPick, ...]  # the segments that get at least one article
    notes: tuple[str, ...]  # segments left out, articles for no segment of the digest

    @property
    def included(self) -> list[Article]:
        """The distinct articles in the manifest, newest first."""
        used = set(self.national) | {s for p in self.picks for s in p.regional}
        return [a for a in self.new if a.slug in used]

    @property
    def newest_published(self) -> datetime | None:
        included = self.included
        return max(a.published for a in included) if included else None


def select_new(candidates: Iterable[Article], *, after: datetime, until: datetime,
               exclude: set[str]) -> list[Article]:
    """The candidates published after `after` and at or before `until`, not in `exclude`,
    newest first (each once)."""
    seen: dict[str, Article] = {}
    for article in candidates:
        if article.slug in exclude or article.slug in seen:
            continue
        if after < article.published <= until:
            seen[article.slug] = article
    return sorted(seen.values(), key=lambda a: (a.published, a.slug), reverse=True)


def pick_articles(digest: Digest, new: Sequence[Article]) -> Selection:
    """Which new articles each of the digest's segments gets (see the module docstring)."""
    cap = digest.max_articles
    national = [a.slug for a in new if not a.regions or not digest.per_region]
    regions = {s: normalise_region(s) for s in digest.segments}
    picks: list[SegmentPick] = []
    notes: list[str] = []
    for segment in digest.segments:
        region = regions[segment]
        regional = [a.slug for a in new if digest.per_region and region and region in a.regions][:cap]
        room = cap - len(regional)
        chosen = national[:room]
        if not regional and not chosen:
            notes.append(f"{segment}: no new articles for it; left out this time")
            continue
        picks.append(SegmentPick(segment, region, tuple(regional), tuple(chosen)))
    if digest.per_region:
        covered = {r for r in regions.values() if r}
        for article in new:
            if article.regions and not covered & set(article.regions):
                notes.append(f"{article.slug}: for {', '.join(article.regions)}, which no segment of this digest is")
    edition_list = national[:max((len(p.national) for p in picks), default=0)]
    return Selection(tuple(new), tuple(edition_list), tuple(picks), tuple(notes))


def long_date(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def fill(template: str, selection: Selection, occurs_on: date) -> str:
    """A title, subject or preheader with {date}, {count} and {first_title} filled in."""
    included = selection.included
    return template.format(date=long_date(occurs_on), count=len(included),
                           first_title=included[0].title if included else "")


def manifest_text(digest: Digest, selection: Selection, *, occurs_on: date, send_at: datetime,
                  notes: Sequence[str] = ()) -> str:
    """The manifest of one occurrence: a normal manifest, with a comment saying where it came from."""
    local = send_at.astimezone(zone(digest.zone))
    data: dict[str, object] = {
        "edition": digest.edition_id(occurs_on),
        "title": fill(digest.title, selection, occurs_on),
        "subject": fill(digest.subject, selection, occurs_on),
        "preheader": fill(digest.preheader, selection, occurs_on),
        "template": digest.template,
        "timezone": digest.zone,
        "send_at": f"{local:%Y-%m-%dT%H:%M}",
    }
    if digest.intro:
        data["intro"] = digest.intro
    data["articles"] = list(selection.national)
    segments: dict[str, dict[str, list[str]]] = {}
    for pick in selection.picks:
        overrides: dict[str, list[str]] = {}
        if pick.regional:
            overrides["add"] = list(pick.regional)
        omitted = [s for s in selection.national if s not in pick.national]
        if omitted:
            overrides["omit"] = omitted
        segments[pick.segment] = overrides
    data["segments"] = segments
    header = [
        f"# The {long_date(occurs_on)} occurrence of the digest {digest.name} (issues/digests/{digest.name}.yaml),",
        "# written by newsletter from its feeds. Edit it before approving if you like.",
        *(f"# note: {n}" for n in notes),
    ]
    body = yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100_000, default_flow_style=None)
    return "\n".join(header) + "\n" + body
