"""Recurring digests: `issues/digests/<name>.yaml` says which feeds to read, when the digest goes
out (APScheduler's cron fields, in the digest's zone), the template and segments, how articles
are chosen, and whether a person approves each one before it goes.

    title: "Local-government IT this week"            # {date}, {count}, {first_title} are filled in
    subject: "This week: {first_title}"
    preheader: "{count} new stories from councils across the UK"
    intro: Optional Markdown above the articles.
    feeds: [issues/digests/feeds/lgit-weekly.xml, https://www.example.org/feed.xml]
    recurrence: {day_of_week: tue, hour: 8, minute: 0}  # when it is sent
    timezone: Europe/London                             # default: the timezone setting
    prepare_before: 1h                                  # assembled this long before (default 1h)
    template: digest
    segments: [scotland, wales, london]                 # names or region aliases
    rules: {max_articles: 6, per_region: true, min_new: 1, lookback_days: 7}
    approval: {policy: review, deadline: 30m}           # or: approval: auto

Every problem is reported as file:line:col, like a manifest's (the models below, through
validate_yaml); segment names are resolved by the caller's resolver (content does not read the
member store).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from apscheduler.triggers.cron import CronTrigger
from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from newsletter.config import Settings
from newsletter.content.field_types import SLUG_RE, RequiredLine, Text, TextList, ZoneName, text_of
from newsletter.content.manifest import KnownSegments, template_problem
from newsletter.content.manifest_model import DEFAULT_TEMPLATE, ArticleCount, TemplateName
from newsletter.content.send_times import zone
from newsletter.content.yaml_source import load_yaml
from newsletter.content.yaml_validation import FieldProblem, YamlModel, shown, validate_yaml
from newsletter.errors import DigestError, NewsletterError, Problem, ProblemsError

DIGESTS_DIR = Path("issues") / "digests"
CRON_FIELDS = ("year", "month", "day", "week", "day_of_week", "hour", "minute")
PLACEHOLDERS = ("date", "count", "first_title")
_DURATION = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m(?:in)?)?\s*$")


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return timedelta(0)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match or not any(match.groups()):
        raise FieldProblem(f"must be a duration such as 30m, 2h or 1d, not {shown(value)}")
    days, hours, minutes = (int(g or 0) for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes)


def _policy(value: Any) -> str:
    if value not in ("auto", "review"):
        raise FieldProblem(f"must be auto or review, not {shown(value)}",
                           "auto: scheduled as soon as it is built; review: a person approves each one")
    return str(value)


def _cron_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip():
        raise FieldProblem(f"must be a cron expression such as 8, '8,12', 'mon-fri' or '*/2', not {shown(value)}")
    return str(value).strip()


def _feed(value: Any) -> str:
    text = text_of(value)
    if not text:
        raise FieldProblem("must not be empty")
    if re.match(r"^[a-z][a-z0-9+.\-]*://", text, re.I) and not re.match(r"^https?://", text, re.I):
        raise FieldProblem(f"feed {text!r} is neither an http(s) URL nor a file",
                           "give an https:// URL or a path in the project, e.g. issues/digests/feeds/x.xml",
                           complete=True)
    return text


def _feeds(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value] if isinstance(value, str) else None
    if not items:
        raise FieldProblem("must list at least one feed (a URL or a file)",
                           "e.g. feeds: [issues/digests/feeds/news.xml]")
    feeds = []
    for i, item in enumerate(items):
        try:
            feeds.append(_feed(item))
        except FieldProblem as exc:
            raise FieldProblem(exc.message, exc.hint, at=(i,) if isinstance(value, list) else (),
                               complete=exc.complete) from None
    return tuple(feeds)


def _placeholders(text: str) -> str:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise FieldProblem(f"has a stray brace ({exc})", "write {{ and }} for literal braces") from None
    unknown = [n for n in names if n not in PLACEHOLDERS]
    if unknown:
        raise FieldProblem(f"has an unknown placeholder {{{unknown[0]}}}",
                           f"use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
    return text


Duration = Annotated[timedelta, BeforeValidator(_duration)]
Policy = Annotated[Literal["auto", "review"], BeforeValidator(_policy)]
CronValue = Annotated[str, BeforeValidator(_cron_value)]
Feeds = Annotated[tuple[str, ...], BeforeValidator(_feeds)]
FilledLine = Annotated[RequiredLine, AfterValidator(_placeholders)]  # one line, with {date}, {count}, ...


class Recurrence(YamlModel):
    """When the digest goes out: APScheduler's CronTrigger fields, in the digest's zone."""

    what: ClassVar[str] = "recurrence"
    shape: ClassVar[str] = "must be a mapping of cron fields"
    shape_hint: ClassVar[str | None] = "e.g. recurrence: {day_of_week: tue, hour: 8, minute: 0}"
    missing_message: ClassVar[str] = "recurrence needs {name!r} (at most one digest an hour)"

    year: CronValue | None = None
    month: CronValue | None = None
    day: CronValue | None = None
    week: CronValue | None = None
    day_of_week: CronValue | None = None
    hour: CronValue
    minute: CronValue = "0"

    @model_validator(mode="after")
    def _valid_for_cron(self) -> Recurrence:
        for name in CRON_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            try:
                CronTrigger(**{name: value}, timezone=UTC)
            except ValueError as exc:
                raise FieldProblem(f"{name}: {exc}", "see APScheduler's cron trigger: e.g. tue, mon-fri, 8, */2",
                                   at=(name,), complete=True) from None
        # An occurrence is named by its date (one per digest per date): at most one a day.
        trigger, probe, days = CronTrigger(**self.fields(), timezone=UTC), datetime(2030, 1, 1, tzinfo=UTC), set()
        for _ in range(8):
            fire = trigger.get_next_fire_time(None, probe)
            if fire is None:
                break
            if fire.date() in days:
                raise FieldProblem("recurrence fires more than once a day; a digest has at most one occurrence a day",
                                   "give one hour and one minute, e.g. {day_of_week: tue, hour: 8, minute: 0}",
                                   at=("hour",), complete=True)
            days.add(fire.date())
            probe = fire + timedelta(seconds=1)
        return self

    def fields(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in CRON_FIELDS if getattr(self, name) is not None}


class Rules(YamlModel):
    what: ClassVar[str] = "rules"

    max_articles: ArticleCount = 6  # per segment
    per_region: bool = True  # an article with regions goes only to its regions' segments
    min_new: int = Field(default=1, ge=0)  # fewer new articles than this: the occurrence is skipped
    lookback_days: int = Field(default=7, ge=1)  # the first digest takes articles this many days back


class Approval(YamlModel):
    what: ClassVar[str] = "approval"
    shape: ClassVar[str] = "must be auto, or a mapping {policy: review, deadline: 30m}"

    policy: Policy
    deadline: Duration = timedelta(0)  # review: approvals accepted until this long after the send time

    @classmethod
    def shorthand(cls, value: Any) -> Any:
        return {"policy": value} if isinstance(value, str) else value


class DigestFile(YamlModel):
    what: ClassVar[str] = "the digest"
    shape_hint: ClassVar[str | None] = "start from issues/digests/lgit-weekly.yaml"
    missing_message: ClassVar[str] = "missing required field {name!r}"

    title: FilledLine
    subject: FilledLine
    preheader: FilledLine
    intro: Text = ""
    feeds: Feeds
    recurrence: Recurrence
    timezone: ZoneName | None = None
    prepare_before: Duration = timedelta(hours=1)
    template: TemplateName = DEFAULT_TEMPLATE
    segments: TextList
    rules: Rules = Rules()
    approval: Approval = Approval(policy="auto")


@dataclass(frozen=True)
class Digest:
    """A checked digest definition; times are computed with APScheduler's CronTrigger."""

    name: str
    path: Path
    title: str
    subject: str
    preheader: str
    intro: str
    feeds: tuple[str, ...]
    recurrence: dict[str, str]
    zone: str
    prepare_before: timedelta
    template: str
    segments: tuple[str, ...]
    max_articles: int
    per_region: bool
    min_new: int
    lookback: timedelta
    policy: str  # "auto" | "review"
    deadline: timedelta

    def trigger(self) -> CronTrigger:
        return CronTrigger(**self.recurrence, timezone=zone(self.zone))

    def send_times(self, after: datetime, until: datetime, *, limit: int = 60) -> list[datetime]:
        """The send times (UTC) strictly after `after` and at or before `until`, oldest first."""
        trigger, found = self.trigger(), []
        probe = after + timedelta(seconds=1)
        while len(found) < limit:
            fire = trigger.get_next_fire_time(None, probe)
            if fire is None or fire > until:
                break
            found.append(fire.astimezone(UTC))
            probe = fire + timedelta(seconds=1)
        return found

    def next_send(self, now: datetime) -> datetime | None:
        """The first send time after `now` (UTC)."""
        fire = self.trigger().get_next_fire_time(None, now + timedelta(seconds=1))
        return fire.astimezone(UTC) if fire else None

    def occurs_on(self, send_at: datetime) -> date:
        """An occurrence's date: the local date of its send time."""
        return send_at.astimezone(zone(self.zone)).date()

    def edition_id(self, occurs_on: date) -> str:
        return f"{self.name}-{occurs_on.isoformat()}"

    @property
    def recurrence_text(self) -> str:
        """"every Tuesday at 08:00 (Europe/London)" for the usual weekly or daily pattern; the cron
        fields as written for anything else."""
        when = _plain_recurrence(self.recurrence)
        if when is None:
            when = ", ".join(f"{k} {v}" for k, v in self.recurrence.items())
        return f"{when} ({self.zone})"


