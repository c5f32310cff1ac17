"""Segments: named rule trees over subscribers, loaded from `subscribers/segments.yaml`.

    priority: [scotland, wales, ...]      # first match wins: one variant per member
    segments:
      london:
        description: Members in London
        rule: {region: london}
      associates:
        rule:
          all:
            - member_type: associate
            - not: {attributes: {newsletter: "off"}}

Rule nodes (a mapping with several keys means `all` of them):
  all: [rule, ...]   any: [rule, ...]   not: rule
  region: slug-or-alias | [..]          member_type: value | [..]
  organisation: name | [..]  (case-insensitive)
  attributes: {key: value | [..], ...}  (JSON attribute equals / is one of; compared as text)
  joined_before: YYYY-MM-DD  (joined before that day, UTC)
  joined_after: YYYY-MM-DD   (joined after that day, UTC)

Every rule compiles to a SQLAlchemy boolean expression (no SQL text from users), so a segment is
one SQL query on SQLite and PostgreSQL alike. Clauses are two-valued (never NULL), so `not` and the
priority exclusions behave as a reader expects for members with blank fields.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, false, func, not_, or_, select, true
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from newsletter.content import KnownSegments, PathKey, YamlDocument, load_yaml
from newsletter.errors import NotFound, Problem, ProblemsError, SegmentError
from newsletter.models import Subscriber, SubscriberStatus, utcnow
from newsletter.regions import REGION_SLUGS, normalise_region

LEAF_KEYS = ("region", "member_type", "organisation", "attributes", "joined_before", "joined_after")
TREE_KEYS = ("all", "any", "not")
ALL_KEYS = TREE_KEYS + LEAF_KEYS


@dataclass(frozen=True)
class Rule:
    """One node of a rule tree. `op` is a tree key or a leaf key; leaves carry `values`."""

    op: str
    children: tuple[Rule, ...] = ()
    values: tuple[Any, ...] = ()
    attribute: str | None = None  # for op == "attributes"

    def summary(self) -> str:
        if self.op in ("all", "any"):
            joiner = " and " if self.op == "all" else " or "
            parts = [c.summary() for c in self.children]
            text = joiner.join(f"({p})" if " and " in p or " or " in p else p for p in parts)
            return text or ("everyone" if self.op == "all" else "no one")
        if self.op == "not":
            return f"not ({self.children[0].summary()})"
        name = f"attributes.{self.attribute}" if self.op == "attributes" else self.op
        if self.op in ("joined_before", "joined_after"):
            return f"{self.op} {self.values[0]}"
        shown = ", ".join(str(v) for v in self.values)
        return f"{name} = {shown}" if len(self.values) == 1 else f"{name} in [{shown}]"


@dataclass(frozen=True)
class Segment:
    name: str
    rule: Rule
    description: str = ""
    line: int = 1
    col: int = 1


@dataclass(frozen=True)
class SegmentSet:
    """The segments of one file, in priority order (first match wins)."""

    path: Path
    segments: dict[str, Segment]
    priority: tuple[str, ...]
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        ordered = list(self.priority) + [n for n in self.segments if n not in self.priority]
        self.names[:] = ordered

    def __contains__(self, name: object) -> bool:
        return name in self.segments

    def get(self, name: str) -> Segment:
        try:
            return self.segments[name]
        except KeyError:

            known = ", ".join(self.names)
            raise NotFound(f"no segment named {name!r} in {self.path}", hint=f"known: {known}") from None

    def location(self, name: str) -> tuple[int, int]:
        seg = self.get(name)
        return seg.line, seg.col

    def summary(self, name: str) -> str:
        return self.get(name).rule.summary()

    def rule_clause(self, name: str) -> ColumnElement[bool]:
        """Members matching the segment's rule (any status)."""
        return compile_rule(self.get(name).rule)

    def assigned_clause(self, name: str, among: Iterable[str] | None = None) -> ColumnElement[bool]:
        """Members this segment wins: its rule AND NOT the rule of any higher-priority segment.

        Without `among`, only the segments listed in `priority:` compete (a segment outside the
        list stands alone). With `among` (e.g. the segments of one edition), every segment in it
        that comes earlier in `names` competes, so each member lands in at most one of them."""
        self.get(name)
        if among is None:
            competitors = list(self.priority[: self.priority.index(name)]) if name in self.priority else []
        else:
            wanted = set(among)
            competitors = [n for n in self.names[: self.names.index(name)] if n in wanted]
        clause = self.rule_clause(name)
        if not competitors:
            return clause
        return and_(clause, *(not_(self.rule_clause(n)) for n in competitors))


