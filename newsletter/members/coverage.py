"""Who an edition reaches: per segment, the members it will send to and the members that match it
but go to an earlier segment; and the eligible members no segment of the edition reaches.

A member matching several segments of one edition gets the variant of the first of them in the
order of `subscribers/segments.yaml` (its `priority:` list, then the other segments as written), so
nobody gets two variants. `check` and `send --dry-run` print this, and the send freezes exactly it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import false, func, or_, select
from sqlalchemy.orm import Session

from newsletter.members.segments import SegmentSet, audience_clause, eligible
from newsletter.models import Subscriber

PRIORITY_RULE = ("a member matching several segments of the edition gets the first in the order of "
                 "subscribers/segments.yaml (its priority list, then the other segments as written)")


@dataclass(frozen=True)
class SegmentCoverage:
    segment: str
    audience: int  # eligible members this segment sends to
    claimed: dict[str, int] = field(default_factory=dict)  # earlier segment -> members it took

    def as_dict(self) -> dict[str, object]:
        return {"segment": self.segment, "audience": self.audience, "claimed_by_earlier": dict(self.claimed)}


@dataclass(frozen=True)
class Coverage:
    segments: tuple[SegmentCoverage, ...]
    uncovered: dict[str, int]  # region slug ("none" = no region) -> eligible members no segment reaches
    order: tuple[str, ...]  # the edition's segments in the order that decides overlaps
    rule: str = PRIORITY_RULE

    @property
    def uncovered_total(self) -> int:
        return sum(self.uncovered.values())

    def segment(self, name: str) -> SegmentCoverage:
        return next(s for s in self.segments if s.segment == name)

    def as_dict(self) -> dict[str, object]:
        return {"segments": [s.as_dict() for s in self.segments], "uncovered": dict(self.uncovered),
                "uncovered_total": self.uncovered_total, "order": list(self.order), "rule": self.rule}


def edition_order(segment_set: SegmentSet, edition_segments: Sequence[str]) -> tuple[str, ...]:
    wanted = set(edition_segments)
    return tuple(n for n in segment_set.names if n in wanted)


def coverage(session: Session, segment_set: SegmentSet, edition_segments: Sequence[str]) -> Coverage:
    """Counts only (a few COUNT queries); nothing is loaded into Python."""
    order = edition_order(segment_set, edition_segments)
    results = []
    for position, name in enumerate(order):
        audience = session.scalar(select(func.count()).select_from(Subscriber).where(
            audience_clause(segment_set, name, among=order))) or 0
        claimed = {}
        for earlier in order[:position]:
            taken = session.scalar(select(func.count()).select_from(Subscriber).where(
                eligible(segment_set.rule_clause(name)), segment_set.assigned_clause(earlier, among=order))) or 0
            if taken:
                claimed[earlier] = int(taken)
        results.append(SegmentCoverage(name, int(audience), claimed))
    reached = or_(false(), *(segment_set.rule_clause(n) for n in order))
    region = func.coalesce(Subscriber.region, "none")
    rows = session.execute(select(region, func.count()).where(eligible(~reached)).group_by(region)).all()
    by_name = {r.segment: r for r in results}
    return Coverage(tuple(by_name[n] for n in edition_segments if n in by_name),
                    {str(r): int(n) for r, n in sorted(rows, key=lambda row: (-row[1], str(row[0])))}, order)