_DAY_NAMES = {"mon": "Monday", "tue": "Tuesday", "wed": "Wednesday", "thu": "Thursday", "fri": "Friday",
              "sat": "Saturday", "sun": "Sunday"}


def _plain_recurrence(fields: Mapping[str, object]) -> str | None:
    """Words for {day_of_week: <days>, hour: H, minute: M}, or None when the fields say more than that."""
    hour, minute = str(fields.get("hour", "")).strip(), str(fields.get("minute", "")).strip()
    if set(fields) - {"day_of_week", "hour", "minute"} or not (hour.isdigit() and minute.isdigit()):
        return None
    at = f"at {int(hour):02d}:{int(minute):02d}"
    days = str(fields.get("day_of_week", "")).strip().lower()
    if not days or days == "*":
        return f"every day {at}"
    if days == "mon-fri":
        return f"every weekday {at}"
    names = [_DAY_NAMES.get(part.strip(), "") for part in days.split(",")]
    if not all(names):
        return None
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
    return f"every {listed} {at}"


SegmentResolver = Callable[[str, Sequence[str]], str]


def digest_paths(settings: Settings) -> list[Path]:
    """Every digest definition of the project (issues/digests/*.yaml), by name."""
    folder = settings.project_dir / DIGESTS_DIR
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []


