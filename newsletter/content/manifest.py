"""Issue manifests: `issues/<edition>.yaml` → an Edition with one VariantSpec per segment.

Articles come from the `articles/` directory beside the manifest (`issues/articles/*.md`).

Checking happens in two passes, and `check` lists the problems of both at once:
1. the manifest's models (manifest_model.py) check every value on its own;
2. resolving checks what spans several values, the article files, the template directory and the
   known segments: slugs exist, featured / omit / add agree, send times exist in the zone and fit
   their windows, segment names are defined. It runs on the valid part of a manifest with
   problems too (the values with problems left out).

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

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from newsletter.config import Settings
from newsletter.content.articles import Article, filter_articles, load_article
from newsletter.content.field_types import MANIFEST_TIME_HINT
from newsletter.content.manifest_model import (
    DEFAULT_LOCALE,
    ArticleChoice,
    ManifestFile,
    ManifestPlan,
    Query,
    SegmentOverrides,
)
from newsletter.content.send_times import SendWindow, parse_send_time, zone
from newsletter.content.yaml_source import PathKey, YamlDocument, load_yaml
from newsletter.content.yaml_validation import Validated, suggest, validate_yaml
from newsletter.errors import ManifestError, Problem, ProblemsError, ScheduleError
from newsletter.regions import normalise_region

# A template is a folder templates/<name>/ with this entry file. The one definition: the
# manifest check looks for it and the renderer (newsletter.render) loads it.
TEMPLATE_ENTRY = "email.mjml.j2"


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
    """(edition or None, problems). The edition is None when the manifest has errors."""
    try:
        doc = load_yaml(path, display_name=str(path))
    except ProblemsError as exc:
        return None, list(exc.problems)
    article_dir = path.parent / "articles"
    articles, article_problems = load_article_dir(article_dir)
    checked = validate_yaml(doc, ManifestFile)
    resolver = _Resolver(doc, checked, settings, articles, segments or KnownSegments(None))
    resolver.broken = {f.stem for f in article_dir.glob("*.md")} - set(articles)
    plan = checked.partial(ManifestPlan)
    variants = resolver.variants(plan) if plan is not None else []
    # Positions in the manifest in file order; then the other files'. A broken article file blocks
    # the edition only when the manifest uses it (reported at the reference); otherwise it is a
    # warning, so one bad draft cannot stop every edition.
    own = sorted([*doc.duplicate_keys, *checked.problems, *resolver.problems], key=lambda p: (p.line, p.col))
    problems = own + resolver.other_files + [replace(p, severity="warning") for p in article_problems]
    model = checked.value
    if model is None or any(p.severity == "error" for p in problems):
        return None, problems
    edition = Edition(id=model.edition, title=model.title, template=model.template,
                      manifest_path=path.resolve(), variants=tuple(variants))
    return edition, problems


def template_problem(project_dir: Path, name: str) -> tuple[str, str] | None:
    """(message, hint) when templates/<name>/ has no entry file."""
    templates = project_dir / "templates"
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


class _Resolver:
    """The second pass: checks across values, and the variants they resolve to."""

    def __init__(self, doc: YamlDocument, checked: Validated[ManifestFile], settings: Settings,
                 articles: dict[str, Article], known: KnownSegments) -> None:
        self.doc = doc
        self.checked = checked
        self.settings = settings
        self.articles = articles
        self.known = known
        self.broken: set[str] = set()  # slugs whose files exist but failed to load
        self.problems: list[Problem] = []
        self.other_files: list[Problem] = list(known.problems)

    def error(self, at: PathKey, message: str, hint: str | None = None, *, key: bool = False) -> None:
        self.problems.append(self.doc.problem(at, message, hint=hint, key=key))

    def warn(self, at: PathKey, message: str, hint: str | None = None) -> None:
        self.problems.append(self.doc.problem(at, message, hint=hint, severity="warning"))

    # ------------------------------------------------------------ values

    def zone_name(self, plan: ManifestFile) -> str | None:
        """The manifest's zone (default: the setting); None when it is unknown (reported)."""
        if self.checked.has_problem(("timezone",)):
            return None
        name = plan.timezone or self.settings.timezone
        try:
            zone(name)
        except ScheduleError:
            self.error(("timezone",), f"unknown time zone {name!r} (the timezone setting)",
                       "fix NEWSLETTER_TIMEZONE / timezone in pyproject.toml, or give timezone: here")
            return None
        return name

    def send_time(self, at: PathKey, value: datetime | None, zone_name: str | None) -> datetime | None:
        """A send_at as an instant in the manifest's zone; local times that do not exist or happen
        twice are problems."""
        if value is None or zone_name is None:
            return None
        try:
            instant = parse_send_time(value, zone_name, label="send_at", hint=MANIFEST_TIME_HINT)
        except ScheduleError as exc:
            self.error(at, exc.message, exc.hint)
            return None
        return instant.astimezone(ZoneInfo(zone_name))

    def fits(self, at: PathKey, window: SendWindow | None, when: datetime | None, zone_name: str | None) -> None:
        if window is None or when is None or zone_name is None or window.contains(when, zone_name):
            return
        self.error(at, f"send time {when:%Y-%m-%d %H:%M} is outside the send window {window}",
                   "move send_at inside the window, or widen the window")

    def locales(self, at: PathKey, given: ManifestFile | SegmentOverrides, default: tuple[str, ...]) -> tuple[str, ...]:
        """`locale: cy` (one language) or `bilingual: [cy, en-GB]` (two, the first leads); else default."""
        raw = self.doc.data
        for part in at:
            raw = raw.get(part) if isinstance(raw, dict) else None
        if isinstance(raw, dict) and "locale" in raw and "bilingual" in raw:
            self.error((*at, "bilingual"), "give either locale or bilingual, not both", key=True)
            return default
        if given.bilingual is not None:
            return given.bilingual
        return (given.locale,) if given.locale is not None else default

    def article(self, at: PathKey, slug: str) -> Article | None:
        article = self.articles.get(slug)
        if article is None and slug in self.broken:
            self.error(at, f"article {slug!r} could not be loaded", "fix the problems reported in its file")
        elif article is None:
            hint = suggest(slug, tuple(self.articles)) or "run `newsletter articles list` to see the slugs"
            self.error(at, f"unknown article {slug!r}", hint)
        return article

    def article_list(self, at: PathKey, slugs: tuple[str, ...], name: str) -> list[tuple[PathKey, Article]]:
        found: list[tuple[PathKey, Article]] = []
        seen: dict[str, PathKey] = {}
        for i, slug in enumerate(slugs):
            where = (*at, i)
            article = self.article(where, slug)
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

    def run_query(self, at: PathKey, query: Query, *, exclude: set[str]) -> list[Article]:
        """Query results newest first, without `exclude`, at most `max` of them."""
        found = filter_articles(self.articles, tags=list(query.tags), since=query.since,
                                regions=list(query.regions))
        found = [art for art in found if art.slug not in exclude]
        if not found and not self.checked.has_problem(at):
            self.warn(at, "this query adds no articles", "loosen the tags, regions or since date")
        return found[: query.max] if query.max else found

    # ------------------------------------------------------------ the edition

    def selection(self, choice: ArticleChoice, featured: Article | None) -> list[Article]:
        """Explicit slugs in order, then query results newest first; no duplicates, featured excluded."""
        raw = self.doc.data.get("articles")
        if isinstance(raw, list):  # shorthand: `articles: [slug, ...]`
            explicit = self.article_list(("articles",), choice.slugs, "articles")
        else:
            explicit = self.article_list(("articles", "slugs"), choice.slugs, "articles.slugs")
        chosen = [art for _, art in explicit if featured is None or art.slug != featured.slug]
        several = isinstance(raw, dict) and isinstance(raw.get("query"), list)
        for i, query in enumerate(choice.query):
            at: PathKey = ("articles", "query", i) if several else ("articles", "query")
            if self.checked.has_problem(at):
                continue  # what it would select is unknown; its problems are reported
            taken = {art.slug for art in chosen} | ({featured.slug} if featured else set())
            chosen.extend(self.run_query(at, query, exclude=taken))
        return chosen

    def variants(self, plan: ManifestFile) -> list[VariantSpec]:
        if not self.checked.has_problem(("template",)):
            bad_template = template_problem(self.settings.project_dir, plan.template)
            if bad_template:
                self.error(("template",), *bad_template)
        zone_name = self.zone_name(plan)
        send_at = self.send_time(("send_at",), plan.send_at, zone_name)
        self.fits(("window",), plan.window, send_at, zone_name)
        featured = self.article(("featured",), plan.featured) if plan.featured is not None else None
        selection = self.selection(plan.articles, featured)
        raw_segments = self.doc.data.get("segments")
        if raw_segments == {}:
            self.error(("segments",), "no segments: nobody would receive this edition",
                       "add at least one segment, e.g. segments: {london: {}}")
        locales = self.locales((), plan, (DEFAULT_LOCALE,))
        variants = [self.variant(name, seg, plan, selection, featured, send_at, zone_name, locales)
                    for name, seg in plan.segments.items()]
        reached = {art.slug for v in variants for art in ((v.featured,) if v.featured else ()) + v.articles}
        for art in ([featured] if featured else []) + selection:
            if variants and art.slug not in reached:
                self.error(self.where_selected(art.slug), f"article {art.slug!r} is omitted by every segment",
                           "remove it from the edition's articles, or stop omitting it somewhere")
        return variants

    def variant(self, name: str, seg: SegmentOverrides, plan: ManifestFile, selection: list[Article],
                featured: Article | None, send_at: datetime | None, zone_name: str | None,
                locales: tuple[str, ...]) -> VariantSpec:
        at: PathKey = ("segments", name)
        known = self.known.names
        if known is not None and name not in known:
            self.error(at, f"segment {name!r} is not defined in subscribers/segments.yaml",
                       suggest(name, known) or "add it to subscribers/segments.yaml or remove it here", key=True)
        region = seg.region if "region" in seg.model_fields_set else normalise_region(name)
        omit = self.article_list((*at, "omit"), seg.omit, f"segments.{name}.omit")
        add = self.article_list((*at, "add"), seg.add, f"segments.{name}.add")
        selected = {art.slug for art in selection} | ({featured.slug} if featured else set())
        # with problems in the edition's articles, what it selects is not known in full
        incomplete = any(self.checked.has_problem(p) for p in (("articles",), ("featured",), (*at, "add")))
        for where, art in omit:
            if art.slug not in selected and not incomplete:
                self.error(where, f"segment {name!r} omits {art.slug!r}, which the edition does not include",
                           "remove it from omit")
        for where, art in add:
            if art.slug in selected:
                self.error(where, f"duplicate article: {art.slug!r} is already in the edition",
                           f"remove it from segments.{name}.add")
        omitted = {art.slug for _, art in omit}
        chosen = [art for art in selection if art.slug not in omitted]
        chosen += [art for _, art in add if art.slug not in selected]
        seg_featured = featured if featured and featured.slug not in omitted else None
        if seg_featured is None and not chosen and not incomplete:
            self.error(at, f"segment {name!r} has no articles", "add articles or omit fewer", key=True)
        if seg.send_at is not None:
            when = self.send_time((*at, "send_at"), seg.send_at, zone_name)
        else:
            when = None if self.checked.has_problem((*at, "send_at")) else send_at
        # the segment's own window, else the edition's (checked again against the segment's own time)
        if "window" in seg.model_fields_set or self.checked.has_problem((*at, "window")):
            window = seg.window
            self.fits((*at, "window"), window, when, zone_name)
        else:
            window = plan.window
            if seg.send_at is not None:
                self.fits((*at, "send_at"), window, when, zone_name)
        return VariantSpec(
            segment=name,
            subject=seg.subject or plan.subject,
            preheader=seg.preheader or plan.preheader,
            intro_markdown=seg.intro or plan.intro,
            featured=seg_featured,
            articles=tuple(regional_order(chosen, region)),
            region=region,
            send_at=when,
            zone=zone_name or plan.timezone or self.settings.timezone,
            window=str(window) if window else None,
            locales=self.locales(at, seg, locales),
        )

    def where_selected(self, slug: str) -> PathKey:
        data = self.doc.data
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
