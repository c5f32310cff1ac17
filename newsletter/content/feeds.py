"""Import RSS 2.0 / Atom feeds into `issues/articles/<slug>.md` files.

    outcomes = import_feed("https://example.org/feed.xml", Path("issues/articles"))
    for outcome in outcomes:
        print(outcome.line())       # "imported  gdpr-roadmap  new item"

Each item is imported (new file), updated (its file changed) or skipped (with the reason: unchanged,
duplicate link, rejected link, no title ...). Items are matched to existing files by guid, then by
canonical link, so importing the same feed twice changes nothing. Feed text goes through
newsletter.content.sanitize: titles and summaries become plain text, bodies allow-listed Markdown, every
URL absolute http(s). Problems that do not stop an item (a bad date, a removed link) are `notes`.
"""

from __future__ import annotations

import email.utils
import hashlib
import re
import time
import unicodedata
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from xml.sax import SAXException, SAXParseException

import feedparser

from newsletter import __version__
from newsletter.content.articles import Article, article_text, load_articles, write_article
from newsletter.content.sanitize import (
    check_url,
    clean_html,
    fragment_to_text,
    html_to_markdown,
    plain_text,
    shorten,
    summarise,
)
from newsletter.errors import ArticleError
from newsletter.regions import normalise_region

Outcome = Literal["imported", "updated", "skipped"]
MAX_FEED_BYTES = 10_000_000
MAX_TITLE = 300
COMPARED_FIELDS = ("title", "author", "published", "url", "summary", "image", "image_alt", "tags",
                   "regions", "body")


@dataclass(frozen=True)
class ImportOutcome:
    """What happened to one feed item."""

    outcome: Outcome
    reason: str
    title: str
    guid: str | None = None
    slug: str | None = None
    path: Path | None = None
    notes: tuple[str, ...] = ()  # reported problems that did not stop the item

    def line(self) -> str:
        return f"{self.outcome:<8}  {self.slug or '-'}  {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "reason": self.reason, "title": self.title,
                "guid": self.guid, "slug": self.slug, "path": str(self.path) if self.path else None,
                "notes": list(self.notes)}


@dataclass(frozen=True)
class _Candidate:
    article: Article
    notes: tuple[str, ...]
    date_problem: str | None  # set when the item's date was missing or unparsable


class FeedOutcomes(list[ImportOutcome]):
    """The outcome per item, plus `warnings` about the feed as a whole (e.g. broken XML)."""

    def __init__(self, outcomes: list[ImportOutcome], warnings: tuple[str, ...] = ()) -> None:
        super().__init__(outcomes)
        self.warnings = warnings


