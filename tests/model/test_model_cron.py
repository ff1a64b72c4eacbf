"""Drill schedules through cronsim: next runs, the latest missed run, time zones and DST,
and errors that name the field."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from drorch.model.cron import CronError, latest_at_or_before, occurrences, parse_cron


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("0 3 * * sun", utc(2026, 11, 23, 12, 0), utc(2026, 11, 29, 3, 0)),
        ("@weekly", utc(2026, 11, 23, 12, 0), utc(2026, 11, 29, 0, 0)),
        ("*/15 * * * *", utc(2026, 1, 1, 0, 7), utc(2026, 1, 1, 0, 15)),
        ("0 4 1 1,4,7,10 *", utc(2026, 2, 1), utc(2026, 4, 1, 4, 0)),
        ("@quarterly", utc(2026, 10, 1, 0, 0), utc(2027, 1, 1, 0, 0)),
        ("30 2 * * mon-fri", utc(2026, 11, 27, 3, 0), utc(2026, 11, 30, 2, 30)),
        ("0 0 29 2 *", utc(2026, 3, 1), utc(2028, 2, 29, 0, 0)),
        ("0 0 * * 7", utc(2026, 11, 23), utc(2026, 11, 29, 0, 0)),  # 7 = Sunday
        ("0 0 13 * fri", utc(2026, 11, 1), utc(2026, 11, 6, 0, 0)),  # either day field
    ],
)
def test_next_run_in_utc(expr: str, after: datetime, expected: datetime) -> None:
    assert next(occurrences(expr, "UTC", after)) == expected


def test_time_zone_shifts_the_run_and_dst_is_followed() -> None:
    # 03:00 Berlin is 02:00 UTC in winter, 01:00 UTC in summer
    winter = next(occurrences("0 3 * * sun", "Europe/Berlin", utc(2026, 11, 23)))
    assert winter.astimezone(UTC) == utc(2026, 11, 29, 2, 0)
    summer = next(occurrences("0 3 * * sun", "Europe/Berlin", utc(2026, 7, 1)))
    assert summer.astimezone(UTC) == utc(2026, 7, 5, 1, 0)
    # 02:30 does not exist on 2026-03-29 in Berlin: Debian cron runs it once, at 03:00
    gap = next(occurrences("30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12)))
    assert gap.astimezone(UTC) == utc(2026, 3, 29, 1, 0)
    assert gap.tzinfo == ZoneInfo("Europe/Berlin")


def test_latest_run_at_or_before() -> None:
    at = utc(2026, 11, 29, 3, 0)
    assert latest_at_or_before("0 3 * * sun", "UTC", at) == at
    assert latest_at_or_before("0 3 * * sun", "UTC", utc(2026, 11, 29, 2, 59)) == utc(
        2026, 11, 22, 3, 0
    )


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 3 * *", "has 4 fields; cron needs 5"),
        ("0 0 3 * * *", "has 6 fields"),  # cronsim's seconds field is not cron
        ("60 * * * *", "Bad minute"),
        ("* 24 * * *", "Bad hour"),
        ("* * 0 * *", "Bad day-of-month"),
        ("* * * 13 *", "Bad month"),
        ("* * * * 8", "Bad day-of-week"),
        ("*/0 * * * *", "Bad minute"),
        ("0 0 31 2 *", "Bad day-of-month"),
        ("0 0 * * funday", "Bad day-of-week"),
        ("@fortnightly", "unknown macro"),
    ],
)
def test_errors_name_the_field(expr: str, message: str) -> None:
    with pytest.raises(CronError) as info:
        parse_cron(expr)
    assert message in str(info.value)
