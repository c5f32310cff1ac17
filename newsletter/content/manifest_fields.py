"""Field-level validation helpers for issue manifests: times and zones, slugs with suggestions,
segment names from subscribers/segments.yaml, templates.

Every helper returns values plus problems; nothing here raises on bad input, so `check` can list
every problem at once.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from newsletter.config import Settings
from newsletter.content.articles import Article, filter_articles
from newsletter.content.send_times import SendWindow, localise
from newsletter.content.yaml_source import PathKey, YamlDocument
from newsletter.errors import Problem, ScheduleError
from newsletter.regions import REGION_SLUGS, normalise_region

# A template is a folder templates/<name>/ with this entry file. The one definition: the
# manifest check looks for it and the renderer (newsletter.render) loads it.
TEMPLATE_ENTRY = "email.mjml.j2"
ONE_LINE_FIELDS = ("edition", "title", "subject", "preheader")
QUERY_FIELDS = ("tags", "regions", "since", "max")
EDITION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def suggest(word: str, choices: list[str] | tuple[str, ...] | set[str], what: str = "") -> str | None:
    """'did you mean X?' for the closest choice, or None."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not matches:
        return None
    return f"did you mean {matches[0]!r}?" + (f" ({what})" if what else "")


@lru_cache(maxsize=1)
def _zone_names() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


def load_zone(name: Any) -> tuple[ZoneInfo | None, str | None, str | None]:
    """(zone, error message, hint)."""
    if not isinstance(name, str) or not name.strip():
        return None, f"time zone must be an IANA name such as Europe/London, not {name!r}", None
    try:
        return ZoneInfo(name.strip()), None, None
    except (ZoneInfoNotFoundError, ValueError):
        hint = suggest(name.strip(), _zone_names()) or "use an IANA zone name such as Europe/London"
        return None, f"unknown time zone {name!r}", hint


@dataclass(frozen=True)
class TimeResult:
    value: datetime | None
    message: str | None = None
    hint: str | None = None


def parse_send_at(value: Any, zone: ZoneInfo) -> TimeResult:
    """A manifest `send_at`: a zone-aware ISO date-time (converted to `zone`), or a local date-time
    interpreted in `zone`."""
    example = "e.g. 2026-12-03T08:00 (local time) or 2026-12-03T08:00:00+00:00"
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        return TimeResult(None, f"send_at {value.isoformat()} has no time of day", f"add a time, {example}")
    elif isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return TimeResult(None, f"bad send_at time {value!r}", f"use ISO 8601, {example}")
    else:
        return TimeResult(None, f"bad send_at time {value!r}", f"use ISO 8601, {example}")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        try:  # the same gap / fall-back rules as `schedule --at`
            return TimeResult(localise(parsed, zone.key))
        except ScheduleError as exc:
            return TimeResult(None, exc.message, exc.hint)
    return TimeResult(parsed.astimezone(zone))


def template_problem(project_dir: Path, name: Any) -> tuple[str, str] | None:
    """(message, hint) when `name` is not a usable templates/<name>/ directory."""
    templates = project_dir / "templates"
    if not isinstance(name, str) or not name.strip() or "/" in name or "\\" in name or name.startswith("."):
        return f"template must be a directory name under {templates}, not {name!r}", "e.g. template: digest"
    if (templates / name / TEMPLATE_ENTRY).is_file():
        return None
    available = sorted(
        p.name for p in templates.glob("*") if p.is_dir() and (p / TEMPLATE_ENTRY).is_file()
    ) if templates.is_dir() else []
    if (templates / name).is_dir():
        return (f"template {name!r} has no {TEMPLATE_ENTRY}",
                f"add templates/{name}/{TEMPLATE_ENTRY} (the Jinja2 MJML entry file)")
    hint = suggest(name, available) or (
        f"available: {', '.join(available)}" if available else f"create templates/{name}/{TEMPLATE_ENTRY}"
    )
    return f"unknown template {name!r}", hint


