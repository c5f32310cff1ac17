"""Segments: named rule trees over subscribers, loaded from `subscribers/segments.yaml`
(its format: segments_file.py; the rules' SQL: segment_rules.py), and the queries that use them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, not_, or_, select, true
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from newsletter.content import KnownSegments, YamlDocument, load_yaml, validate_yaml
from newsletter.errors import NotFound, Problem, ProblemsError, SegmentError
from newsletter.members.segment_rules import Rule, compile_rule
from newsletter.members.segments_file import RuleNode, SegmentsFile
from newsletter.models import Subscriber, SubscriberStatus, may_be_left_out, utcnow


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


# ---------------------------------------------------------------- reading the file


def parse_segments(doc: YamlDocument, path: Path) -> SegmentSet:
    """The segments of a loaded file; raises SegmentError listing every problem (file:line:col)."""
    checked = validate_yaml(doc, SegmentsFile)
    problems = [*doc.duplicate_keys, *checked.problems]
    data = doc.data if isinstance(doc.data, dict) else {}
    defined = data.get("segments") if isinstance(data.get("segments"), dict) else {}
    listed = data.get("priority") if isinstance(data.get("priority"), list) else []
    seen: set[str] = set()
    for i, name in enumerate(listed):
        if checked.has_problem(("priority", i)):
            continue
        if str(name) in seen:
            problems.append(doc.problem(("priority", i), f"segment {name!r} is listed twice in priority"))
        elif str(name) not in defined:
            problems.append(doc.problem(("priority", i), f"priority names unknown segment {name!r}",
                                        hint="list names defined under 'segments'"))
        seen.add(str(name))
    model = checked.value
    if problems or model is None:
        raise SegmentError(sorted(problems, key=lambda p: (p.line, p.col)))
    segments = {}
    for name, definition in model.segments.items():
        line, col = doc.where(("segments", name), key=True)
        segments[name] = Segment(name, definition.rule.to_rule(), definition.description or "", line, col)
    return SegmentSet(path, segments, tuple(n for n in model.priority if n in segments))


def parse_rule(doc: YamlDocument) -> Rule:
    """One rule on its own (the console's editor, a stored segment), read by the same model as a
    segment's `rule:` in segments.yaml; SegmentError listing every problem (line:col within the text)."""
    checked = validate_yaml(doc, RuleNode)
    problems = [*doc.duplicate_keys, *checked.problems]
    if problems or checked.value is None:
        raise SegmentError(sorted(problems, key=lambda p: (p.line, p.col)) or [doc.problem((), "empty rule")])
    return checked.value.to_rule()


def read_segments_yaml(path: Path) -> YamlDocument:
    """The parsed segments file; a YAML problem is raised as SegmentError (file:line:col)."""
    try:
        return load_yaml(path)
    except SegmentError:
        raise
    except ProblemsError as exc:
        raise SegmentError(exc.problems) from None


def load_segments(path: Path) -> SegmentSet:
    """Load and check a segments file; raises SegmentError listing every problem (file:line:col)."""
    return parse_segments(read_segments_yaml(path), path)


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


def left_out(at: datetime | None = None) -> ColumnElement[bool]:
    """The complement of `eligible` (every member it leaves out at `at`), for a query that looks
    for the few members left out instead of checking each one: the `may_be_left_out` term lets
    the database find them through that partial index, and it holds for every one of them, so the
    rule stays `eligible`'s. (Neither has a NULL case: status is never NULL, and the pause test
    is TRUE or FALSE either way.)"""
    return and_(may_be_left_out(), not_(eligible(true(), at)))


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
