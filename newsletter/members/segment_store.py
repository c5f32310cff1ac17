"""Segments live in the database (`segment_definitions`, every version in `segment_versions`);
`subscribers/segments.yaml` is their seed and their import/export format.

    load_segment_set(db, project_dir)      the one loader: every reader (send, dry run, coverage,
                                           schedule, counts, export, the console) uses it
    apply_segments(db, path, actor=…)      `segments apply FILE`: the file's rules become the stored ones
    export_segments(db, project_dir)       `segments export`: YAML that `apply` reads back to the same rules
    save_segment(db, name, rule_text, …)   the console's editor (refuses a rule that does not compile)

When the table is empty (a new database), the first reader seeds it from segments.yaml. A rule is
stored as YAML text in the segments.yaml rule language and compiled by the same parser, so the
file, the console and the database cannot disagree on what a rule means.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.content import KnownSegments, parse_yaml
from newsletter.db import Database
from newsletter.errors import InputError, NotFound, Problem, ProblemsError, SegmentError
from newsletter.members.segments import (
    Segment,
    SegmentSet,
    compile_rule,
    default_path,
    eligible,
    parse_rule,
    parse_segments,
    read_segments_yaml,
)
from newsletter.models import SegmentDefinition, SegmentVersion, Subscriber, utcnow

STORED = Path("segments (database)")  # how a stored set names itself in messages
NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")
MAX_RULE = 20_000


def rule_text(data: Any) -> str:
    """A rule's data (as read from YAML) as the block-style YAML text it is stored as; it reads
    back to the same data (dates stay dates)."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100).strip()


def compile_rule_text(text: str, name: str = "rule") -> Segment:
    """A rule written in the segments.yaml rule language, checked and compiled; SegmentError
    naming line:col within the text and what is wrong."""
    if len(text) > MAX_RULE:
        raise SegmentError([Problem(f"segment {name}", 1, 1, f"the rule is longer than {MAX_RULE:,} characters")])
    try:
        doc = parse_yaml(text, f"segment {name}")
    except SegmentError:
        raise
    except ProblemsError as exc:
        raise SegmentError(exc.problems) from None
    return Segment(name, parse_rule(doc))


@dataclass(frozen=True)
class StoredSegment:
    name: str
    rule: str
    description: str
    priority: int | None
    version: int
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True)
class SegmentChange:
    name: str
    version: int
    action: str
    rule: str | None
    description: str | None
    priority: int | None
    actor: str
    at: datetime


@dataclass(frozen=True)
class ApplyResult:
    created: tuple[str, ...]
    updated: tuple[str, ...]
    deleted: tuple[str, ...]
    unchanged: tuple[str, ...]


def _ordered(session: Session) -> list[SegmentDefinition]:
    return list(session.scalars(select(SegmentDefinition).order_by(SegmentDefinition.ordinal, SegmentDefinition.name)))


def _set_of(rows: Sequence[SegmentDefinition]) -> SegmentSet:
    segments: dict[str, Segment] = {}
    problems: list[Problem] = []
    for row in rows:
        try:
            compiled = compile_rule_text(row.rule, row.name)
        except SegmentError as exc:  # only a rule stored by an older version could fail here
            problems += exc.problems
            continue
        segments[row.name] = Segment(row.name, compiled.rule, row.description or "")
    if problems:
        raise SegmentError(problems)
    priority = tuple(r.name for r in sorted((r for r in rows if r.priority is not None), key=lambda r: r.priority or 0))
    return SegmentSet(STORED, segments, priority)


def _file_segments(path: Path) -> tuple[SegmentSet, dict[str, tuple[Any, str]]]:
    """The file's segments, checked, and each one's raw rule data and description."""
    doc = read_segments_yaml(path)
    checked = parse_segments(doc, path)
    raw = doc.data["segments"] if isinstance(doc.data, dict) else {}
    return checked, {n: (raw[n]["rule"], checked.get(n).description) for n in checked.names}