class Analysis:
    """Collects problems against positions in the manifest document."""

    def __init__(self, doc: YamlDocument, settings: Settings, articles: dict[str, Article]) -> None:
        self.doc = doc
        self.settings = settings
        self.articles = articles
        self.broken: set[str] = set()  # slugs whose files exist but failed to load
        self.problems: list[Problem] = list(doc.duplicate_keys)

    def error(self, at: PathKey, message: str, hint: str | None = None, *, key: bool = False) -> None:
        self.problems.append(self.doc.problem(at, message, hint=hint, key=key))

    def warn(self, at: PathKey, message: str, hint: str | None = None, *, key: bool = False) -> None:
        self.problems.append(self.doc.problem(at, message, hint=hint, key=key, severity="warning"))

    def fields(self, at: PathKey, mapping: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
        for name in mapping:
            if name not in allowed:
                self.error((*at, name), f"unknown field {name!r} in {what}",
                           suggest(str(name), allowed) or f"allowed: {', '.join(allowed)}", key=True)

    def window(self, at: PathKey, value: Any, send_at: datetime | None, zone: str) -> str | None:
        """A send window such as "07:00-20:00" (normalised), checked against the send time."""
        if value is None:
            return None
        try:
            window = SendWindow.parse(str(value))
        except ScheduleError as exc:
            self.error(at, exc.message, exc.hint)
            return None
        if send_at is not None and not window.contains(send_at, zone):
            self.error(at, f"send time {send_at:%Y-%m-%d %H:%M} is outside the send window {window}",
                       "move send_at inside the window, or widen the window")
        return str(window)

    def text(self, at: PathKey, value: Any, name: str, *, required: bool = False) -> str | None:
        if value is None:
            if required:
                self.error(at, f"{name} must not be empty")
            return None
        if isinstance(value, (dict, list)):
            self.error(at, f"{name} must be text, not a {'mapping' if isinstance(value, dict) else 'list'}")
            return None
        text = str(value).strip()
        if required and not text:
            self.error(at, f"{name} must not be empty")
        if name in ONE_LINE_FIELDS and ("\n" in text or "\r" in text):
            # these end up in mail headers (or the inbox line), where a line break is an injection
            self.error(at, f"{name} must be a single line", "remove the line break")
            return " ".join(text.split())
        return text

    def slug(self, at: PathKey, value: Any) -> Article | None:
        if not isinstance(value, str):
            self.error(at, f"article slug must be text, not {value!r}")
            return None
        article = self.articles.get(value.strip())
        if article is None and value.strip() in self.broken:
            self.error(at, f"article {value!r} could not be loaded", "fix the problems reported in its file")
        elif article is None:
            hint = suggest(value.strip(), tuple(self.articles), "") or "run `newsletter articles list` to see the slugs"
            self.error(at, f"unknown article {value!r}", hint)
        return article

    def slug_list(self, at: PathKey, value: Any, name: str) -> list[tuple[PathKey, Article]]:
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
            items = [(at, value[0])]
        elif isinstance(value, list):
            items = [((*at, i), v) for i, v in enumerate(value)]
        else:
            self.error(at, f"{name} must be a list of article slugs")
            return []
        found = []
        seen: dict[str, PathKey] = {}
        for where, item in items:
            article = self.slug(where, item)
            if article is None:
                continue
            if article.slug in seen:
                line = self.doc.where(seen[article.slug])[0]
                self.error(where, f"duplicate article {article.slug!r} in {name} (already on line {line})",
                           "list each article once")
                continue
            seen[article.slug] = where
            found.append((where, article))
        return found

    def send_at(self, at: PathKey, value: Any, zone: ZoneInfo | None) -> datetime | None:
        if value is None:
            return None
        # With an unknown zone (reported already) still check the value's syntax, in UTC.
        result = parse_send_at(value, zone or ZoneInfo("UTC"))
        if result.message:
            self.error(at, result.message, result.hint)
        return result.value if zone is not None else None


def run_query(a: Analysis, at: PathKey, q: Any, *, exclude: set[str]) -> list[Article]:
    """Query results newest first, without `exclude`, at most `max` of them."""
    if not isinstance(q, dict):
        a.error(at, "query must be a mapping with tags / regions / since / max")
        return []
    a.fields(at, q, QUERY_FIELDS, "query")
    tags = q.get("tags") or []
    tags = [tags] if isinstance(tags, str) else tags
    if not isinstance(tags, list):
        a.error((*at, "tags"), "tags must be a list")
        tags = []
    regions_in = q.get("regions") or []
    regions_in = [regions_in] if isinstance(regions_in, str) else regions_in
    regions: list[str] = []
    for i, r in enumerate(regions_in if isinstance(regions_in, list) else []):
        slug = normalise_region(str(r))
        if slug is None:
            a.error((*at, "regions", i), f"unknown region {r!r}",
                    suggest(str(r), REGION_SLUGS) or f"use one of: {', '.join(REGION_SLUGS)}")
        else:
            regions.append(slug)
    since = q.get("since")
    if isinstance(since, datetime):
        since = since.date()
    elif isinstance(since, str):
        try:
            since = date.fromisoformat(since.strip())
        except ValueError:
            a.error((*at, "since"), f"bad date {since!r}", "use YYYY-MM-DD, e.g. 2026-11-01")
            since = None
    elif since is not None and not isinstance(since, date):
        a.error((*at, "since"), f"bad date {since!r}", "use YYYY-MM-DD, e.g. 2026-11-01")
        since = None
    limit = q.get("max")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        a.error((*at, "max"), f"max must be a whole number of articles (1 or more), not {limit!r}")
        limit = None
    found = filter_articles(a.articles, tags=[str(t) for t in tags], since=since, regions=regions)
    found = [art for art in found if art.slug not in exclude]
    if not found:
        a.warn(at, "this query adds no articles", "loosen the tags, regions or since date")
    return found[:limit] if limit else found


def segment_region(a: Analysis, at: PathKey, name: str, overrides: dict[str, Any]) -> str | None:
    if "region" not in overrides:
        return normalise_region(name)
    value = overrides["region"]
    if value is None:
        return None
    slug = normalise_region(str(value))
    if slug is None:
        a.error((*at, "region"), f"unknown region {value!r}",
                suggest(str(value), REGION_SLUGS) or f"use one of: {', '.join(REGION_SLUGS)} (or null)")
    return slug
