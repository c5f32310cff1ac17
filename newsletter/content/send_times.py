"""Send times: read `--at` / manifest `send_at` values into zone-aware instants, DST-correctly.

Rules (default zone: settings.timezone, Europe/London):
- a value with an offset (`2026-12-03T08:00+00:00`, `...Z`) is taken as is;
- a naive local value (`2026-12-03 08:00`, or `2026-12-03 8:00` with a one-digit hour) is read in
  the zone;
- a local time that does not exist (the clocks go forward over it) is refused with a suggestion;
- a local time that happens twice (the clocks go back over it) is refused unless an offset is given;
- a time in the past is refused (see `require_future`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsletter.errors import ScheduleError

_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*[-–]\s*(\d{1,2}):(\d{2})\s*$")
_ONE_DIGIT_HOUR = re.compile(r"^(\d{4}-\d{2}-\d{2})([T ])(\d)(?=:\d{2})")


def pad_hour(text: str) -> str:
    """`2026-12-01 7:30` → `2026-12-01 07:30`: people write H:MM as often as HH:MM, and ISO 8601
    (datetime.fromisoformat) reads only the second."""
    return _ONE_DIGIT_HOUR.sub(r"\1\g<2>0\3", text.strip())


def zone(name: str) -> ZoneInfo:
    """The IANA zone called `name`, or a ScheduleError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"unknown time zone {name!r}", hint="use an IANA name such as Europe/London"
        ) from None


def describe(instant: datetime, zone_name: str) -> str:
    """`2027-03-29 08:00 BST (07:00 UTC)`: local wall time with its abbreviation, plus UTC."""
    local = instant.astimezone(zone(zone_name))
    utc = instant.astimezone(UTC)
    utc_text = utc.strftime("%H:%M UTC") if utc.date() == local.date() else utc.strftime(
        "%Y-%m-%d %H:%M UTC"
    )
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({utc_text})"


def localise(naive: datetime, zone_name: str) -> datetime:
    """Attach `zone_name` to a naive wall-clock time, refusing non-existent and ambiguous ones."""
    tz = zone(zone_name)
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    wall = naive.strftime("%Y-%m-%d %H:%M")
    round_trip = first.astimezone(UTC).astimezone(tz)
    if round_trip.replace(tzinfo=None) != naive:
        # In a spring-forward gap. The fold=0 reading uses the offset before the change, which is
        # what most people mean: "01:30" when 01:00 became 02:00 is the instant shown as 02:30.
        raise ScheduleError(
            f"{wall} does not exist in {zone_name}: the clocks go forward over it; "
            f"did you mean {describe(round_trip, zone_name)}?",
            hint="give a time outside the change, or an explicit offset",
        )
    if first.utcoffset() != second.utcoffset():
        options = " or ".join(
            f"{naive:%Y-%m-%dT%H:%M}{_offset(c)} ({c.tzname()}, {c.astimezone(UTC):%H:%M} UTC)"
            for c in (first, second)
        )
        raise ScheduleError(
            f"{wall} happens twice in {zone_name} (the clocks go back); "
            f"give an explicit offset: {options}",
            hint="add the UTC offset you mean to the time",
        )
    return first


def _offset(instant: datetime) -> str:
    delta = instant.utcoffset() or timedelta(0)
    minutes = int(delta.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


AT_HINT = "write it like 2026-12-03 08:00 or 2026-12-03 8:00 (local) or 2026-12-03T08:00+00:00"


def read_send_time(value: str | date | datetime, *, label: str = "--at", hint: str = AT_HINT) -> datetime:
    """The date-time written: naive (a local wall time, zone not yet applied) or with its offset.
    A date without a time, or a time without a date, is refused: a send needs both. `label` and
    `hint` word the message for where the value came from (a manifest's send_at, `--at`)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        raise ScheduleError(f"{label} {value.isoformat()} has no time of day", hint=hint)
    text = value.strip()
    if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", text):
        raise ScheduleError(f"{label} {value!r} has no date", hint=hint)
    try:
        date.fromisoformat(text)  # 2026-12-03, 20261203, 2026-W49-4: Python would read midnight
    except ValueError:
        pass
    else:
        raise ScheduleError(f"{label} {value!r} has no time of day", hint=hint)
    try:
        if not re.search(r"\d[T ]\d", text):
            raise ValueError(text)
        return datetime.fromisoformat(pad_hour(text))
    except ValueError:
        raise ScheduleError(f"bad {label} time {value!r}", hint=hint) from None


def parse_send_time(
    value: str | date | datetime, zone_name: str, *, label: str = "--at", hint: str = AT_HINT,
) -> datetime:
    """The UTC instant meant by text or a datetime (naive values are local to `zone_name`, with
    the daylight-saving rules of `localise`). The one parser of send times: manifests, `schedule
    --at` and `schedule move` all come here.

    UTC rather than local: Python never compares a fold=1 local time equal to another zone's."""
    parsed = read_send_time(value, label=label, hint=hint)
    zone(zone_name)
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        parsed = localise(parsed.replace(tzinfo=None), zone_name)
    return parsed.astimezone(UTC)


def require_future(instant: datetime, zone_name: str, now: datetime | None = None) -> None:
    """Refuse an instant that is not in the future."""
    now = now or datetime.now(UTC)
    if instant <= now:
        raise ScheduleError(
            f"send time {describe(instant, zone_name)} is in the past "
            f"(now {describe(now, zone_name)})",
            hint="give a later time with --at",
        )


@dataclass(frozen=True)
class SendWindow:
    """Local hours in which a segment may be sent, e.g. 07:00-20:00 (end exclusive)."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> SendWindow:
        match = _WINDOW.match(text)
        if not match:
            raise ScheduleError(
                f"cannot read send window {text!r}", hint="write it like 07:00-20:00"
            )
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            raise ScheduleError(f"send window {text!r} has an invalid time",
                                hint="hours 00-24 and minutes 00-59, e.g. 07:00-20:00")
        start = time(h1, m1)
        end = time(23, 59, 59, 999999) if h2 == 24 else time(h2, m2)
        if start >= end:
            raise ScheduleError(
                f"send window {text!r} ends before it starts",
                hint="windows cannot span midnight; write it like 07:00-20:00",
            )
        return cls(start, end)

    def __str__(self) -> str:
        end = "24:00" if self.end == time(23, 59, 59, 999999) else f"{self.end:%H:%M}"
        return f"{self.start:%H:%M}-{end}"

    def contains(self, instant: datetime, zone_name: str) -> bool:
        local = instant.astimezone(zone(zone_name)).time().replace(tzinfo=None)
        return self.start <= local < self.end