def _write(session: Session, checked: SegmentSet, raw: dict[str, tuple[Any, str]], actor: str,
           *, seeding: bool) -> ApplyResult:
    existing = {r.name: r for r in _ordered(session)}
    created, updated, unchanged = [], [], []
    now = utcnow()
    order = list(raw)  # the file's order (priority is separate)
    for ordinal, name in enumerate(order):
        rule_data, description = raw[name]
        text = rule_text(rule_data)
        priority = checked.priority.index(name) + 1 if name in checked.priority else None
        row = existing.get(name)
        if row is None:
            row = SegmentDefinition(name=name, rule=text, description=description, priority=priority, ordinal=ordinal,
                                    version=1, updated_at=now, updated_by=actor)
            session.add(row)
            created.append(name)
        elif _same(row, checked.get(name), description, priority):
            row.ordinal = ordinal  # the same rule (perhaps written differently): only its place may move
            unchanged.append(name)
            continue
        else:
            row.rule, row.description, row.priority, row.ordinal = text, description, priority, ordinal
            row.version += 1
            row.updated_at, row.updated_by = now, actor
            updated.append(name)
        session.add(SegmentVersion(name=name, version=row.version, action="seed" if seeding else (
            "create" if name in created else "update"), rule=text, description=description, priority=priority,
            actor=actor, at=now))
    deleted = [n for n in existing if n not in raw]
    for name in deleted:
        row = existing[name]
        session.add(SegmentVersion(name=name, version=row.version + 1, action="delete", rule=None, description=None,
                                   priority=None, actor=actor, at=now))
        session.delete(row)
    return ApplyResult(tuple(created), tuple(updated), tuple(deleted), tuple(unchanged))


def _same(row: SegmentDefinition, segment: Segment, description: str, priority: int | None) -> bool:
    """True when the stored segment means the same as `segment` (rules compared compiled, so a rule
    written in another style, as the console keeps it, is not a change)."""
    if (row.description, row.priority) != (description, priority):
        return False
    try:
        return compile_rule_text(row.rule, row.name).rule == segment.rule
    except SegmentError:
        return False


def _seed(db: Database, project_dir: Path) -> None:
    path = default_path(project_dir)
    if not path.is_file():
        return
    checked, raw = _file_segments(path)
    try:
        with db.write_session() as session:
            if session.scalar(select(func.count()).select_from(SegmentDefinition)):
                return  # another process seeded it meanwhile
            _write(session, checked, raw, f"seed:{path.name}", seeding=True)
    except IntegrityError:  # PostgreSQL: another process seeded the same names first
        return


def load_segment_set(db: Database, project_dir: Path) -> SegmentSet:
    """The segments, from the database (seeded from subscribers/segments.yaml while the table is
    empty). NotFound when there are none anywhere."""
    with db.session() as session:
        rows = _ordered(session)
    if not rows:
        _seed(db, project_dir)
        with db.session() as session:
            rows = _ordered(session)
    if not rows:
        raise NotFound("no segments are defined", hint="write subscribers/segments.yaml, or run "
                                                       "`newsletter segments apply FILE`")
    return _set_of(rows)


def stored_defined_segments(db: Database, project_dir: Path) -> KnownSegments:
    """The segment names a manifest may use, from the stored segments (none to check against when
    there are none yet)."""
    try:
        return KnownSegments(tuple(load_segment_set(db, project_dir).names))
    except NotFound:
        return KnownSegments(None)
    except ProblemsError as exc:
        return KnownSegments(None, tuple(exc.problems))


def apply_segments(db: Database, path: Path, *, actor: str) -> ApplyResult:
    """Make the file's segments the stored ones (created, changed, deleted, priority and order),
    each change a new version naming `actor`. Nothing changes when the file has a problem."""
    checked, raw = _file_segments(path)
    with db.write_session() as session:
        return _write(session, checked, raw, actor, seeding=False)


def export_segments(db: Database, project_dir: Path) -> str:
    """The stored segments as a segments.yaml (priority list, then each segment in order)."""
    segment_set = load_segment_set(db, project_dir)
    with db.session() as session:
        rows = {r.name: r for r in _ordered(session)}
    body: dict[str, Any] = {}
    if segment_set.priority:
        body["priority"] = list(segment_set.priority)
    body["segments"] = {}
    for name in rows:
        entry: dict[str, Any] = {}
        if rows[name].description:
            entry["description"] = rows[name].description
        entry["rule"] = yaml.safe_load(rows[name].rule)
        body["segments"][name] = entry
    header = "# Segments exported from the database (`newsletter segments export`); `segments apply` reads it back.\n"
    return header + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)