# ---------------------------------------------------------------- compiling to SQL


def _eq_any(column: ColumnElement[Any], values: Sequence[Any]) -> ColumnElement[bool]:
    """Two-valued `column = v` / `column IN (...)`: false (not NULL) when the column is NULL."""
    test = column == values[0] if len(values) == 1 else column.in_(list(values))
    return and_(column.is_not(None), test)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def compile_rule(rule: Rule) -> ColumnElement[bool]:
    op = rule.op
    if op == "all":
        return and_(true(), *(compile_rule(c) for c in rule.children))
    if op == "any":
        return or_(false(), *(compile_rule(c) for c in rule.children))
    if op == "not":
        return not_(compile_rule(rule.children[0]))
    if op == "region":
        return _eq_any(Subscriber.region, rule.values)
    if op == "member_type":
        return _eq_any(Subscriber.member_type, rule.values)
    if op == "organisation":
        return _eq_any(func.lower(Subscriber.organisation), [str(v).lower() for v in rule.values])
    if op == "attributes":
        # Attributes are stored as text (imports, --attr), so rules compare text on both backends.
        return _eq_any(Subscriber.attributes[rule.attribute].as_string(), rule.values)
    if op == "joined_before":
        return Subscriber.joined_at < _day_start(rule.values[0])
    if op == "joined_after":
        return Subscriber.joined_at >= _day_start(rule.values[0] + timedelta(days=1))
    raise ValueError(f"unknown rule op {op!r}")  # parse_rule never produces one


# ---------------------------------------------------------------- parsing


