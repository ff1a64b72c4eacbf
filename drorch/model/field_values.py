"""The converters of one field's value (`Fields`' getters use them): each takes a
`Located` and the getter's argument, and returns the value or raises `BadValue` with a
report code; the common form (the right type) is checked first, the rest through
`Located.plain()`."""

from __future__ import annotations

import difflib
import re
from enum import StrEnum
from typing import Any, TypeVar

from drorch.model.located import Located
from drorch.model.units import UnitError, parse_duration, parse_size

E = TypeVar("E", bound=StrEnum)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


def suggestion(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class BadValue(ValueError):
    """A value a converter cannot take: the report's code, and its message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def as_str(loc: Located, _: object) -> str:
    v = loc.value
    if type(v) is str and v.strip():  # the common case, without plain()
        return v
    v = loc.plain()
    if isinstance(v, str) and v.strip():
        return v
    if isinstance(v, int | float) and not isinstance(v, bool):
        return str(v)
    raise BadValue("wrong-type", f"expected a non-empty string, got {kind(v)}")


def as_name(loc: Located, _: object) -> str:
    v = loc.value
    if type(v) is str and NAME_RE.match(v):  # the common case, without plain()
        return v
    v = loc.plain()
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    if not isinstance(v, str):
        raise BadValue("wrong-type", f"expected a name, got {kind(v)}")
    if not NAME_RE.match(v):
        raise BadValue(
            "bad-name",
            f"{v!r} is not a valid name (letters, digits, '.', '_', '-'; at most 63)",
        )
    return v


def as_bool(loc: Located, _: object) -> bool:
    v = loc.value
    if type(v) is bool:
        return v
    v = loc.plain()
    if isinstance(v, bool):
        return v
    raise BadValue("wrong-type", f"expected true or false, got {v!r}")


def as_int(loc: Located, bounds: tuple[int, int | None]) -> int:
    low, high = bounds
    v = loc.plain()
    if isinstance(v, bool) or not isinstance(v, int):
        raise BadValue("wrong-type", f"expected a whole number, got {v!r}")
    if v < low or (high is not None and v > high):
        limits = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise BadValue("out-of-range", f"{v} is out of range (must be {limits})")
    return v


def as_number(loc: Located, low: float) -> float:
    v = loc.plain()
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise BadValue("wrong-type", f"expected a number, got {v!r}")
    if v < low:
        raise BadValue("out-of-range", f"{v} is out of range (must be at least {low:g})")
    return float(v)


def as_duration(loc: Located, how: tuple[bool, dict[str, float]]) -> float:
    positive, known = how  # known: the strings parsed so far (Context.durations)
    try:
        seconds = parse_duration(loc.plain())
        if type(loc.value) is str:
            known[loc.value] = seconds
    except UnitError as exc:
        raise BadValue("bad-duration", str(exc)) from exc
    if positive and seconds <= 0:
        raise BadValue("bad-duration", f"must be longer than zero, got {loc.plain()!r}")
    return seconds


def as_size(loc: Located, _: object) -> int:
    try:
        size = parse_size(loc.plain())
    except UnitError as exc:
        raise BadValue("bad-size", str(exc)) from exc
    if size <= 0:
        raise BadValue("bad-size", f"must be larger than zero, got {loc.plain()!r}")
    return size


def as_choice(loc: Located, choices: tuple[str, ...]) -> str:
    v = loc.plain()
    if isinstance(v, str) and v in choices:
        return v
    hint = suggestion(str(v), list(choices))
    raise BadValue("bad-value", f"{v!r} is not one of {', '.join(choices)}{hint}")


_ENUM_VALUES: dict[type[StrEnum], tuple[str, ...]] = {}
_ENUM_MEMBERS: dict[type[StrEnum], dict[str, Any]] = {}


def members(enum: type[E]) -> dict[str, E]:  # what `enum(value)` gives, by value
    members = _ENUM_MEMBERS.get(enum)
    if members is None:
        members = _ENUM_MEMBERS[enum] = {e.value: e for e in enum}
    return members


def as_enum(loc: Located, enum: type[E]) -> E:
    values = _ENUM_VALUES.get(enum)
    if values is None:
        values = _ENUM_VALUES[enum] = tuple(e.value for e in enum)
    if type(loc.value) is str and loc.value in values:  # the common case, no search
        return enum(loc.value)
    return enum(as_choice(loc, values))