def stored_segments(db: Database, project_dir: Path) -> list[StoredSegment]:
    load_segment_set(db, project_dir)  # seeds an empty table
    with db.session() as session:
        return [StoredSegment(r.name, r.rule, r.description, r.priority, r.version, r.updated_at, r.updated_by)
                for r in _ordered(session)]


def save_segment(db: Database, project_dir: Path, name: str, rule: str, *, actor: str,
                 description: str = "", create: bool = False) -> StoredSegment:
    """Create (create=True) or change one segment's rule and description; a new version naming
    `actor`. SegmentError (with the reason) when the rule does not compile; nothing is stored then."""
    name = name.strip()
    if not NAME.fullmatch(name):
        raise InputError(f"segment name {name!r} must be lower-case letters, digits and hyphens (e.g. heads-of-it)")
    compile_rule_text(rule, name)
    text = rule.strip()
    description = " ".join(description.split())[:500]
    load_segment_set(db, project_dir)  # seeds an empty table first, so the seed is not lost
    now = utcnow()
    with db.write_session() as session:
        row = session.get(SegmentDefinition, name, with_for_update=True)
        if create and row is not None:
            raise InputError(f"there is already a segment named {name!r}", hint="choose another name, or edit that one")
        if not create and row is None:
            raise NotFound(f"no segment named {name!r}")
        if row is None:
            last = session.scalar(select(func.max(SegmentDefinition.ordinal))) or 0
            row = SegmentDefinition(name=name, rule=text, description=description, priority=None, ordinal=last + 1,
                                    version=1, updated_at=now, updated_by=actor)
            session.add(row)
            action = "create"
        elif (row.rule, row.description) == (text, description):
            return StoredSegment(row.name, row.rule, row.description, row.priority, row.version, row.updated_at,
                                 row.updated_by)
        else:
            row.rule, row.description, row.version, row.updated_at, row.updated_by = (
                text, description, row.version + 1, now, actor)
            action = "update"
        session.add(SegmentVersion(name=name, version=row.version, action=action, rule=text, description=description,
                                   priority=row.priority, actor=actor, at=now))
        return StoredSegment(row.name, row.rule, row.description, row.priority, row.version, row.updated_at,
                             row.updated_by)


def delete_segment(db: Database, name: str, *, actor: str) -> None:
    with db.write_session() as session:
        row = session.get(SegmentDefinition, name, with_for_update=True)
        if row is None:
            raise NotFound(f"no segment named {name!r}")
        session.add(SegmentVersion(name=name, version=row.version + 1, action="delete", rule=None, description=None,
                                   priority=None, actor=actor, at=utcnow()))
        session.execute(delete(SegmentDefinition).where(SegmentDefinition.name == name))


def segment_history(db: Database, name: str | None = None) -> list[SegmentChange]:
    """Every stored version (newest first), of one segment or all."""
    query = select(SegmentVersion).order_by(SegmentVersion.id.desc())
    if name is not None:
        query = query.where(SegmentVersion.name == name)
    with db.session() as session:
        return [SegmentChange(v.name, v.version, v.action, v.rule, v.description, v.priority, v.actor, v.at)
                for v in session.scalars(query)]


@dataclass(frozen=True)
class RulePreview:
    count: int  # active members the rule matches on its own (before priority)
    sample: tuple[tuple[str, str, str], ...]  # (address, name, region) of the first few


def preview_rule(db: Database, rule: str, *, limit: int = 10) -> RulePreview:
    """What a rule being edited would select, before it is saved; SegmentError when it does not compile."""
    clause = eligible(compile_rule(compile_rule_text(rule).rule))
    with db.session() as session:
        count = int(session.scalar(select(func.count()).select_from(Subscriber).where(clause)) or 0)
        rows = session.execute(select(Subscriber.email, Subscriber.first_name, Subscriber.last_name, Subscriber.region)
                               .where(clause).order_by(Subscriber.email_key).limit(limit)).all()
    return RulePreview(count, tuple((e or "", " ".join(p for p in (first, last) if p), r or "")
                                    for e, first, last, r in rows))
