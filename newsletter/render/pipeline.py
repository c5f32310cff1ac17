"""Rendering one variant: Jinja2 → MJML → HTML (mjml-python/MRML) → inlined CSS (premailer) → text.

Each stage is a pure function of its input, so the same edition, template and settings always give
byte-identical HTML and text. A variant is rendered once; per-recipient values stay as tokens
(`-first_name-`, `-email-`, `-unsubscribe_url-`, `-preferences_url-`) for send-time substitution.
"""

from __future__ import annotations

import gettext
import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import cssutils
import jinja2
import mjml
import premailer.premailer
import yaml
from lxml import etree
from markdown_it import MarkdownIt
from markupsafe import Markup
from premailer import Premailer

from newsletter.config import Settings
from newsletter.content import TEMPLATE_ENTRY, Article, Edition, VariantSpec
from newsletter.errors import InputError
from newsletter.regions import region_name
from newsletter.render.i18n import SOURCE_LOCALE, Translator, load_catalogue, mark
from newsletter.render.placeholders import HTML_TOKENS, TEXT_TOKENS, text_tokens_for
from newsletter.render.plaintext import html_to_text

TEXT_ENTRY = "text.j2"
METADATA = "template.yaml"
DEFAULT_THEME = {
    "font": "-apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif",
}
ABSOLUTE_LINK = re.compile(r"^(https?://[^\s/?#]+|mailto:[^\s]+)", re.I)
DOCTYPE = "<!doctype html>"
CONTENT_LOCALE = "en-GB"  # the language articles, intros and subjects are written in


@dataclass(frozen=True)
class StageTimings:
    """Milliseconds spent in each stage (reported by the benchmark; never written to output)."""

    jinja: float = 0.0
    mjml: float = 0.0
    inline: float = 0.0
    text: float = 0.0

    @property
    def total(self) -> float:
        return self.jinja + self.mjml + self.inline + self.text

    def __add__(self, other: StageTimings) -> StageTimings:
        return StageTimings(self.jinja + other.jinja, self.mjml + other.mjml,
                            self.inline + other.inline, self.text + other.text)


@dataclass(frozen=True)
class RenderedVariant:
    segment: str
    html: str
    text: str
    timings: StageTimings = field(default_factory=StageTimings, compare=False)


@dataclass(frozen=True)
class Template:
    """A template directory: `email.mjml.j2` (required), `text.j2` and `template.yaml` (optional)."""

    name: str
    directory: Path
    environment: jinja2.Environment = field(compare=False, repr=False)
    theme: dict[str, str] = field(compare=False, repr=False)
    has_text_template: bool = False
    _catalogues: dict[str, gettext.NullTranslations] = field(default_factory=dict, compare=False, repr=False)

    @property
    def sha256(self) -> str:
        return template_sha256(self.directory)

    def translator(self, languages: tuple[str, ...]) -> Translator:
        """Fixed strings in these languages (catalogues compiled once per loaded template)."""
        for code in languages:
            if code not in self._catalogues:
                self._catalogues[code] = load_catalogue(self.directory, code)
        return Translator(languages, {code: self._catalogues[code] for code in languages})


def template_sha256(directory: Path) -> str:
    """sha256 over every file of a template directory (relative path and bytes, sorted)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def template_dir(settings: Settings, name: str) -> Path:
    return settings.project_dir / "templates" / name


_loaded: dict[tuple[str, str], Template] = {}


def load_template(settings: Settings, name: str) -> Template:
    """The template `templates/<name>/`; InputError naming the path when it is missing or broken.
    Compiled templates are reused while the directory's files are unchanged (keyed by content)."""
    directory = template_dir(settings, name)
    entry = directory / TEMPLATE_ENTRY
    if not entry.is_file():
        raise InputError(
            f"template {name!r} not found: {entry} does not exist",
            hint=f"create {entry} or set `template:` in the manifest to a folder under "
            f"{settings.project_dir / 'templates'}",
        )
    key = (str(directory.resolve()), template_sha256(directory))
    if key not in _loaded:
        if len(_loaded) > 32:
            _loaded.clear()
        _loaded[key] = _compile_template(name, directory)
    return _loaded[key]


def _compile_template(name: str, directory: Path) -> Template:
    theme = dict(DEFAULT_THEME)
    meta_path = directory / METADATA
    if meta_path.is_file():
        try:
            meta = yaml.safe_load(meta_path.read_text("utf-8")) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"{meta_path}: invalid YAML: {exc}") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("theme", {}), dict):
            raise InputError(f"{meta_path}: expected a mapping with an optional `theme:` mapping")
        theme.update({str(k): str(v) for k, v in (meta.get("theme") or {}).items()})
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("j2", "mjml", "html"), disabled_extensions=("txt",),
            default_for_string=True, default=True,
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return Template(name, directory, env, theme, (directory / TEXT_ENTRY).is_file())


# --- context -------------------------------------------------------------------------------

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
# Only absolute http(s) and mailto links become links; anything else stays as plain text.
_markdown.validateLink = lambda url: bool(ABSOLUTE_LINK.match(url.strip()))  # type: ignore[method-assign]