def _shown(path: Path, settings: Settings) -> str:
    try:
        return path.resolve().relative_to(settings.project_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


def analyse_digest(path: Path, settings: Settings, segments: KnownSegments | None = None,
                   resolve: SegmentResolver | None = None) -> tuple[Digest | None, list[Problem]]:
    """(digest or None, every problem at file:line:col). `segments`: the known segment names;
    `resolve(name, known)` the caller's rule for names as people type them (raising an error
    with a message and hint when it names none)."""
    shown_path = _shown(path, settings)
    try:
        doc = load_yaml(path, display_name=shown_path)
    except ProblemsError as exc:
        return None, list(exc.problems)
    checked = validate_yaml(doc, DigestFile)
    problems = [*doc.duplicate_keys, *checked.problems]
    name = path.stem
    if not SLUG_RE.match(name):
        problems.append(Problem(shown_path, 1, 1, f"digest name {name!r} (the file name) is not a slug",
                                "use lower-case letters, digits and hyphens, e.g. lgit-weekly.yaml"))
    model = checked.value
    if model is None:
        return None, sorted(problems, key=lambda p: (p.line, p.col))
    bad_template = template_problem(settings.project_dir, model.template)
    if bad_template:
        problems.append(doc.problem(("template",), *bad_template))
    chosen: list[str] = []
    known = segments.names if segments is not None else None
    if segments is not None:
        problems.extend(segments.problems)
    for i, given in enumerate(model.segments):
        if known is None or resolve is None:
            chosen.append(given)
            continue
        try:
            name_found = resolve(given, known)
        except NewsletterError as exc:
            problems.append(doc.problem(("segments", i), exc.message, hint=exc.hint))
            continue
        if name_found in chosen:
            problems.append(doc.problem(("segments", i), f"segment {name_found!r} is listed twice",
                                        "list each segment once"))
            continue
        chosen.append(name_found)
    if not model.segments:
        problems.append(doc.problem(("segments",), "segments must list at least one segment",
                                    "e.g. segments: [scotland, wales, london]"))
    if model.approval.policy == "auto" and model.approval.deadline:
        problems.append(doc.problem(("approval", "deadline"), "a deadline applies to the review policy only",
                                    "remove it, or use policy: review", severity="warning"))
    problems.sort(key=lambda p: (p.line, p.col))
    if any(p.severity == "error" for p in problems):
        return None, problems
    rules = model.rules
    digest = Digest(
        name=name, path=path.resolve(), title=model.title, subject=model.subject, preheader=model.preheader,
        intro=model.intro, feeds=model.feeds, recurrence=model.recurrence.fields(),
        zone=model.timezone or settings.timezone, prepare_before=model.prepare_before, template=model.template,
        segments=tuple(chosen), max_articles=rules.max_articles, per_region=rules.per_region,
        min_new=rules.min_new, lookback=timedelta(days=rules.lookback_days), policy=model.approval.policy,
        deadline=model.approval.deadline,
    )
    return digest, problems


def load_digest(path: Path, settings: Settings, segments: KnownSegments | None = None,
                resolve: SegmentResolver | None = None) -> Digest:
    """The checked digest; DigestError listing every problem (file:line:col)."""
    digest, problems = analyse_digest(path, settings, segments, resolve)
    if digest is None:
        errors = sum(p.severity == "error" for p in problems)
        raise DigestError(problems, f"{_shown(path, settings)}: {errors} problem{'s' if errors != 1 else ''} "
                                    "in the digest definition")
    return digest
