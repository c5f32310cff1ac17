"""Issue manifests: `issues/<edition>.yaml` → an Edition with one VariantSpec per segment.

Articles come from the `articles/` directory beside the manifest (`issues/articles/*.md`).

Resolution rules (per segment, in this order):
1. Edition selection: the explicit `articles.slugs` in the order written, then the `articles.query`
   results newest first (at most `max` of them, not counting articles already chosen). An article
   appears once; the `featured` article is never repeated in the list.
2. The segment's `omit` slugs are removed (omitting the featured article leaves the segment without
   one); its `add` slugs are appended in the order written.
3. Regional preference (stable, so the editor's order holds within each group): articles tagged with
   the segment's region first, then articles with no regions (of interest everywhere), then
   articles tagged only with other regions.
The segment's region is `region:` when given (null = not regional), else the segment name when it
is a region name or alias (see newsletter.regions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from newsletter.config import Settings
from newsletter.content.articles import Article, load_article
from newsletter.content.manifest_fields import (
    EDITION_ID_RE,
    Analysis,
    load_zone,
    run_query,
    segment_region,
    suggest,
    template_problem,
)
from newsletter.content.yaml_source import PathKey, load_yaml
from newsletter.errors import ManifestError, Problem, ProblemsError

DEFAULT_LOCALE = "en-GB"
LOCALE_RE = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")  # en-GB, cy: the language of a template's fixed text


@dataclass(frozen=True)
class VariantSpec:
    segment: str
    subject: str
    preheader: str
    intro_markdown: str
    featured: Article | None
    articles: tuple[Article, ...]
    region: str | None
    send_at: datetime | None
    zone: str
    window: str | None = None    # local hours it may go out in, e.g. "07:00-20:00"
    locales: tuple[str, ...] = (DEFAULT_LOCALE,)  # the template's fixed text: one language, or two


@dataclass(frozen=True)
class KnownSegments:
    """The segments a manifest may name (from the member store's segments.yaml), given by the
    caller: content does not read the member store. `names` None means "nothing to check against"."""

    names: tuple[str, ...] | None
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class Edition:
    id: str
    title: str
    template: str
    manifest_path: Path
    variants: tuple[VariantSpec, ...]


TOP_FIELDS = ("edition", "title", "subject", "preheader", "template", "intro", "featured",
              "articles", "send_at", "window", "timezone", "locale", "bilingual", "segments")
REQUIRED = ("edition", "title", "subject", "preheader", "segments")
ARTICLES_FIELDS = ("slugs", "query")
SEGMENT_FIELDS = ("subject", "preheader", "intro", "add", "omit", "send_at", "window", "region", "locale",
                  "bilingual")
DEFAULT_TEMPLATE = "digest"


def load_manifest(path: Path, settings: Settings, segments: KnownSegments | None = None) -> Edition:
    """The resolved edition; raises ManifestError listing every problem (file:line:col)."""
    edition, problems = analyse_manifest(path, settings, segments)
    if edition is None or any(p.severity == "error" for p in problems):
        raise ManifestError(problems, f"{path}: {_count(problems)} in the manifest")
    return edition


def check_manifest(path: Path, settings: Settings, segments: KnownSegments | None = None) -> list[Problem]:
    """Every problem in the manifest (errors and warnings), [] when clean."""
    return analyse_manifest(path, settings, segments)[1]


def _count(problems: list[Problem]) -> str:
    n = sum(p.severity == "error" for p in problems)
    return f"{n} problem{'s' if n != 1 else ''}"


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_article_dir(directory: Path) -> tuple[dict[str, Article], list[Problem]]:
    """Articles by slug (newest first) plus the problems of the files that failed to load."""
    articles: dict[str, Article] = {}
    problems: list[Problem] = []
    for file in sorted(directory.glob("*.md")) if directory.is_dir() else []:
        try:
            article = load_article(file, display_name=_display(file))
        except ProblemsError as exc:
            problems.extend(exc.problems)
            continue
        articles[article.slug] = article
    ordered = sorted(articles.items(), key=lambda kv: (kv[1].published, kv[0]), reverse=True)
    return dict(ordered), problems


def analyse_manifest(
    path: Path, settings: Settings, segments: KnownSegments | None = None
) -> tuple[Edition | None, list[Problem]]:
    """(edition or None, problems). The edition is None when the manifest cannot be resolved."""
    display = str(path)
    try:
        doc = load_yaml(path, display_name=display)
    except ProblemsError as exc:
        return None, list(exc.problems)
    articles, article_problems = load_article_dir(path.parent / "articles")
    a = Analysis(doc, settings, articles)
    # A broken article file blocks the edition only when the manifest uses it (reported at the
    # reference); otherwise it is a warning, so one bad draft cannot stop every edition.
    a.problems.extend(replace(p, severity="warning") for p in article_problems)
    a.broken = {f.stem for f in (path.parent / "articles").glob("*.md")} - set(articles)
    data = doc.data
    if not isinstance(data, dict):
        a.error((), "a manifest must be a mapping of field: value", "start from issues/2026-12.yaml")
        return None, a.problems
    a.fields((), data, TOP_FIELDS, "the manifest")
    for name in REQUIRED:
        if data.get(name) is None or data.get(name) == "":
            a.error((name,) if name in data else (), f"missing required field {name!r}")

    edition_id = a.text(("edition",), data.get("edition"), "edition")
    if edition_id and not EDITION_ID_RE.match(edition_id):
        a.error(("edition",), f"edition id {edition_id!r} cannot be used as a directory name",
                "use letters, digits, '-', '_' or '.', e.g. 2026-12")
    title = a.text(("title",), data.get("title"), "title") or ""
    subject = a.text(("subject",), data.get("subject"), "subject") or ""
    preheader = a.text(("preheader",), data.get("preheader"), "preheader") or ""
    intro = a.text(("intro",), data.get("intro"), "intro") or ""
    template = data.get("template", DEFAULT_TEMPLATE)
    bad_template = template_problem(settings.project_dir, template)
    if bad_template:
        a.error(("template",), *bad_template)

    zone_name = data.get("timezone", settings.timezone)
    zone, zone_error, zone_hint = load_zone(zone_name)
    if zone_error:
        a.error(("timezone",), zone_error, zone_hint)
    default_send_at = a.send_at(("send_at",), data.get("send_at"), zone)
    zone_key = zone.key if zone else str(zone_name)
    default_window = a.window(("window",), data.get("window"), default_send_at, zone_key)

    default_locales = _locales(a, (), data, (DEFAULT_LOCALE,))

    featured = a.slug(("featured",), data["featured"]) if data.get("featured") is not None else None
    selection = _selection(a, data.get("articles"), featured)

    variants = _variants(a, data.get("segments"), segments or KnownSegments(None), selection, featured,
                         defaults=(subject, preheader, intro), send_at=default_send_at,
                         window=default_window, zone_info=zone, zone=zone_key, locales=default_locales)
    if any(p.severity == "error" for p in a.problems) or not edition_id:
        return None, a.problems
    edition = Edition(id=edition_id, title=title, template=str(template),
                      manifest_path=path.resolve(), variants=tuple(variants))
    return edition, a.problems


def _selection(a: Analysis, value: Any, featured: Article | None) -> list[Article]:
    """Explicit slugs in order, then query results newest first; no duplicates, featured excluded."""
    if value is None:
        return []
    if isinstance(value, list):  # shorthand: `articles: [slug, ...]`
        value, base = {"slugs": value}, ("articles",)
        explicit = a.slug_list(base, value["slugs"], "articles")
    elif isinstance(value, dict):
        a.fields(("articles",), value, ARTICLES_FIELDS, "articles")
        explicit = a.slug_list(("articles", "slugs"), value.get("slugs"), "articles.slugs")
    else:
        a.error(("articles",), "articles must be a list of slugs or a mapping with slugs / query")
        return []
    chosen = [art for _, art in explicit if featured is None or art.slug != featured.slug]
    query = value.get("query")
    queries = query if isinstance(query, list) else [query] if query is not None else []
    for i, q in enumerate(queries):
        at: PathKey = ("articles", "query", i) if isinstance(query, list) else ("articles", "query")
        taken = {art.slug for art in chosen} | ({featured.slug} if featured else set())
        chosen.extend(run_query(a, at, q, exclude=taken))
    return chosen


def _variants(
    a: Analysis, segments: Any, known_segments: KnownSegments, selection: list[Article], featured: Article | None, *,
    defaults: tuple[str, str, str], send_at: datetime | None, window: str | None,
    zone_info: ZoneInfo | None, zone: str, locales: tuple[str, ...],
) -> list[VariantSpec]:
    default_window = window
    if segments is None:
        return []
    if not isinstance(segments, dict):
        a.error(("segments",), "segments must be a mapping of segment name: overrides",
                "e.g. segments: {scotland: {send_at: 2026-12-03T07:30}}")
        return []
    known = known_segments.names
    a.problems.extend(known_segments.problems)
    subject, preheader, intro = defaults
    variants: list[VariantSpec] = []
    reached: set[str] = set()
    for name, overrides in segments.items():
        at: PathKey = ("segments", name)
        name = str(name)
        if known is not None and name not in known:
            a.error(at, f"segment {name!r} is not defined in subscribers/segments.yaml",
                    suggest(name, known) or "add it to subscribers/segments.yaml or remove it here",
                    key=True)
        overrides = overrides if overrides is not None else {}
        if not isinstance(overrides, dict):
            a.error(at, f"segment {name!r} must be a mapping of overrides (or empty)")
            continue
        a.fields(at, overrides, SEGMENT_FIELDS, f"segment {name!r}")
        region = segment_region(a, at, name, overrides)
        omit = a.slug_list((*at, "omit"), overrides.get("omit"), f"segments.{name}.omit")
        add = a.slug_list((*at, "add"), overrides.get("add"), f"segments.{name}.add")
        selected = {art.slug for art in selection} | ({featured.slug} if featured else set())
        for where, art in omit:
            if art.slug not in selected:
                a.error(where, f"segment {name!r} omits {art.slug!r}, which the edition does not include",
                        "remove it from omit")
        for where, art in add:
            if art.slug in selected:
                a.error(where, f"duplicate article: {art.slug!r} is already in the edition",
                        f"remove it from segments.{name}.add")
        omitted = {art.slug for _, art in omit}
        chosen = [art for art in selection if art.slug not in omitted]
        chosen += [art for _, art in add if art.slug not in selected]
        seg_featured = featured if featured and featured.slug not in omitted else None
        if seg_featured is None and not chosen:
            a.error(at, f"segment {name!r} has no articles", "add articles or omit fewer", key=True)
        reached.update(art.slug for art in chosen)
        if seg_featured:
            reached.add(seg_featured.slug)
        when = a.send_at((*at, "send_at"), overrides["send_at"], zone_info) \
            if overrides.get("send_at") is not None else send_at
        variants.append(VariantSpec(
            segment=name,
            subject=a.text((*at, "subject"), overrides.get("subject"), "subject", required="subject" in overrides) or subject,
            preheader=a.text((*at, "preheader"), overrides.get("preheader"), "preheader") or preheader,
            intro_markdown=a.text((*at, "intro"), overrides.get("intro"), "intro") or intro,
            featured=seg_featured,
            articles=tuple(regional_order(chosen, region)),
            region=region,
            send_at=when,
            zone=zone,
            window=_segment_window(a, at, overrides, default_window, when, zone),
            locales=_locales(a, at, overrides, locales),
        ))
    if not segments:
        a.error(("segments",), "no segments: nobody would receive this edition",
                "add at least one segment, e.g. segments: {london: {}}")
    for art in ([featured] if featured else []) + selection:
        if variants and art.slug not in reached:
            a.error(_where_selected(a, art.slug), f"article {art.slug!r} is omitted by every segment",
                    "remove it from the edition's articles, or stop omitting it somewhere")
    return variants


def _segment_window(a: Analysis, at: PathKey, overrides: dict[str, Any], default: str | None,
                    when: datetime | None, zone: str) -> str | None:
    """The segment's own window, else the edition's (checked again when the segment has its own
    send time)."""
    if "window" in overrides:
        return a.window((*at, "window"), overrides["window"], when, zone)
    if default and "send_at" in overrides:
        return a.window((*at, "send_at"), default, when, zone)
    return default


def _locales(a: Analysis, at: PathKey, mapping: dict[str, Any], default: tuple[str, ...]) -> tuple[str, ...]:
    """`locale: cy` (one language) or `bilingual: [cy, en-GB]` (two, the first leads); else default."""
    if "locale" in mapping and "bilingual" in mapping:
        a.error((*at, "bilingual"), "give either locale or bilingual, not both", key=True)
        return default
    if "bilingual" in mapping:
        value = mapping["bilingual"]
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)
                and value[0] != value[1]):
            a.error((*at, "bilingual"), f"bilingual must list two different languages, not {value!r}",
                    "e.g. bilingual: [cy, en-GB] (Welsh first)")
            return default
        codes = tuple(value)
    elif "locale" in mapping:
        codes = (mapping["locale"],)
    else:
        return default
    field = "bilingual" if "bilingual" in mapping else "locale"
    for i, code in enumerate(codes):
        if not isinstance(code, str) or not LOCALE_RE.match(code):
            where = (*at, field, i) if field == "bilingual" else (*at, field)
            a.error(where, f"unknown locale {code!r}", f"use a language tag such as {DEFAULT_LOCALE} or cy")
            return default
    return codes


def _where_selected(a: Analysis, slug: str) -> PathKey:
    data = a.doc.data
    if data.get("featured") == slug:
        return ("featured",)
    arts = data.get("articles")
    slugs = arts if isinstance(arts, list) else arts.get("slugs") if isinstance(arts, dict) else None
    if isinstance(slugs, list) and slug in slugs:
        base = ("articles",) if isinstance(arts, list) else ("articles", "slugs")
        return (*base, slugs.index(slug))
    return ("articles",)


def regional_order(articles: list[Article], region: str | None) -> list[Article]:
    """Stable: the region's own articles, then national ones (no regions), then other regions'."""
    if region is None:
        return list(articles)

    def rank(article: Article) -> int:
        if region in article.regions:
            return 0
        return 1 if not article.regions else 2

    return sorted(articles, key=rank)

