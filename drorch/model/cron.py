"""A small 5-field cron parser (minute hour day-of-month month day-of-week), no dependency.

Supports `*`, lists `1,15`, ranges `1-5`, steps `*/15` and `10-50/10`, month and weekday
names (`jan`, `mon-fri`), Sunday as 0 or 7, and the macros `@hourly`, `@daily`,
`@weekly`, `@monthly`, `@quarterly`, `@yearly`. As in Vixie cron, when both day fields are
restricted a day matches if either matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

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
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {n: i + 1 for i, n in enumerate(_MONTHS)}),
    ("day of week", 0, 7, {n: i for i, n in enumerate(_DAYS)}),
)
# Bound for next_after(): five years of minutes covers every valid expression (Feb 29).
_SEARCH_DAYS = 5 * 366


class CronError(ValueError):
    """An invalid cron expression; the message names the field and the problem."""


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    def matches(self, when: datetime) -> bool:
        if when.minute not in self.minutes or when.hour not in self.hours:
            return False
        if when.month not in self.months:
            return False
        return self._day_matches(when)

    def _day_matches(self, when: datetime) -> bool:
        dom = when.day in self.days
        dow = (when.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow

    def next_after(self, when: datetime) -> datetime:
        """The first matching minute strictly after `when` (seconds dropped)."""
        t = when.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t + timedelta(days=_SEARCH_DAYS)
        while t < limit:
            if t.month not in self.months or not self._day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0)
                continue
            if t.minute in self.minutes:
                return t
            t += timedelta(minutes=1)
        raise CronError(f"{self.expression!r} never matches a real date")


def _value(text: str, low: int, high: int, names: dict[str, int], field: str) -> int:
    word = text.lower()
    if word in names:
        return names[word]
    if not text.isdigit():
        raise CronError(f"{field}: {text!r} is not a number or name")
    v = int(text)
    if not low <= v <= high:
        raise CronError(f"{field}: {v} is outside {low}-{high}")
    return v


def _field(text: str, low: int, high: int, names: dict[str, int], field: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        rng, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if rng == "*":
            start, end = low, high
        elif "-" in rng:
            a, _, b = rng.partition("-")
            start, end = _value(a, low, high, names, field), _value(b, low, high, names, field)
            if start > end:
                raise CronError(f"{field}: range {rng!r} runs backwards")
        elif rng:
            start = _value(rng, low, high, names, field)
            end = high if step_text else start
        else:
            raise CronError(f"{field}: empty list item in {text!r}")
        out.update(range(start, end + 1, step))
    return out


def parse_cron(expression: str) -> CronSchedule:
    text = MACROS.get(expression.strip().lower(), expression)
    parts = text.split()
    if len(parts) != 5:
        raise CronError(
            f"{expression!r} has {len(parts)} fields; cron needs 5 "
            "(minute hour day-of-month month day-of-week) or a macro like @weekly"
        )
    sets = [
        _field(p, lo, hi, names, f) for p, (f, lo, hi, names) in zip(parts, _FIELDS, strict=True)
    ]
    weekdays = {d % 7 for d in sets[4]}
    schedule = CronSchedule(
        expression=expression,
        minutes=frozenset(sets[0]),
        hours=frozenset(sets[1]),
        days=frozenset(sets[2]),
        months=frozenset(sets[3]),
        weekdays=frozenset(weekdays),
        days_restricted=not parts[2].startswith("*"),
        weekdays_restricted=not parts[4].startswith("*"),
    )
    if not schedule.weekdays_restricted and min(sets[2]) > max(_month_days(sets[3])):
        raise CronError(f"{expression!r}: day {min(sets[2])} never occurs in the given months")
    return schedule


def _month_days(months: set[int]) -> list[int]:
    lengths = {2: 29, 4: 30, 6: 30, 9: 30, 11: 30}
    return [lengths.get(m, 31) for m in months]