class _Parser:
    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.problems: list[Problem] = []

    def error(self, path: PathKey, message: str, hint: str | None = None, *, key: bool = False) -> None:
        self.problems.append(self.doc.problem(path, message, hint=hint, key=key))

    def rule(self, node: Any, path: PathKey) -> Rule | None:
        if not isinstance(node, dict) or not node:
            self.error(path, "a rule must be a mapping such as {region: london}",
                       f"use one of: {', '.join(ALL_KEYS)}")
            return None
        parts: list[Rule] = []
        for key, value in node.items():
            sub = self.node(str(key), value, (*path, key))
            if sub is not None:
                parts.append(sub)
        if len(parts) != len(node):
            return None
        return parts[0] if len(parts) == 1 else Rule("all", tuple(parts))

    def node(self, key: str, value: Any, path: PathKey) -> Rule | None:
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                self.error(path, f"'{key}' needs a non-empty list of rules")
                return None
            children = [self.rule(item, (*path, i)) for i, item in enumerate(value)]
            if any(c is None for c in children):
                return None
            return Rule(key, tuple(c for c in children if c is not None))
        if key == "not":
            child = self.rule(value, path)
            return Rule("not", (child,)) if child is not None else None
        if key == "region":
            return self.region(value, path)
        if key in ("member_type", "organisation"):
            values = self.scalars(value, path, key, kinds=(str,))
            if key == "member_type":  # stored lower-cased (see subscribers.member_type_value)
                values = [" ".join(str(v).split()).lower() for v in values]
            return Rule(key, values=tuple(str(v).strip() for v in values)) if values else None
        if key == "attributes":
            return self.attributes(value, path)
        if key in ("joined_before", "joined_after"):
            day = self.day(value, path, key)
            return Rule(key, values=(day,)) if day else None
        self.error(path, f"unknown rule key {key!r}", f"use one of: {', '.join(ALL_KEYS)}", key=True)
        return None

    def scalars(self, value: Any, path: PathKey, key: str, kinds: tuple[type, ...]) -> list[Any]:
        items = value if isinstance(value, list) else [value]
        if not items:
            self.error(path, f"'{key}' needs a value or a non-empty list of values")
            return []
        ok: list[Any] = []
        for i, item in enumerate(items):
            where = (*path, i) if isinstance(value, list) else path
            if isinstance(item, kinds) and not isinstance(item, dict | list) and str(item).strip():
                ok.append(item)
            else:
                self.error(where, f"'{key}' values must be plain text, got {item!r}")
        return ok if len(ok) == len(items) else []

    def region(self, value: Any, path: PathKey) -> Rule | None:
        before = len(self.problems)
        values = self.scalars(value, path, "region", kinds=(str,))
        slugs: list[str] = []
        for i, text in enumerate(values):
            slug = normalise_region(text)
            if slug is None:
                where = (*path, i) if isinstance(value, list) else path
                self.error(where, f"unknown region {text!r}", f"use one of: {', '.join(REGION_SLUGS)}")
            elif slug not in slugs:
                slugs.append(slug)
        return Rule("region", values=tuple(slugs)) if slugs and len(self.problems) == before else None

    def attributes(self, value: Any, path: PathKey) -> Rule | None:
        if not isinstance(value, dict) or not value:
            self.error(path, "'attributes' needs a mapping such as {committee: digital}")
            return None
        parts: list[Rule] = []
        for name, wanted in value.items():
            sub_path = (*path, name)
            values = self.scalars(wanted, sub_path, f"attributes.{name}", kinds=(str, int, float, bool))
            if not values:
                continue
            texts = tuple(("true" if v else "false") if isinstance(v, bool) else str(v).strip()
                          for v in values)
            parts.append(Rule("attributes", values=texts, attribute=str(name)))
        if len(parts) != len(value):
            return None
        return parts[0] if len(parts) == 1 else Rule("all", tuple(parts))

    def day(self, value: Any, path: PathKey, key: str) -> date | None:
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value).strip())
        except ValueError:
            self.error(path, f"'{key}' needs a date like 2024-01-31, got {value!r}")
            return None


def parse_segments(doc: YamlDocument, path: Path) -> SegmentSet:
    parser = _Parser(doc)
    parser.problems.extend(doc.duplicate_keys)
    data = doc.data
    segments: dict[str, Segment] = {}
    priority: list[str] = []
    if not isinstance(data, dict):
        parser.error((), "segments file must be a mapping with 'segments:' (and optional 'priority:')")
        raise SegmentError(parser.problems)
    for key in data:
        if key not in ("segments", "priority"):
            parser.error((key,), f"unknown top-level key {key!r}", "use 'segments' and 'priority'", key=True)
    raw = data.get("segments")
    if not isinstance(raw, dict) or not raw:
        parser.error(("segments",), "'segments' must be a mapping of segment names to definitions")
        raw = {}
    for name, body in raw.items():
        seg_path: PathKey = ("segments", name)
        line, col = doc.where(seg_path, key=True)
        if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
            parser.error(seg_path, f"segment name {name!r} must be one word (e.g. 'north-east')", key=True)
            continue
        if not isinstance(body, dict) or "rule" not in body:
            parser.error(seg_path, f"segment {name!r} needs a 'rule:'")
            continue
        for extra in body:
            if extra not in ("rule", "description"):
                parser.error((*seg_path, extra), f"unknown key {extra!r} in segment {name!r}",
                             "use 'rule' and 'description'", key=True)
        rule = parser.rule(body["rule"], (*seg_path, "rule"))
        if rule is not None:
            segments[name] = Segment(name, rule, str(body.get("description") or ""), line, col)
    raw_priority = data.get("priority", [])
    if not isinstance(raw_priority, list):
        parser.error(("priority",), "'priority' must be a list of segment names")
        raw_priority = []
    for i, name in enumerate(raw_priority):
        if name in priority:
            parser.error(("priority", i), f"segment {name!r} is listed twice in priority")
        elif not isinstance(name, str) or name not in raw:
            parser.error(("priority", i), f"priority names unknown segment {name!r}",
                         "list names defined under 'segments'")
        else:
            priority.append(name)
    if parser.problems:
        raise SegmentError(parser.problems)
    return SegmentSet(path, segments, tuple(n for n in priority if n in segments))