class _Skip(Exception):
    def __init__(self, reason: str, title: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.title = title


def read_feed(source: str, *, timeout: float = 30.0) -> tuple[bytes, str | None]:
    """The feed's bytes and, when fetched over http(s), its final URL. Raises ArticleError."""
    if re.match(r"^https?://", source, re.I):
        request = urllib.request.Request(
            source, headers={"User-Agent": f"newsletter/{__version__} (+feed import)",
                             "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http(s) only)
                data = response.read(MAX_FEED_BYTES + 1)
                final_url = response.geturl()
        except urllib.error.HTTPError as exc:
            raise ArticleError(f"could not fetch feed {source}: HTTP {exc.code} {exc.reason}",
                               hint="check the URL; nothing was imported") from None
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ArticleError(f"could not fetch feed {source}: {reason}",
                               hint="check the URL and your network; nothing was imported") from None
        if len(data) > MAX_FEED_BYTES:
            raise ArticleError(f"feed {source} is larger than {MAX_FEED_BYTES} bytes")
        return data, final_url
    if re.match(r"^[a-z][a-z0-9+.\-]+://", source, re.I):
        raise ArticleError(f"cannot read feed {source}: only http(s) URLs and file paths are supported")
    path = Path(source)
    try:
        return path.read_bytes(), None
    except OSError as exc:
        raise ArticleError(f"cannot read feed file {source}: {exc.strerror or exc}",
                           hint="give the path of an RSS or Atom file, or an http(s) URL") from None


def parse_feed(data: bytes, source: str) -> Any:
    """feedparser's result, or ArticleError when the bytes are not an RSS/Atom feed at all, or are
    broken XML from which no item could be read."""
    parsed = feedparser.parse(data, sanitize_html=False, resolve_relative_uris=False)
    if not parsed.get("version") and not parsed.entries:
        detail = parsed.get("bozo_exception") or "no RSS or Atom elements found"
        raise ArticleError(f"{source}: not a readable RSS or Atom feed ({detail})",
                           hint="check the file is RSS 2.0 or Atom XML")
    problem = xml_problem(parsed, data)
    if problem and not parsed.entries and isinstance(parsed.get("bozo_exception"), SAXException):
        raise ArticleError(f"{source}: {problem}; no items could be read",
                           hint="the feed may be cut short: fetch or save it again; nothing was imported")
    return parsed


def xml_problem(parsed: Any, data: bytes) -> str | None:
    """feedparser's `bozo` report as a sentence naming the XML error and where it is, or None."""
    exc = parsed.get("bozo_exception") if parsed.get("bozo") else None
    if exc is None:
        return None
    if isinstance(exc, SAXParseException):
        # feedparser puts its own XML declaration in front; without one in the file that adds a line
        line = exc.getLineNumber() - (0 if re.match(rb"(\xef\xbb\xbf)?<\?xml", data) else 1)
        column = exc.getColumnNumber() + 1  # expat counts columns from 0
        return f"not well-formed XML at line {max(line, 1)}, column {column}: {exc.getMessage()}"
    if isinstance(exc, SAXException):
        return f"not well-formed XML: {exc.getMessage()}"
    return f"feed problem: {exc}"


def slugify(text: str, limit: int = 60) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > limit:
        slug = slug[:limit]
        slug = slug[: slug.rfind("-")] if "-" in slug[limit // 2 :] else slug
    return slug.strip("-")


def canonical_link(url: str) -> str:
    """A link's identity for de-duplication: scheme/host case, default ports, fragments, trailing
    slashes and utm_* tracking parameters do not make a different article."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.port and parts.port not in (80, 443):
        host += f":{parts.port}"
    path = parts.path.rstrip("/") or "/"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if not k.lower().startswith("utm_")])
    return urlunsplit((parts.scheme.lower(), host, path, query, ""))


def _raw(mapping: Any, key: str) -> Any:
    """A feedparser value without its deprecated updated/published key aliasing."""
    return dict.get(mapping, key)


def _text(value: str | None, detail: Any) -> str:
    kind = (detail or {}).get("type", "text/plain") if detail is not None else "text/html"
    return fragment_to_text(value) if "html" in kind else plain_text(value)


def _parse_date(raw: str | None, parsed: time.struct_time | None) -> datetime | None:
    if raw:
        try:
            value = email.utils.parsedate_to_datetime(raw)
            if value.tzinfo is not None:
                return value
        except (TypeError, ValueError, IndexError):
            pass
        try:
            value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
            if value.tzinfo is not None:
                return value
        except ValueError:
            pass
    if parsed:
        return datetime(*parsed[:6], tzinfo=UTC)
    return None


def _image(entry: Any, base: str | None, content_images: tuple[tuple[str, str], ...],
           notes: list[str]) -> tuple[str | None, str | None]:
    candidates: list[tuple[str, str]] = []
    for media in (*entry.get("media_content", ()), *entry.get("media_thumbnail", ())):
        if media.get("url") and (media.get("medium", "image") == "image" or "image" in media.get("type", "image")):
            candidates.append((media["url"], ""))
    for enclosure in entry.get("enclosures", ()):
        if enclosure.get("href") and str(enclosure.get("type", "")).startswith("image/"):
            candidates.append((enclosure["href"], ""))
    for src, alt in candidates:
        check = check_url(src, base, image=True)
        if check.url:
            return check.url, alt or None
        notes.append(f"image removed: {check.reason}")
    if content_images:
        return content_images[0][0], content_images[0][1] or None
    return None, None


def _candidate(entry: Any, base: str | None, fallback: datetime) -> _Candidate:
    notes: list[str] = []
    title = _text(entry.get("title"), entry.get("title_detail"))
    if len(title) > MAX_TITLE:
        title = title[: MAX_TITLE - 1].rstrip() + "…"
        notes.append(f"title shortened to {MAX_TITLE} characters")
    if not title:
        raise _Skip("no title", "")
    raw_link = entry.get("link")
    if not raw_link:
        raise _Skip("no link: an article needs a 'continue reading' URL", title)
    link = check_url(raw_link, base)
    if not link.url:
        raise _Skip(f"link rejected: {link.reason}", title)

    content = ""
    if entry.get("content"):
        content = entry.content[0].get("value", "")
    summary_html = entry.get("summary") or ""
    if not content and summary_html and "html" in (entry.get("summary_detail") or {}).get("type", ""):
        content = summary_html
    body, rejected = html_to_markdown(content, base) if content else ("", ())
    notes.extend(rejected)
    summary = summarise(_text(summary_html, entry.get("summary_detail")))
    if not summary:
        summary = summarise(fragment_to_text(content))
        notes.append("no summary in the feed; " + ("made one from the content" if summary else "left empty"))

    published = _parse_date(_raw(entry, "published") or _raw(entry, "updated"),
                            _raw(entry, "published_parsed") or _raw(entry, "updated_parsed"))
    date_problem = None
    if published is None:
        raw = _raw(entry, "published") or _raw(entry, "updated")
        date_problem = f"unparsable date {shorten(str(raw), 40)!r}" if raw else "no date"
        published = fallback

    tags: list[str] = []
    regions: list[str] = []
    for tag in entry.get("tags", ()):
        term = plain_text(tag.get("label") or tag.get("term") or "")
        region = normalise_region(term)
        if region and region not in regions:
            regions.append(region)
        elif not region and slugify(term) and slugify(term) not in tags:
            tags.append(slugify(term))

    images = clean_html(content, base).images if content else ()
    image, image_alt = _image(entry, base, images, notes)
    author_detail = entry.get("author_detail") or {}
    author = plain_text(author_detail.get("name") or entry.get("author")) or None
    guid = plain_text(entry.get("id")) or None
    article = Article(
        slug="pending", title=title, author=author, published=published, url=link.url,
        summary=summary or None, image=image, image_alt=(image_alt or title) if image else None,
        tags=tuple(tags), regions=tuple(regions), guid=guid, body=body,
    )
    return _Candidate(article, tuple(notes), date_problem)


def _feed_base(parsed: Any, feed_url: str | None) -> str | None:
    link = parsed.feed.get("link")
    if link:
        check = check_url(link, feed_url)
        if check.url and not check.url.startswith("mailto:"):
            return check.url
    return feed_url if feed_url and re.match(r"^https?://", feed_url) else None


def _feed_date(parsed: Any, now: datetime) -> tuple[datetime, str]:
    feed = parsed.feed
    when = _parse_date(_raw(feed, "updated") or _raw(feed, "published"),
                       _raw(feed, "updated_parsed") or _raw(feed, "published_parsed"))
    return (when, "the feed's date") if when else (now, "the import time")


def _unique_slug(title: str, guid: str | None, link: str, taken: set[str]) -> str:
    base = slugify(title) or "item-" + hashlib.sha1((guid or link).encode()).hexdigest()[:8]
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    return slug


def import_feed_data(data: bytes, directory: Path, *, source: str = "feed",
                     feed_url: str | None = None, now: datetime | None = None) -> FeedOutcomes:
    """Import already-read feed bytes into `directory` (see import_feed)."""
    parsed = parse_feed(data, source)
    problem = xml_problem(parsed, data)
    warnings = (f"{source}: {problem}; items after it may be missing or incomplete",) if problem else ()
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    base = _feed_base(parsed, feed_url)
    fallback, fallback_label = _feed_date(parsed, now)
    existing = load_articles(directory) if directory.is_dir() else {}
    by_guid = {a.guid: a for a in existing.values() if a.guid}
    by_link = {canonical_link(a.url): a for a in existing.values()}
    taken = set(existing) | {p.stem for p in directory.glob("*.md")} if directory.is_dir() else set()
    seen_guids: set[str] = set()
    outcomes: list[ImportOutcome] = []
    items: list[tuple[str | None, _Candidate | ImportOutcome]] = []  # in feed order
    for entry in parsed.entries:
        guid = plain_text(entry.get("id")) or None
        try:
            items.append((guid, _candidate(entry, base, fallback)))
        except _Skip as skip:
            items.append((guid, ImportOutcome("skipped", skip.reason, skip.title, guid)))
    if (problem and isinstance(parsed.get("bozo_exception"), SAXException)
            and all(isinstance(item, ImportOutcome) for _, item in items)):
        reasons = "; ".join(sorted({item.reason for _, item in items if isinstance(item, ImportOutcome)}))
        raise ArticleError(f"{source}: {problem}; no complete item could be read ({reasons})",
                           hint="the feed may be cut short: fetch or save it again; nothing was imported")
    for guid, candidate in items:
        if isinstance(candidate, ImportOutcome):
            outcomes.append(candidate)
            continue
        new = candidate.article
        key = canonical_link(new.url)
        if guid and guid in seen_guids:
            outcomes.append(ImportOutcome("skipped", f"duplicate guid {shorten(guid)} earlier in this feed",
                                          new.title, guid, notes=candidate.notes))
            continue
        if guid:
            seen_guids.add(guid)
        current = by_guid.get(guid) if guid else by_link.get(key)
        if current is None and key in by_link:
            other = by_link[key]
            reason = f"duplicate link {shorten(new.url)}: already imported as {other.slug}"
            if other.guid:
                reason += f" under guid {shorten(other.guid, 40)}"
            outcomes.append(ImportOutcome("skipped", reason, new.title, guid, other.slug,
                                          notes=candidate.notes))
            continue
        if current is not None:
            keep: dict[str, Any] = {"slug": current.slug, "author_role": current.author_role}
            if not new.regions:
                keep["regions"] = current.regions
            notes = candidate.notes
            if candidate.date_problem:
                keep["published"] = current.published
                notes += (f"{candidate.date_problem}; kept the stored date {current.published.isoformat()}",)
            merged = new.model_copy(update=keep)
            changed = [f for f in COMPARED_FIELDS if getattr(merged, f) != getattr(current, f)]
            if not changed and article_text(merged) == article_text(current):
                outcomes.append(ImportOutcome("skipped", "unchanged since the last import", new.title,
                                              guid, current.slug, notes=notes))
                continue
            path = write_article(merged, directory)
            outcome: Outcome = "updated"
            reason = "changed: " + ", ".join(changed or ["formatting"])
        else:
            notes = candidate.notes
            if candidate.date_problem:
                notes += (f"{candidate.date_problem}; used {fallback.isoformat()} ({fallback_label})",)
            merged = new.model_copy(update={"slug": _unique_slug(new.title, guid, new.url, taken)})
            path = write_article(merged, directory)
            outcome, reason = "imported", "new item"
        taken.add(merged.slug)
        if merged.guid:
            by_guid[merged.guid] = merged
        by_link[key] = merged
        outcomes.append(ImportOutcome(outcome, reason, merged.title, guid, merged.slug, path, notes))
    return FeedOutcomes(outcomes, warnings)


def import_feed(source: str, directory: Path, *, timeout: float = 30.0,
                now: datetime | None = None) -> FeedOutcomes:
    """Import an RSS 2.0 or Atom feed (file path or http(s) URL) into article files in `directory`.

    Returns a list of outcomes whose `warnings` name feed-wide problems (XML that is not
    well-formed, with its line). Raises ArticleError when the feed cannot be read, is not a feed
    at all, or is broken XML with no readable item, and ProblemsError when an existing article
    file in `directory` is invalid (nothing is written then)."""
    data, final_url = read_feed(source, timeout=timeout)
    return import_feed_data(data, directory, source=source, feed_url=final_url, now=now)
