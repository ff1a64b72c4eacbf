"""Drill schedules: 5-field cron expressions evaluated by `cronsim`, in a time zone.

cronsim (not croniter, not our own parser) because it ships type hints (mypy --strict
needs no stubs), has no dependencies, iterates backwards as well as forwards (the latest
missed run of a scheduler that was down), and follows Debian cron across DST changes: a
job in a skipped hour runs once when the clock jumps, a job in a repeated hour runs
once. We add only the `@weekly`-style macros and messages that name the fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 1,4,7,10 *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
FIELDS = "minute hour day-of-month month day-of-week"


class CronError(ValueError):
    """An invalid cron expression or time zone; the message says which field."""


def expand(expression: str) -> str:
    """The 5-field form of `expression` (macros expanded); CronError when it is not
    five fields (cronsim's optional seconds field is not cron and is refused)."""
    text = MACROS.get(expression.strip().lower(), expression.strip())
    if text.startswith("@"):
        raise CronError(f"{expression!r}: unknown macro; use one of {', '.join(MACROS)}")
    n = len(text.split())
    if n != 5:
        raise CronError(
            f"{expression!r} has {n} fields; cron needs 5 ({FIELDS}) or a macro like @weekly"
        )
    return text


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` (e.g. `UTC`, `Europe/Berlin`); CronError if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"unknown time zone {name!r} (an IANA name like Europe/Berlin)") from exc


def parse_cron(expression: str) -> str:
    """Validate `expression`; return its 5-field form. CronError names the bad field."""
    text = expand(expression)
    try:
        CronSim(text, datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC")))
    except CronSimError as exc:
        raise CronError(f"{expression!r}: {exc} ({FIELDS})") from exc
    return text


def occurrences(expression: str, tz: str, after: datetime) -> Iterator[datetime]:
    """Matching times strictly after `after` (aware), as aware datetimes in `tz`."""
    return CronSim(parse_cron(expression), after.astimezone(zone(tz)))


def latest_at_or_before(expression: str, tz: str, when: datetime) -> datetime | None:
    """The last matching time at or before `when` (None if there is none)."""
    start = when.astimezone(zone(tz)).replace(microsecond=0) + timedelta(seconds=1)
    return next(CronSim(parse_cron(expression), start, reverse=True), None)
