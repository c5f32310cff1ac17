"""The canonical regions: the UK nations and the English regions (12 in all), with aliases."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Region:
    slug: str
    name: str
    nation: str
    aliases: tuple[str, ...] = ()


REGIONS: tuple[Region, ...] = (
    Region("scotland", "Scotland", "Scotland", ("scot", "sco", "alba")),
    Region("wales", "Wales", "Wales", ("cymru", "wal")),
    Region("northern-ireland", "Northern Ireland", "Northern Ireland", ("ni", "n ireland", "n. ireland")),
    Region("north-east", "North East", "England", ("ne", "north east england")),
    Region("north-west", "North West", "England", ("nw", "north west england")),
    Region(
        "yorkshire",
        "Yorkshire and the Humber",
        "England",
        ("yorkshire and the humber", "yorkshire & the humber", "yorkshire and humber", "yh", "y&h", "yorks"),
    ),
    Region("east-midlands", "East Midlands", "England", ("em", "e midlands")),
    Region("west-midlands", "West Midlands", "England", ("wm", "w midlands")),
    Region("east", "East of England", "England", ("east of england", "eoe", "eastern", "east anglia")),
    Region("london", "London", "England", ("ldn", "greater london")),
    Region("south-east", "South East", "England", ("se", "south east england")),
    Region("south-west", "South West", "England", ("sw", "south west england")),
)

REGION_SLUGS: tuple[str, ...] = tuple(r.slug for r in REGIONS)
BY_SLUG: dict[str, Region] = {r.slug: r for r in REGIONS}


def _key(text: str) -> str:
    """Fold case, punctuation and spacing: 'South-East', 'south east', ' SOUTH_EAST ' -> 'south east'."""
    text = text.strip().lower().replace("&", " and ")
    text = re.sub(r"[\s\-_./]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


_LOOKUP: dict[str, str] = {}
for _r in REGIONS:
    for _name in (_r.slug, _r.name, *_r.aliases):
        _LOOKUP[_key(_name)] = _r.slug
# keep abbreviations such as "y&h" working after '&' folding
_LOOKUP.setdefault(_key("y and h"), "yorkshire")
# "Southeast", "NorthernIreland": the same names written without spaces
_COMPACT: dict[str, str] = {k.replace(" ", ""): v for k, v in _LOOKUP.items()}


def normalise_region(text: str | None) -> str | None:
    """The canonical slug for a region name or alias, or None when it is not recognised."""
    if text is None:
        return None
    key = _key(text)
    if not key:
        return None
    return _LOOKUP.get(key) or _COMPACT.get(key.replace(" ", ""))


def region_name(slug: str) -> str:
    return BY_SLUG[slug].name if slug in BY_SLUG else slug
