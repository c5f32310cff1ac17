"""Segment rules: the tree a segment's `rule:` is read into, and its SQL.

Every rule compiles to a SQLAlchemy boolean expression (no SQL text from users), so a segment is
one SQL query on SQLite and PostgreSQL alike. Clauses are two-valued (never NULL), so `not` and the
priority exclusions behave as a reader expects for members with blank fields.

A new kind of test is a new `op` here (its summary and its SQL) and a field in the model that
reads it (segments_file.RuleNode).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, false, func, not_, or_, true
from sqlalchemy.sql.elements import ColumnElement

from newsletter.models import Subscriber


@dataclass(frozen=True)
class Rule:
    """One node of a rule tree. `op` is a tree key or a leaf key; leaves carry `values`."""

    op: str
    children: tuple[Rule, ...] = ()
    values: tuple[Any, ...] = ()
    attribute: str | None = None  # for the attribute ops

    def summary(self) -> str:
        if self.op in ("all", "any"):
            joiner = " and " if self.op == "all" else " or "
            parts = [c.summary() for c in self.children]
            text = joiner.join(f"({p})" if " and " in p or " or " in p else p for p in parts)
            return text or ("everyone" if self.op == "all" else "no one")
        if self.op == "not":
            return f"not ({self.children[0].summary()})"
        field, _, how = self.op.partition(":")
        name = f"attributes.{self.attribute}" if field == "attributes" else field
        if self.op in ("joined_before", "joined_after"):
            return f"{self.op} {self.values[0]}"
        shown = ", ".join(str(v) for v in self.values)
        if how == "contains":
            return f"{name} contains {shown}" if len(self.values) == 1 else f"{name} contains any of [{shown}]"
        return f"{name} = {shown}" if len(self.values) == 1 else f"{name} in [{shown}]"


def _eq_any(column: ColumnElement[Any], values: Sequence[Any]) -> ColumnElement[bool]:
    """Two-valued `column = v` / `column IN (...)`: false (not NULL) when the column is NULL."""
    test = column == values[0] if len(values) == 1 else column.in_(list(values))
    return and_(column.is_not(None), test)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _text_match(column: ColumnElement[str], values: Sequence[str], how: str) -> ColumnElement[bool]:
    """Text compared ignoring case (and surrounding spaces): equal to one of `values`, or, with
    how == "contains", containing one of them (LIKE wildcards in a value are taken literally)."""
    folded = func.lower(func.trim(column))
    if how == "contains":
        return and_(column.is_not(None), or_(*(folded.contains(str(v).strip().lower(), autoescape=True)
                                                for v in values)))
    return _eq_any(folded, [str(v).strip().lower() for v in values])


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
    field, _, how = op.partition(":")
    if field == "organisation":
        return _text_match(Subscriber.organisation, rule.values, how)
    if field == "attributes":
        # Attributes are stored as text (imports, --attr), so rules compare text on both backends.
        return _text_match(Subscriber.attributes[rule.attribute].as_string(), rule.values, how)
    if op == "joined_before":
        return Subscriber.joined_at < _day_start(rule.values[0])
    if op == "joined_after":
        return Subscriber.joined_at >= _day_start(rule.values[0] + timedelta(days=1))
    raise ValueError(f"unknown rule op {op!r}")  # the segments file model never produces one
