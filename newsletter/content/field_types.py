"""Field types shared by the YAML files people write: text, lists of text, regions, dates, segment
names, time zones, send times and windows. Each refuses a wrong value with a FieldProblem that
names it plainly ("tags must be a list of text, not 5").
"""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import lru_cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BeforeValidator, PlainValidator, ValidationInfo

from newsletter.content.send_times import SendWindow, read_send_time
from newsletter.content.yaml_validation import FieldProblem, shown, suggest
from newsletter.errors import ScheduleError
from newsletter.regions import REGION_SLUGS, normalise_region

SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SEGMENT_NAME_MAX = 64
QUOTE_HINT = "put it in quotes to keep it as text"


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float | date) and not isinstance(value, bool)


def text_of(value: Any) -> str:
    """A scalar as text (numbers and dates as written by YAML); anything else is refused."""
    if isinstance(value, str):
        return value.strip()
    if _is_scalar(value):
        return str(value)
    raise FieldProblem(f"must be text, not {shown(value)}", QUOTE_HINT if isinstance(value, bool) else None)


def _one_line(value: Any) -> str:
    text = text_of(value)
    if "\n" in text or "\r" in text:
        # these end up in mail headers (or the inbox line), where a line break is an injection
        raise FieldProblem("must be a single line", "remove the line break")
    return text


def _required_line(value: Any, info: ValidationInfo) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise FieldProblem(f"missing required field {info.field_name!r}", complete=True)
    return _one_line(value)


def _items(value: Any, what: str, hint: str | None = None) -> list[Any]:
    """A list, or one text standing for a list of one."""
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        return [value]
    raise FieldProblem(f"must be {what}, not {shown(value)}", hint)


def _text_list(value: Any) -> tuple[str, ...]:
    items = _items(value, "a list of text", "e.g. [gdpr, data-protection]")
    texts = []
    for i, item in enumerate(items):
        if not _is_scalar(item):
            raise FieldProblem(f"must be a list of text; item {i + 1} is {shown(item)}", at=(i,))
        texts.append(text_of(item))
    return tuple(texts)


def region_slug(value: Any) -> str:
    """The canonical slug of a region name or alias."""
    if not _is_scalar(value):
        raise FieldProblem(f"must be a region name, not {shown(value)}", f"use one of: {', '.join(REGION_SLUGS)}")
    slug = normalise_region(str(value))
    if slug is None:
        raise FieldProblem(f"unknown region {str(value)!r}",
                           suggest(str(value), REGION_SLUGS) or f"use one of: {', '.join(REGION_SLUGS)}",
                           complete=True)
    return slug


def _region_list(value: Any) -> tuple[str, ...]:
    items = _items(value, "a region or a list of regions", f"use: {', '.join(REGION_SLUGS)}")
    slugs: list[str] = []
    for i, item in enumerate(items):
        try:
            slug = region_slug(item)
        except FieldProblem as exc:
            raise FieldProblem(exc.message, exc.hint, at=(i,) if isinstance(value, list) else (),
                               complete=exc.complete) from None
        if slug not in slugs:
            slugs.append(slug)
    return tuple(slugs)


def as_date(value: object) -> date:
    """A date from a YAML date, datetime or ISO text; ValueError for anything else."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value).strip())


def _day(value: Any) -> date:
    try:
        return as_date(value)
    except ValueError:
        raise FieldProblem(f"bad date {shown(value)}", "use YYYY-MM-DD, e.g. 2026-11-01", complete=True) from None


def _article_slug(value: Any) -> str:
    if not _is_scalar(value):
        raise FieldProblem(f"article slug must be text, not {shown(value)}", "write the slug, e.g. gdpr-roadmap",
                           complete=True)
    return text_of(value)


def _article_slugs(value: Any) -> list[Any]:
    return _items(value, "a list of article slugs", "e.g. [gdpr-roadmap, modern-leadership]")


def _segment_name(value: Any) -> str:
    name = value if isinstance(value, str) else shown(value)
    if not isinstance(value, str) or not SLUG_RE.match(value) or len(value) > SEGMENT_NAME_MAX:
        raise FieldProblem(
            f"segment name {name!r} is not a slug",
            f"use lower-case letters, digits and hyphens (at most {SEGMENT_NAME_MAX}), e.g. north-east",
            complete=True)
    return value


@lru_cache(maxsize=1)
def _zone_names() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


def _zone_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FieldProblem(f"must be an IANA time zone name such as Europe/London, not {shown(value)}")
    name = value.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise FieldProblem(f"unknown time zone {value!r}",
                           suggest(name, _zone_names()) or "use an IANA zone name such as Europe/London",
                           complete=True) from None
    return name


def _window(value: Any) -> SendWindow:
    if isinstance(value, SendWindow):
        return value
    try:
        return SendWindow.parse(text_of(value))
    except ScheduleError as exc:
        raise FieldProblem(exc.message, exc.hint, complete=True) from None


MANIFEST_TIME_HINT = "use ISO 8601, e.g. 2026-12-03T08:00 (local time) or 2026-12-03T08:00:00+00:00"


def _send_at(value: Any) -> datetime:
    if not isinstance(value, str | date):
        raise FieldProblem(f"bad send_at time {shown(value)}", MANIFEST_TIME_HINT, complete=True)
    try:
        return read_send_time(value, label="send_at", hint=MANIFEST_TIME_HINT)
    except ScheduleError as exc:
        raise FieldProblem(exc.message, exc.hint, complete=True) from None


Text = Annotated[str, BeforeValidator(text_of)]
OneLine = Annotated[str, BeforeValidator(_one_line)]
RequiredLine = Annotated[str, BeforeValidator(_required_line)]
TextList = Annotated[tuple[str, ...], BeforeValidator(_text_list)]
Region = Annotated[str, BeforeValidator(region_slug)]
RegionList = Annotated[tuple[str, ...], BeforeValidator(_region_list)]
Day = Annotated[date, BeforeValidator(_day)]
ArticleSlug = Annotated[str, BeforeValidator(_article_slug)]
ArticleSlugs = Annotated[tuple[ArticleSlug, ...], BeforeValidator(_article_slugs)]
SegmentName = Annotated[str, BeforeValidator(_segment_name)]
ZoneName = Annotated[str, BeforeValidator(_zone_name)]
Window = Annotated[SendWindow, PlainValidator(_window)]
SendAt = Annotated[datetime, PlainValidator(_send_at)]  # naive = local wall time in the manifest's zone
