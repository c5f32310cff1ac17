"""Articles: `issues/articles/<slug>.md` files with YAML front matter and an optional Markdown body.

    ---
    title: Your GDPR roadmap
    author: Sue Lal
    author_role: Client Director, Protocol Policy Systems
    published: 2026-11-20T09:00:00+00:00     # must carry a zone
    url: https://www.example.org/blog/gdpr-roadmap
    summary: Why councils should start now.
    image: https://www.example.org/img/gdpr.jpg
    image_alt: A road sign pointing to compliance
    tags: [gdpr, data-protection]
    regions: [london, south-east]             # empty = of interest everywhere
    guid: optional feed guid (set by `articles import`)
    ---
    Optional Markdown body.

Everything is stored as plain text: titles and summaries are escaped wherever they are shown.
"""

from __future__ import annotations

import os
import re
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import Field, ValidationError, field_validator

from newsletter.content.field_types import SLUG_RE, text_of
from newsletter.content.yaml_source import parse_yaml
from newsletter.content.yaml_validation import FieldProblem, YamlModel, shown, validate_yaml
from newsletter.errors import InputError, Problem, ProblemsError
from newsletter.regions import REGION_SLUGS, normalise_region

FRONT_MATTER_RE = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*\r?\n?", re.S | re.M)


class Article(YamlModel):
    what: ClassVar[str] = "the front matter"
    unknown_message: ClassVar[str] = "unknown field {name!r}"
    missing_message: ClassVar[str] = "missing field {name!r}"
    not_in_yaml: ClassVar[tuple[str, ...]] = ("slug", "body", "source_path")

    slug: str
    title: str = Field(min_length=1, max_length=300)
    author: str | None = None
    author_role: str | None = None
    published: datetime
    url: str
    summary: str | None = None
    image: str | None = None
    image_alt: str | None = None
    tags: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    guid: str | None = None
    body: str = ""  # Markdown
    source_path: str | None = Field(default=None, exclude=True)

    @field_validator("published")
    @classmethod
    def _zone_aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("must include a time zone offset, e.g. 2026-11-20T09:00:00+00:00")
        return value

    @field_validator("url", "image")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an absolute http(s) URL")
        return value

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        items = _listed(value, "a list of text", "e.g. tags: [gdpr, data-protection]")
        for i, item in enumerate(items):
            if isinstance(item, dict | list | bool) or item is None:
                raise FieldProblem(f"must be a list of text; item {i + 1} is {shown(item)}")
        return tuple(t.lower() for t in (text_of(item) for item in items) if t)

    @field_validator("regions", mode="before")
    @classmethod
    def _regions(cls, value: Any) -> Any:
        slugs = []
        for item in _listed(value, "a list of regions", "e.g. regions: [london, south-east]"):
            slug = normalise_region(text_of(item))
            if slug is None:
                raise ValueError(
                    f"unknown region {item!r}; use one of: {', '.join(REGION_SLUGS)}"
                )
            slugs.append(slug)
        return tuple(slugs)

    @property
    def published_date(self) -> date:
        return self.published.date()


def _listed(value: Any, what: str, example: str) -> list[Any]:
    """Tags and regions: one value, a list of values, or nothing."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list | tuple):
        raise FieldProblem(f"must be {what}, not {shown(value)}", example)
    return list(value)


def split_front_matter(text: str) -> tuple[str | None, str, int]:
    """(front matter YAML or None, body, line number where the YAML starts)."""
    text = text.lstrip("\ufeff")
    match = FRONT_MATTER_RE.match(text)
    if not match:
        return None, text, 1
    return match.group(1), text[match.end() :], 2


def parse_article(text: str, slug: str, filename: str) -> Article:
    """Parse one article file's text. Raises ProblemsError listing every problem with file:line."""
    front, body, start_line = split_front_matter(text)
    if front is None:
        raise ProblemsError(
            [Problem(filename, 1, 1, "no YAML front matter", "start the file with a '---' line")]
        )
    doc = parse_yaml(front, filename, line_offset=start_line - 1)
    problems = list(doc.duplicate_keys)
    if not isinstance(doc.data, dict):
        raise ProblemsError([doc.problem((), "front matter must be a mapping of field: value")])
    if not SLUG_RE.match(slug):
        problems.append(
            Problem(filename, 1, 1, f"file name {slug!r} is not a valid slug",
                    "use lower-case letters, digits and hyphens, e.g. gdpr-roadmap.md")
        )
    for name in Article.not_in_yaml:
        if name in doc.data:
            problems.append(doc.problem((name,), f"unknown field {name!r}",
                                        hint="the slug is the file name and the body follows the front matter",
                                        key=True))
    data = {k: v for k, v in doc.data.items() if k not in Article.not_in_yaml}
    checked = validate_yaml(doc, Article, {**data, "slug": slug, "body": body.strip(), "source_path": filename})
    problems.extend(checked.problems)
    if problems or checked.value is None:
        raise ProblemsError(problems)
    return checked.value


