"""The fields of an issue manifest (`issues/<edition>.yaml`) as pydantic models.

They check each value on its own (types, slugs, regions, zones, times, windows); what needs more
than one value, the article files or the known segments is checked when the manifest is resolved
(manifest.py).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, ConfigDict, field_validator

from newsletter.content.field_types import (
    ArticleSlug,
    ArticleSlugs,
    Day,
    OneLine,
    Region,
    RegionList,
    RequiredLine,
    SegmentName,
    SendAt,
    Text,
    TextList,
    Window,
    ZoneName,
    text_of,
)
from newsletter.content.yaml_validation import FieldProblem, YamlModel, shown

DEFAULT_TEMPLATE = "digest"
DEFAULT_LOCALE = "en-GB"
EDITION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
LOCALE_RE = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")  # en-GB, cy: the language of a template's fixed text


def _edition_id(value: Any) -> str:
    if value is None or value == "":
        raise FieldProblem("missing required field 'edition'", complete=True)
    text = text_of(value)
    if not EDITION_ID_RE.match(text):
        raise FieldProblem(f"edition id {text!r} cannot be used as a directory name",
                           "use letters, digits, '-', '_' or '.', e.g. 2026-12", complete=True)
    return text


def _template_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or "/" in value or "\\" in value or value.startswith("."):
        raise FieldProblem(f"template must be a directory name under templates/, not {shown(value)}",
                           "e.g. template: digest", complete=True)
    return value.strip()


def _locale(value: Any) -> str:
    if not isinstance(value, str) or not LOCALE_RE.match(value):
        raise FieldProblem(f"unknown locale {value if isinstance(value, str) else shown(value)!r}",
                           f"use a language tag such as {DEFAULT_LOCALE} or cy", complete=True)
    return value


def _bilingual(value: Any) -> tuple[str, str]:
    if not (isinstance(value, list) and len(value) == 2 and value[0] != value[1]):
        written = repr(value) if isinstance(value, list) and len(value) < 5 else shown(value)
        raise FieldProblem(f"bilingual must list two different languages, not {written}",
                           "e.g. bilingual: [cy, en-GB] (Welsh first)", complete=True)
    for i, code in enumerate(value):
        try:
            _locale(code)
        except FieldProblem as exc:
            raise FieldProblem(exc.message, exc.hint, at=(i,), complete=True) from None
    return (value[0], value[1])


def _article_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FieldProblem(f"must be a whole number of articles (1 or more), not {shown(value)}")
    return value


EditionId = Annotated[str, BeforeValidator(_edition_id)]
TemplateName = Annotated[str, BeforeValidator(_template_name)]
ArticleCount = Annotated[int, BeforeValidator(_article_count)]
Locale = Annotated[str, BeforeValidator(_locale)]
Bilingual = Annotated[tuple[str, str], BeforeValidator(_bilingual)]


class Query(YamlModel):
    """Articles matching any of the tags and regions, published on or after `since`, newest first."""

    what: ClassVar[str] = "query"
    shape: ClassVar[str] = "must be a mapping with tags / regions / since / max"

    tags: TextList = ()
    regions: RegionList = ()
    since: Day | None = None
    max: ArticleCount | None = None


class ArticleChoice(YamlModel):
    """`articles:` — explicit slugs in order, then the queries' results. A plain list is the slugs."""

    what: ClassVar[str] = "articles"
    shape: ClassVar[str] = "must be a list of slugs or a mapping with slugs / query"
    shape_hint: ClassVar[str | None] = "e.g. articles: [gdpr-roadmap, modern-leadership]"

    slugs: ArticleSlugs = ()
    query: tuple[Query, ...] = ()

    @classmethod
    def shorthand(cls, value: Any) -> Any:
        return {"slugs": value} if isinstance(value, list) else value

    @field_validator("query", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        if value is None:
            return ()
        return [value] if isinstance(value, dict) else value


class SegmentOverrides(YamlModel):
    """What one segment changes. `region` absent: the segment name read as a region."""

    what: ClassVar[str] = "segment {key!r}"
    shape: ClassVar[str] = "must be a mapping of overrides (or empty)"
    shape_hint: ClassVar[str | None] = "e.g. scotland: {send_at: 2026-12-03T07:30}"

    subject: OneLine | None = None
    preheader: OneLine | None = None
    intro: Text | None = None
    add: ArticleSlugs = ()
    omit: ArticleSlugs = ()
    send_at: SendAt | None = None
    window: Window | None = None
    region: Region | None = None  # null: not regional
    locale: Locale | None = None  # the template's fixed text in one language...
    bilingual: Bilingual | None = None  # ...or in two, the first leading

    @field_validator("subject", mode="before")
    @classmethod
    def _not_blank(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise FieldProblem("must not be empty", "leave the field out to use the edition's")
        return value


class ManifestFile(YamlModel):
    """A whole manifest; see README, "Issue manifests"."""

    what: ClassVar[str] = "the manifest"
    shape_hint: ClassVar[str | None] = "start from issues/2026-12.yaml"
    missing_message: ClassVar[str] = "missing required field {name!r}"

    edition: EditionId
    title: RequiredLine
    subject: RequiredLine
    preheader: RequiredLine
    template: TemplateName = DEFAULT_TEMPLATE
    intro: Text = ""
    featured: ArticleSlug | None = None
    articles: ArticleChoice = ArticleChoice()
    send_at: SendAt | None = None
    window: Window | None = None
    timezone: ZoneName | None = None
    locale: Locale | None = None
    bilingual: Bilingual | None = None
    segments: dict[SegmentName, SegmentOverrides]

    @field_validator("segments", mode="before")
    @classmethod
    def _segments_mapping(cls, value: Any) -> Any:
        if value is None:
            raise FieldProblem("missing required field 'segments'", complete=True)
        if not isinstance(value, dict):
            raise FieldProblem(f"must be a mapping of segment name: overrides, not {shown(value)}",
                               "e.g. segments: {scotland: {send_at: 2026-12-03T07:30}}")
        return value

    @field_validator("intro", mode="before")
    @classmethod
    def _no_intro(cls, value: Any) -> Any:
        return "" if value is None else value


class ManifestPlan(ManifestFile):
    """The same fields, none required and unknown ones ignored: what the cross-field checks read
    from a manifest that has problems elsewhere, so `check` can list every problem at once."""

    model_config = ConfigDict(extra="ignore")

    edition: EditionId = ""
    title: RequiredLine = ""
    subject: RequiredLine = ""
    preheader: RequiredLine = ""
    segments: dict[SegmentName, SegmentOverrides] = {}