def load_segments(path: Path) -> SegmentSet:
    """Load and check a segments file; raises SegmentError listing every problem (file:line:col)."""
    try:
        doc = load_yaml(path)
    except SegmentError:
        raise
    except ProblemsError as exc:
        raise SegmentError(exc.problems) from None
    return parse_segments(doc, path)


def check_segments(path: Path) -> list[Problem]:
    """[] when the file is clean, else its problems."""
    try:
        load_segments(path)
    except SegmentError as exc:
        return exc.problems
    return []


# ---------------------------------------------------------------- querying


def default_path(project_dir: Path) -> Path:
    return project_dir / "subscribers" / "segments.yaml"


def defined_segments(project_dir: Path) -> KnownSegments:
    """The segment names a manifest may use: none to check against when there is no segments
    file; the file's own problems when it cannot be loaded."""
    path = default_path(project_dir)
    if not path.is_file():
        return KnownSegments(None)
    try:
        return KnownSegments(tuple(load_segments(path).names))
    except ProblemsError as exc:
        return KnownSegments(None, tuple(exc.problems))


def eligible(clause: ColumnElement[bool], at: datetime | None = None) -> ColumnElement[bool]:
    """The one rule for who may be sent anything: members matching `clause` who are active, still
    have an address and are not paused at `at` (default now; a pause ends at `paused_until`). Dry
    runs, freezes, each request at sending time, counts, exports and schedules all use it."""
    moment = at or utcnow()
    return and_(clause, Subscriber.status == SubscriberStatus.ACTIVE.value, Subscriber.email.is_not(None),
                or_(Subscriber.paused_until.is_(None), Subscriber.paused_until <= moment))


def paused_clause(at: datetime | None = None) -> ColumnElement[bool]:
    """Active members whose pause has not ended at `at` (counted as excluded, reason "paused")."""
    moment = at or utcnow()
    return and_(Subscriber.status == SubscriberStatus.ACTIVE.value, Subscriber.paused_until > moment)


def audience_clause(segments: SegmentSet, name: str, among: Iterable[str] | None = None) -> ColumnElement[bool]:
    """Who would receive this segment's variant: eligible members the segment wins (against the
    segments in `among`, e.g. an edition's, or else the `priority:` list)."""
    return eligible(segments.assigned_clause(name, among))


def count_members(session: Session, segments: SegmentSet, name: str) -> int:
    """One COUNT(*) query; nothing is loaded into Python."""
    query = select(func.count()).select_from(Subscriber).where(audience_clause(segments, name))
    return int(session.scalar(query) or 0)


def segment_counts(session: Session, segments: SegmentSet) -> list[dict[str, Any]]:
    return [
        {"name": n, "rule": segments.summary(n), "description": segments.get(n).description,
         "priority": segments.priority.index(n) + 1 if n in segments.priority else None,
         "count": count_members(session, segments, n)}
        for n in segments.names
    ]


def segment_members(session: Session, segments: SegmentSet, name: str,
                    limit: int | None = 50) -> list[Subscriber]:
    query = select(Subscriber).where(audience_clause(segments, name)).order_by(Subscriber.email_key)
    return list(session.scalars(query.limit(limit) if limit is not None else query))