@lru_cache(maxsize=256)
def markdown_to_html(text: str) -> Markup:
    """Markdown (raw HTML disabled: it is shown as text) → safe HTML (kept per text: most variants
    share the edition's intro)."""
    return Markup(_markdown.render(text or ""))


def article_view(article: Article, translator: Translator) -> dict[str, Any]:
    return {
        "slug": article.slug,
        "title": article.title,
        "url": article.url,
        "author": article.author,
        "author_role": article.author_role,
        "date": translator.date(article.published),
        "date_iso": article.published.date().isoformat(),
        "summary": article.summary,
        "image": article.image,
        "image_alt": article.image_alt,
        "tags": list(article.tags),
        "regions": list(article.regions),
    }


def template_settings(settings: Settings) -> dict[str, str]:
    """The settings a template may use (also part of the inputs fingerprint). No secrets."""
    return {
        "name": settings.organisation,
        "postal_address": settings.postal_address,
        "website": settings.website,
        "public_base_url": settings.public_base_url,
        "from_name": settings.from_name,
        "from_email": settings.from_email,
        "reply_to": settings.reply_to or "",
    }


def archive_url(public_base_url: str, edition: str, segment: str) -> str:
    """The variant's page in the member web's archive (`/archive/<edition>/<segment>`)."""
    return f"{public_base_url.rstrip('/')}/archive/{quote(edition, safe='')}/{quote(segment, safe='')}"


def template_context(
    edition: Edition, variant: VariantSpec, settings: Settings, theme: dict[str, str] | None = None,
    translator: Translator | None = None,
) -> dict[str, Any]:
    tr = translator or Translator((SOURCE_LOCALE,), {SOURCE_LOCALE: gettext.NullTranslations()})
    regional = [a for a in variant.articles if variant.region and variant.region in a.regions]
    regional_slugs = {a.slug for a in regional}
    others = [a for a in variant.articles if a.slug not in regional_slugs]
    return {
        "edition": {"id": edition.id, "title": edition.title},
        "variant": {
            "segment": variant.segment,
            "subject": variant.subject,
            "preheader": variant.preheader,
            "region": variant.region,
            "region_name": region_name(variant.region) if variant.region else None,
            # "View in your browser": the variant's page in the web archive (no personal values)
            "archive_url": archive_url(settings.public_base_url, edition.id, variant.segment),
        },
        "intro_html": markdown_to_html(variant.intro_markdown),
        "intro_markdown": variant.intro_markdown,
        "featured": article_view(variant.featured, tr) if variant.featured else None,
        "articles": [article_view(a, tr) for a in others],
        "regional_articles": [article_view(a, tr) for a in regional],
        "all_articles": [article_view(a, tr) for a in variant.articles],
        "org": template_settings(settings),
        "tokens": dict(HTML_TOKENS),
        "theme": dict(theme or DEFAULT_THEME),
        # fixed text: _("…") in every language of the variant, t(lang, "…") in one; N_("…")
        # passes a msgid as a value (translated where it is used)
        "lang": tr.lang,
        "languages": list(tr.languages),
        "content_lang": CONTENT_LOCALE,
        "_": tr,
        "t": tr.text,
        "N_": mark,
    }


# --- stages --------------------------------------------------------------------------------


def render_mjml(template: Template, context: dict[str, Any]) -> str:
    try:
        return template.environment.get_template(TEMPLATE_ENTRY).render(context)
    except jinja2.TemplateError as exc:
        where = f"{getattr(exc, 'filename', None) or template.directory / TEMPLATE_ENTRY}"
        line = getattr(exc, "lineno", None)
        raise InputError(f"{where}{f':{line}' if line else ''}: template error: {exc}") from None


def mjml_to_html(source: str) -> str:
    """MJML → HTML with no web-font imports (system fonts only; no third-party requests)."""
    try:
        return mjml.mjml2html(source, disable_comments=True, fonts={})
    except Exception as exc:  # MRML raises a plain exception with the parser's message
        raise InputError(f"MJML error: {exc}", hint="check the template's MJML markup") from None


StyleRule = tuple[tuple[int, ...], str, str]  # premailer's (specificity, selector, declarations)