def load_article(path: Path, *, display_name: str | None = None) -> Article:
    name = display_name or str(path)
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise ProblemsError([Problem(name, 1, 1, f"not UTF-8 text ({exc.reason})", "save the file as UTF-8")]) from None
    except OSError as exc:
        raise ProblemsError([Problem(name, 1, 1, f"cannot read the file: {exc.strerror}")]) from None
    return parse_article(text, path.stem, name)


def load_articles(directory: Path, *, base: Path | None = None) -> dict[str, Article]:
    """Every article in a directory by slug, sorted newest first. All problems are collected and
    raised together."""
    articles: dict[str, Article] = {}
    problems: list[Problem] = []
    for path in sorted(directory.glob("*.md")):
        name = str(path.relative_to(base)) if base and path.is_relative_to(base) else str(path)
        try:
            article = load_article(path, display_name=name)
        except ProblemsError as exc:
            problems.extend(exc.problems)
            continue
        articles[article.slug] = article
    if problems:
        raise ProblemsError(problems)
    return dict(sorted(articles.items(), key=lambda kv: (kv[1].published, kv[0]), reverse=True))


def filter_articles(
    articles: dict[str, Article], *, tags: list[str] | None = None, since: date | None = None,
    regions: list[str] | None = None,
) -> list[Article]:
    """Articles matching any of the tags, any of the regions (articles without regions match
    every region), published on or after `since`; newest first."""
    wanted_tags = {t.lower() for t in tags or ()}
    wanted_regions = set(regions or ())
    result = []
    for article in articles.values():
        if wanted_tags and not wanted_tags & set(article.tags):
            continue
        if since and article.published.date() < since:
            continue
        if wanted_regions and article.regions and not wanted_regions & set(article.regions):
            continue
        result.append(article)
    return result


FRONT_MATTER_ORDER = (
    "title", "author", "author_role", "published", "url", "summary", "image", "image_alt",
    "tags", "regions", "guid",
)



def article_text(article: Article) -> str:
    """The file text for an article: YAML front matter (safe_dump, non-ASCII kept) and the body.
    parse_article() of this text gives back an equal article."""

    data: dict[str, Any] = {}
    for name in FRONT_MATTER_ORDER:
        value = getattr(article, name)
        if value is None or value == ():
            continue
        data[name] = list(value) if isinstance(value, tuple) else value
    front = yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100_000)
    body = article.body.strip()
    return f"---\n{front}---\n" + (f"\n{body}\n" if body else "")


def new_article(directory: Path, slug: str, *, title: str, url: str, published: datetime,
                author: str | None = None, author_role: str | None = None, summary: str | None = None,
                image: str | None = None, image_alt: str | None = None, tags: tuple[str, ...] = (),
                regions: tuple[str, ...] = (), base: Path | None = None) -> Path:
    """Write a new article file `<directory>/<slug>.md` (front matter filled in, empty body) and
    return its path. InputError naming the field when a value is not valid, or when the slug is
    taken (an existing file is never replaced)."""
    name = f"{slug}.md"
    shown = (directory / name).relative_to(base) if base and (directory / name).is_relative_to(base) else directory / name
    if not SLUG_RE.match(slug):
        raise InputError(f"{slug!r} is not a valid slug",
                         hint="use lower-case letters, digits and hyphens, e.g. council-cloud-pilot")
    if (directory / name).exists():
        raise InputError(f"{shown} already exists", hint="choose another slug, or edit that file")
    try:
        article = Article(slug=slug, title=title, url=url, published=published, author=author,
                          author_role=author_role, summary=summary, image=image, image_alt=image_alt,
                          tags=tags, regions=regions)
    except ValidationError as exc:
        problems = [f"--{str(err['loc'][0] if err['loc'] else 'article').replace('_', '-')}: "
                    f"{err['msg'].removeprefix('Value error, ')}" for err in exc.errors()]
        raise InputError("; ".join(problems)) from None
    return write_article(article, directory)


def write_article(article: Article, directory: Path) -> Path:
    """Write (or replace) `<directory>/<slug>.md` atomically; returns the path."""

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{article.slug}.md"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{article.slug}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(article_text(article))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
