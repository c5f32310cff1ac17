"""Send times are read in UK local time and land on the right UTC instant across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from newsletter.content.send_times import SendWindow, describe, parse_send_time, require_future
from newsletter.errors import ScheduleError

LONDON = "Europe/London"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_the_day_after_spring_forward_0800_is_0700_utc() -> None:
    when = parse_send_time("2027-03-29 08:00", LONDON)
    assert when == utc(2027, 3, 29, 7, 0)
    assert describe(when, LONDON) == "2027-03-29 08:00 BST (07:00 UTC)"


def test_the_day_after_fall_back_0800_is_0800_utc() -> None:
    when = parse_send_time("2026-10-26T08:00", LONDON)
    assert when == utc(2026, 10, 26, 8, 0)
    assert describe(when, LONDON) == "2026-10-26 08:00 GMT (08:00 UTC)"


def test_a_time_in_the_spring_forward_gap_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ScheduleError) as info:
        parse_send_time("2027-03-28 01:30", LONDON)
    message = str(info.value)
    assert "does not exist" in message
    assert "did you mean 2027-03-28 02:30 BST (01:30 UTC)?" in message


def test_an_ambiguous_fall_back_time_needs_an_offset_and_shows_both() -> None:
    with pytest.raises(ScheduleError) as info:
        parse_send_time("2026-10-25 01:30", LONDON)
    message = str(info.value)
    assert "happens twice" in message
    assert "2026-10-25T01:30+01:00 (BST, 00:30 UTC)" in message
    assert "2026-10-25T01:30+00:00 (GMT, 01:30 UTC)" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-10-25T01:30+01:00", utc(2026, 10, 25, 0, 30)),
        ("2026-10-25T01:30+00:00", utc(2026, 10, 25, 1, 30)),
        ("2026-12-03T08:00Z", utc(2026, 12, 3, 8, 0)),
        ("2027-03-28T01:30+00:00", utc(2027, 3, 28, 1, 30)),
    ],
)
def test_explicit_offsets_are_taken_as_given(text: str, expected: datetime) -> None:
    assert parse_send_time(text, LONDON) == expected


def test_the_result_is_a_utc_instant() -> None:
    when = parse_send_time("2026-07-01 08:00", LONDON)
    assert when.tzinfo is UTC and when.hour == 7


@pytest.mark.parametrize("text", ["2026-12-03", "next tuesday", "2026-13-01 08:00", ""])
def test_unreadable_times_are_refused_with_a_hint(text: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_send_time(text, LONDON)
    assert info.value.hint and "2026-12-03 08:00" in info.value.hint


def test_unknown_zone_is_named() -> None:
    with pytest.raises(ScheduleError, match="Mars/Olympus"):
        parse_send_time("2026-12-03 08:00", "Mars/Olympus")


def test_past_times_are_refused() -> None:
    now = utc(2026, 12, 3, 9, 0)
    with pytest.raises(ScheduleError, match="in the past"):
        require_future(parse_send_time("2026-12-03 08:00", LONDON), LONDON, now=now)
    require_future(parse_send_time("2026-12-03 09:01", LONDON), LONDON, now=now)


def test_send_window_in_local_time() -> None:
    window = SendWindow.parse("07:00-20:00")
    assert str(window) == "07:00-20:00"
    # 06:30 UTC in July is 07:30 BST: inside; in December it is 06:30 GMT: outside.
    assert window.contains(utc(2026, 7, 1, 6, 30), LONDON)
    assert not window.contains(utc(2026, 12, 1, 6, 30), LONDON)
    assert not window.contains(utc(2026, 12, 1, 20, 0), LONDON)


@pytest.mark.parametrize("text", ["7-20", "20:00-07:00", "07:00-25:00", "07:61-08:00"])
def test_bad_send_windows_are_refused(text: str) -> None:
    with pytest.raises(ScheduleError):
        SendWindow.parse(text)


def test_a_time_without_a_date_says_so() -> None:
    with pytest.raises(ScheduleError, match="'08:00' has no date"):
        parse_send_time("08:00", LONDON)
