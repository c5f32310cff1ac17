"""`subscribers/segments.yaml` as pydantic models, read into rule trees (segment_rules.Rule).

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

Rule keys (a mapping with several keys means `all` of them):
  all: [rule, ...]   any: [rule, ...]   not: rule
  region: slug-or-alias | [..]          member_type: value | [..]
  organisation: name | [..] | {contains: text | [..]}
  attributes: {key: value | [..] | {contains: text | [..]}, ...}
  (organisation and attributes are compared as text, ignoring case and surrounding spaces;
   `contains` matches a value holding any of the texts)
  joined_before: YYYY-MM-DD  (joined before that day, UTC)
  joined_after: YYYY-MM-DD   (joined after that day, UTC)

Segment names are slugs (they name files in a build). To add a kind of test: a field on RuleNode
(or on AttributeMatch, for a new way to compare one attribute) and its op in segment_rules.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator

from newsletter.content import FieldProblem, RegionList, SegmentName, Text, YamlModel, as_date, shown
from newsletter.members.segment_rules import Rule

RULE_KEYS = ("all", "any", "not", "region", "member_type", "organisation", "attributes",
             "joined_before", "joined_after")


def _key(info: ValidationInfo) -> str:
    return (info.field_name or "").rstrip("_")


def _values(value: Any, name: str, *, numbers: bool = False) -> list[str]:
    """One plain value or a non-empty list of them, as text (numbers and true/false only where
    `numbers`, for attributes, which are stored as text)."""
    items = list(value) if isinstance(value, list | tuple) else [value]
    if not items:
        raise FieldProblem(f"{name!r} needs a value or a non-empty list of values", complete=True)
    texts = []
    for i, item in enumerate(items):
        if isinstance(item, bool) and numbers:
            texts.append("true" if item else "false")
        elif isinstance(item, str) or numbers and isinstance(item, int | float) and not isinstance(item, bool):
            texts.append(str(item).strip())
        else:
            texts.append("")
        if not texts[-1]:
            raise FieldProblem(f"{name!r} values must be plain text, got {shown(item)}",
                               at=(i,) if isinstance(value, list | tuple) else (), complete=True)
    return texts


def _member_types(value: Any, info: ValidationInfo) -> tuple[str, ...]:
    # stored lower-cased with single spaces (see subscribers.member_type_value)
    return tuple(" ".join(v.split()).lower() for v in _values(value, _key(info)))


def _joined(value: Any, info: ValidationInfo) -> date:
    try:
        return as_date(value)
    except ValueError:
        raise FieldProblem(f"{_key(info)!r} needs a date like 2024-01-31, got {shown(value)}", complete=True) from None


MemberTypes = Annotated[tuple[str, ...], BeforeValidator(_member_types)]
JoinedDay = Annotated[date, BeforeValidator(_joined)]


class TextMatch(YamlModel):
    """A text test on the organisation or one attribute, ignoring case: the value is one of
    `equals` (written as the value or a list of values), or contains one of `contains` (written
    `{contains: text}` or `{contains: [texts]}`)."""

    what: ClassVar[str] = "{key!r}"
    shape: ClassVar[str] = "needs a value, a list of values, or {contains: text}"

    equals: tuple[str, ...] | None = None
    contains: tuple[str, ...] | None = None

    @classmethod
    def shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) != 1 or set(value) - {"equals", "contains"}:
                raise FieldProblem("a text test is a value, a list of values, or {contains: text}",
                                   "e.g. {contains: head of}", complete=True)
            return dict(value)
        return {"equals": value}

    @field_validator("equals", "contains", mode="before")
    @classmethod
    def _texts(cls, value: Any, info: ValidationInfo) -> Any:
        return tuple(_values(value, info.field_name or "value", numbers=True))

    def to_rule(self, field: str, attribute: str | None = None) -> Rule:
        if self.contains is not None:
            return Rule(f"{field}:contains", values=self.contains, attribute=attribute)
        return Rule(field, values=self.equals or (), attribute=attribute)


class RuleNode(YamlModel):
    """A rule: one key, or several (all of them must match)."""

    what: ClassVar[str] = "rule"
    unknown_message: ClassVar[str] = "unknown rule key {name!r}"

    all_: tuple[RuleNode, ...] | None = Field(None, alias="all")
    any_: tuple[RuleNode, ...] | None = Field(None, alias="any")
    not_: RuleNode | None = Field(None, alias="not")
    region: RegionList | None = None
    member_type: MemberTypes | None = None
    organisation: TextMatch | None = None
    attributes: dict[str, TextMatch] | None = None
    joined_before: JoinedDay | None = None
    joined_after: JoinedDay | None = None

    @classmethod
    def shorthand(cls, value: Any) -> Any:
        if not isinstance(value, dict) or not value:
            raise FieldProblem("a rule must be a mapping such as {region: london}",
                               f"use one of: {', '.join(RULE_KEYS)}", complete=True)
        return value

    @field_validator("all_", "any_", mode="before")
    @classmethod
    def _rule_list(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, list) or not value:
            raise FieldProblem(f"{_key(info)!r} needs a non-empty list of rules", complete=True)
        return value

    @field_validator("attributes", mode="before")
    @classmethod
    def _attribute_map(cls, value: Any) -> Any:
        if not isinstance(value, dict) or not value:
            raise FieldProblem("'attributes' needs a mapping such as {committee: digital}", complete=True)
        checked = {}
        for name, wanted in value.items():
            if isinstance(wanted, dict) and (len(wanted) != 1 or set(wanted) - {"equals", "contains"}):
                raise FieldProblem(f"'attributes.{name}' needs a value, a list of values or {{contains: text}}",
                                   "e.g. attributes: {role: {contains: head of}}", at=(name,), complete=True)
            match = TextMatch.shorthand(wanted)
            (key, texts), = match.items()
            inner = (key,) if isinstance(wanted, dict) else ()
            try:
                checked[name] = {key: tuple(_values(texts, f"attributes.{name}", numbers=True))}
            except FieldProblem as exc:
                raise FieldProblem(exc.message, exc.hint, at=(name, *inner, *exc.at), complete=True) from None
        return checked

    @field_validator("not_", "region", "member_type", "organisation", "joined_before", "joined_after", mode="before")
    @classmethod
    def _present(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:  # `region:` with nothing after it is a mistake, not "no rule"
            raise FieldProblem(f"{_key(info)!r} needs a value", complete=True)
        return value

    def to_rule(self) -> Rule:
        parts: list[Rule] = []
        for op, children in (("all", self.all_), ("any", self.any_)):
            if children is not None:
                parts.append(Rule(op, tuple(c.to_rule() for c in children)))
        if self.not_ is not None:
            parts.append(Rule("not", (self.not_.to_rule(),)))
        for op, values in (("region", self.region), ("member_type", self.member_type)):
            if values is not None:
                parts.append(Rule(op, values=values))
        if self.organisation is not None:
            parts.append(self.organisation.to_rule("organisation"))
        if self.attributes is not None:
            tests = [match.to_rule("attributes", name) for name, match in self.attributes.items()]
            parts.append(tests[0] if len(tests) == 1 else Rule("all", tuple(tests)))
        for op, day in (("joined_before", self.joined_before), ("joined_after", self.joined_after)):
            if day is not None:
                parts.append(Rule(op, values=(day,)))
        return parts[0] if len(parts) == 1 else Rule("all", tuple(parts))


class SegmentDef(YamlModel):
    what: ClassVar[str] = "segment {key!r}"
    shape: ClassVar[str] = "must be a mapping with rule: (and optional description:)"

    rule: RuleNode
    description: Text | None = None


class SegmentsFile(YamlModel):
    what: ClassVar[str] = "the segments file"
    shape: ClassVar[str] = "must be a mapping with 'segments:' (and optional 'priority:')"

    segments: dict[SegmentName, SegmentDef]
    priority: tuple[Text, ...] = ()

    @field_validator("segments", mode="before")
    @classmethod
    def _some_segments(cls, value: Any) -> Any:
        if not isinstance(value, dict) or not value:
            raise FieldProblem("'segments' must be a mapping of segment names to definitions",
                               "e.g. segments: {london: {rule: {region: london}}}", complete=True)
        return value

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_list(cls, value: Any) -> Any:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise FieldProblem("'priority' must be a list of segment names", "e.g. priority: [scotland, wales]",
                               complete=True)
        return value
