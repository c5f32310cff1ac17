"""Segment names as people type them: wherever a command takes a segment (`send --segment`,
`schedule --segment`, `schedule move|cancel`, `subscribers export --segment`, `segments show`,
digest definitions), `London`, `london`, `North East` and a region's alias (`Cymru` → wales, `NI`
→ northern-ireland) all name the segment. One rule for all of them:

1. the exact name;
2. the same name ignoring case, spaces, hyphens and underscores (`North East` → north-east);
3. a region's name or alias (newsletter.regions), when exactly one of the segments is that
   region's (named by it, or given it in `regions`);

otherwise NotFound, with the closest name suggested.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence

from newsletter.errors import NotFound
from newsletter.regions import normalise_region


def _fold(name: str) -> str:
    return re.sub(r"[\s_\-.]+", "-", name.strip().lower()).strip("-")


def resolve_segment(given: str, available: Sequence[str], *, regions: Mapping[str, str | None] | None = None,
                    where: str = "here") -> str:
    """The segment of `available` that `given` names (see the module docstring)."""
    if given in available:
        return given
    folded = [s for s in available if _fold(s) == _fold(given)]
    if len(folded) == 1:
        return folded[0]
    region = normalise_region(given)
    if region is not None:
        def region_of(segment: str) -> str | None:
            if regions is not None and segment in regions:
                return regions[segment]
            return normalise_region(segment)

        by_region = [s for s in available if region_of(s) == region]
        if len(by_region) == 1:
            return by_region[0]
    close = difflib.get_close_matches(given, list(available), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else (
        f"the segments {where} are: {', '.join(available)}" if available else "there are no segments " + where)
    raise NotFound(f"no segment {given!r} {where}", hint=hint)


def resolve_segments(given: Iterable[str], available: Sequence[str], *,
                     regions: Mapping[str, str | None] | None = None, where: str = "here") -> list[str]:
    """Each given name resolved (see resolve_segment), once each, in the order given."""
    return list(dict.fromkeys(resolve_segment(g, available, regions=regions, where=where) for g in given))