class _Inliner(Premailer):  # type: ignore[misc]
    """premailer with this project's settings, doing once what it would redo for every variant:
    the rules of each distinct <style> block (every variant of a template has the same ones) and
    the HTML attributes (bgcolor, align, valign) derived from each distinct inlined style."""

    _rules: dict[tuple[str | None, int], tuple[tuple[StyleRule, ...], tuple[object, ...]]] = {}
    _attributes: dict[str, tuple[tuple[str, str], ...]] = {}
    CACHE_LIMIT = 4096

    def __init__(self) -> None:
        super().__init__(
            keep_style_tags=True,  # media queries and dark mode stay in <style>
            strip_important=False,  # the !important inside @media must survive
            disable_basic_attributes=["width", "height"],  # never rewrite <img width="552"> to 100%
            allow_network=False,  # never fetch external CSS; builds are offline and deterministic
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
            remove_classes=False,
            exclude_pseudoclasses=True,
            cache_css_parsing=True,
            align_floating_images=False,  # done in inline_css, as premailer does it
        )

    def _parse_style_rules(self, css_body: str | None, ruleset_index: int) -> tuple[list[StyleRule], list[object]]:
        key = (css_body, ruleset_index)
        known = self._rules.get(key)
        if known is None:
            rules, leftover = super()._parse_style_rules(css_body, ruleset_index)
            known = (tuple(rules), tuple(leftover))
            if len(self._rules) >= self.CACHE_LIMIT:
                self._rules.clear()
            self._rules[key] = known
        return list(known[0]), list(known[1])

    def _style_to_basic_html_attributes(self, element: etree._Element, style_content: str,
                                        force: bool = False) -> None:
        attributes = self._attributes.get(style_content)
        if attributes is None:
            probe = etree.Element("probe")  # premailer's own rules, on an element without attributes
            super()._style_to_basic_html_attributes(probe, style_content, force=True)
            attributes = tuple(probe.attrib.items())
            if len(self._attributes) >= self.CACHE_LIMIT:
                self._attributes.clear()
            self._attributes[style_content] = attributes
        for key, value in attributes:  # as premailer applies them
            if key in element.attrib and not force or key in self.disable_basic_attributes:
                continue
            element.attrib[key] = value


_premailer_merge_styles = premailer.premailer.merge_styles
_merged: dict[tuple[str, tuple[tuple[tuple[str, str], ...], ...], tuple[str, ...], bool], str] = {}


def _merge_styles_once(inline_style: str, new_styles: list[list[tuple[str, str]]], classes: list[str],
                       remove_unset_properties: bool = False) -> str:
    """premailer's merge_styles (an element's final style from the rules that match it), kept per
    distinct input: a variant has ~2,000 styled elements but a template only a few dozen distinct
    combinations. premailer looks the function up in its module, so it is replaced there (once,
    at import; the result is the function's own for the same arguments)."""
    key = (inline_style, tuple(map(tuple, new_styles)), tuple(classes), remove_unset_properties)
    merged = _merged.get(key)
    if merged is None:
        merged = _premailer_merge_styles(inline_style, new_styles, classes,
                                         remove_unset_properties=remove_unset_properties)
        if len(_merged) >= _Inliner.CACHE_LIMIT:
            _merged.clear()
        _merged[key] = merged
    return merged


premailer.premailer.merge_styles = _merge_styles_once


def inline_css(html: str) -> str:
    """Inline CSS for clients that ignore <style>, keeping <style> for media queries/dark mode.

    premailer's own parse and serialisation. Its closing step (an `align` attribute on images
    floated left or right, for Outlook) re-parsed every image's style with cssutils at every
    build; here each distinct style is parsed once (`_image_float`), and see _Inliner."""

    stripped = html.strip()
    tree = etree.fromstring(stripped, etree.HTMLParser()).getroottree()
    page = tree.getroot()
    _Inliner().transform(page)
    for image in page.iter("img"):
        style = image.get("style")
        if style is not None:
            align = _image_float(style)
            if align in ("left", "right"):
                image.set("align", align)
    # premailer keeps the doctype only when lxml reports it spelled exactly as the source has it
    root = tree if stripped.startswith(tree.docinfo.doctype) else page
    transformed = etree.tostring(root, method="html", pretty_print=True, encoding="utf-8").decode("utf-8")
    if transformed.lstrip()[:9].lower() != "<!doctype":  # the prefix only, not the whole document
        transformed = DOCTYPE + "\n" + transformed
    return transformed


@lru_cache(maxsize=4096)
def _image_float(style: str) -> str:
    """The CSS float of an inline style, read as premailer reads it (cssutils, validating)."""
    return str(cssutils.parseStyle(style).float)


def render_text(template: Template, context: dict[str, Any], html: str) -> str:
    if template.has_text_template:
        text_env = template.environment.overlay(autoescape=False)
        try:
            text = text_env.get_template(TEXT_ENTRY).render({**context, "tokens": dict(TEXT_TOKENS)})
        except jinja2.TemplateError as exc:
            raise InputError(f"{template.directory / TEXT_ENTRY}: template error: {exc}") from None
        return text.strip() + "\n"
    return text_tokens_for(html_to_text(html))


def render_variant(
    template: Template, edition: Edition, variant: VariantSpec, settings: Settings
) -> RenderedVariant:
    """Render one variant's HTML and text. Deterministic: no clocks, no randomness, no network."""
    context = template_context(edition, variant, settings, template.theme, template.translator(variant.locales))
    t0 = time.perf_counter()
    source = render_mjml(template, context)
    t1 = time.perf_counter()
    raw_html = mjml_to_html(source)
    t2 = time.perf_counter()
    html = inline_css(raw_html)
    t3 = time.perf_counter()
    text = render_text(template, context, html)
    t4 = time.perf_counter()
    timings = StageTimings(*(1000 * d for d in (t1 - t0, t2 - t1, t3 - t2, t4 - t3)))
    return RenderedVariant(variant.segment, html, text, timings)
