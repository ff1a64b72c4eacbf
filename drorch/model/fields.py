"""Typed, positioned reads from a YAML mapping, collecting every problem instead of stopping.

`Fields(located, path, ctx)` wraps one mapping. Each getter returns the converted value or
the default, and on a problem appends a coded report at the exact node. `done()` reports
every key nobody asked for as `unknown-key`, with a "did you mean" suggestion. The
converters of one value are in `drorch.model.field_values`.

`ctx.where` records the position of every value read under its model path
(e.g. `("vms", 0, "depends_on", 1)`), so semantic rules can point at the right line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from drorch.model.field_values import (
    NAME_RE,
    BadValue,
    as_bool,
    as_choice,
    as_duration,
    as_enum,
    as_int,
    as_name,
    as_number,
    as_size,
    as_str,
    kind,
    members,
    suggestion,
)
from drorch.model.reports import Position, ReportItem, Severity
from drorch.model.source import Located

E = TypeVar("E", bound=StrEnum)
T = TypeVar("T")
PathPart = str | int
Path = tuple[PathPart, ...]


class _Missing:
    pass


MISSING: Any = _Missing()


@dataclass
class Where:
    """Positions of model values by path; `at()` falls back to the nearest recorded parent."""

    positions: dict[Path, Position] = field(default_factory=dict)
    file: str = "<config>"

    def record(self, path: Path, position: Position) -> None:
        self.positions.setdefault(path, position)

    def at(self, *path: PathPart) -> Position:
        p: Path = tuple(path)
        while p:
            if p in self.positions:
                return self.positions[p]
            p = p[:-1]
        return self.positions.get((), Position(self.file, 1, 1))


@dataclass
class Context:
    """What a parse collects: reports and positions."""

    where: Where
    reports: list[ReportItem] = field(default_factory=list)
    # parse_duration of each string it has taken in this parse (they recur all over a file)
    durations: dict[str, float] = field(default_factory=dict)
    # what a parse of a mapping gave (and the keys it read, in order) by the mapping's
    # content (`content_key`), when it reported nothing: the same content gives the same
    # value, so a mapping written many times over is read once
    by_content: dict[Any, tuple[Any, tuple[str, ...]]] = field(default_factory=dict)

    def error(self, code: str, message: str, position: Position) -> None:
        self.reports.append(ReportItem(code, message, position))

    def warn(self, code: str, message: str, position: Position) -> None:
        self.reports.append(ReportItem(code, message, position, Severity.WARNING))


def content_key(what: str, loc: Located) -> tuple[Any, ...] | None:
    """What a mapping of scalars is (`what`), its keys, values and their types (`1`,
    `1.0` and `true` are equal, but not the same value), for `Context.by_content`; None
    for anything else."""
    values = loc.value
    if type(values) is not dict:
        return None
    scalars = tuple([v.value for v in values.values()])
    types = tuple(map(type, scalars))
    if dict in types or list in types:
        return None
    return what, tuple(values), scalars, types


def expect_mapping(loc: Located, what: str, ctx: Context) -> bool:
    if isinstance(loc.value, dict):
        return True
    if isinstance(loc.value, list) and what == "sites":
        ctx.error(
            "wrong-type",
            "sites must be a mapping of site name to its nodes, e.g. `A: {nodes: [...]}`",
            loc.position,
        )
        return False
    ctx.error("wrong-type", f"{what} must be a mapping, not {kind(loc.value)}", loc.position)
    return False


def expect_list(loc: Located, what: str, ctx: Context) -> list[Located]:
    if isinstance(loc.value, list):
        return list(loc.value)
    if loc.value is None:  # `vms:` with every entry commented out means none
        return []
    ctx.error("wrong-type", f"{what} must be a list, not {kind(loc.value)}", loc.position)
    return []


class Fields:
    """Reads the keys of one mapping. `path` is the model path of the mapping itself."""

    # one per mapping of the file, each read several times a key: slots are cheaper
    __slots__ = ("allowed", "ctx", "durations", "loc", "ok", "path", "record", "values", "what")

    def __init__(self, loc: Located, path: Path, ctx: Context, what: str) -> None:
        self.loc = loc
        self.path = path
        self.ctx = ctx
        self.what = what
        value = loc.value
        if type(value) is dict:  # the common case, as expect_mapping decides it
            self.ok = True
            self.values: dict[str, Located] = value
        else:
            # an empty section (`fencing:` with everything commented out) means all defaults
            self.ok = value is None or expect_mapping(loc, what, ctx)
            self.values = value if isinstance(value, dict) else {}
        self.allowed: list[str] = []
        # Where.record, bound once: a Fields reads each of its keys through it
        self.record: Callable[[Path, Position], object] = ctx.where.positions.setdefault
        self.record(path, loc.position)
        self.durations = ctx.durations

    def key_pos(self, key: str) -> Position:
        return self.loc.key_positions.get(key, self.loc.position)

    def node(self, key: str, *, required: bool = False) -> Located | None:
        """The raw node under `key` (recording its position), or None if absent."""
        self.allowed.append(key)
        loc = self.values.get(key)
        if loc is None:
            if required and self.ok:
                self.ctx.error("missing-key", f"{self.what} needs {key!r}", self.loc.position)
            return None
        self.record((*self.path, key), loc.position)
        return loc

    def _convert(
        self,
        key: str,
        default: Any,
        required: bool,
        convert: Callable[[Located, Any], Any],
        arg: Any = None,
    ) -> Any:
        # node(), inlined: this runs for every key of every mapping in the file; the
        # converter's own argument is passed along (a lambda per call costs more)
        self.allowed.append(key)
        loc = self.values.get(key)
        if loc is None:
            if required and self.ok:
                self.ctx.error("missing-key", f"{self.what} needs {key!r}", self.loc.position)
            return default
        self.record((*self.path, key), loc.position)
        try:
            return convert(loc, arg)
        except BadValue as bad:
            self.ctx.error(bad.code, f"{self.what}.{key}: {bad}", loc.position)
            return default

    # text, name, flag, duration, choice: the common case (the right type and form) read
    # here, the rest by _convert; the same records and value, one call instead of three

    # (an absent key that has a default is read here too, as _convert would read it)

    def text(self, key: str, default: Any = MISSING, *, required: bool = False) -> Any:
        loc = self.values.get(key)
        if loc is None:
            if not required:
                self.allowed.append(key)
                return default
        elif type(loc.value) is str and loc.value.strip():
            self.allowed.append(key)
            self.record((*self.path, key), loc.position)
            return loc.value
        return self._convert(key, default, required, as_str)

    def name(self, key: str = "name", default: Any = MISSING) -> Any:
        loc = self.values.get(key)
        if loc is not None and type(loc.value) is str and NAME_RE.match(loc.value):
            self.allowed.append(key)
            self.record((*self.path, key), loc.position)
            return loc.value
        return self._convert(key, default, True, as_name)

    def flag(self, key: str, default: bool) -> bool:
        loc = self.values.get(key)
        if loc is None:
            self.allowed.append(key)
            return bool(default)
        if type(loc.value) is bool:
            self.allowed.append(key)
            self.record((*self.path, key), loc.position)
            return loc.value
        return bool(self._convert(key, default, False, as_bool))

    def whole(self, key: str, default: Any, *, low: int = 0, high: int | None = None) -> Any:
        loc = self.values.get(key)
        if loc is None:
            if default is not MISSING:
                self.allowed.append(key)
                return default
        elif type(loc.value) is int and low <= loc.value and (high is None or loc.value <= high):
            self.allowed.append(key)
            self.record((*self.path, key), loc.position)
            return loc.value
        return self._convert(key, default, default is MISSING, as_int, (low, high))

    def number(self, key: str, default: Any, *, low: float = 0.0) -> Any:
        if default is not MISSING and key not in self.values:
            self.allowed.append(key)
            return default
        return self._convert(key, default, default is MISSING, as_number, low)

    def duration(self, key: str, default: Any, *, positive: bool = True) -> Any:
        loc = self.values.get(key)
        if loc is None:
            if default is not MISSING:
                self.allowed.append(key)
                return default
        elif type(loc.value) is str:
            seconds = self.durations.get(loc.value)
            if seconds is not None and (seconds > 0 or not positive):
                self.allowed.append(key)
                self.record((*self.path, key), loc.position)
                return seconds
        return self._convert(
            key, default, default is MISSING, as_duration, (positive, self.durations)
        )

    def size(self, key: str, default: Any) -> Any:
        if default is not MISSING and key not in self.values:
            self.allowed.append(key)
            return default
        return self._convert(key, default, default is MISSING, as_size)

    def choice(self, key: str, enum: type[E], default: Any) -> Any:
        loc = self.values.get(key)
        if loc is None:
            if default is not MISSING:
                self.allowed.append(key)
                return default
        elif type(loc.value) is str:
            member = members(enum).get(loc.value)
            if member is not None:
                self.allowed.append(key)
                self.record((*self.path, key), loc.position)
                return member
        return self._convert(key, default, default is MISSING, as_enum, enum)

    def one_of(self, key: str, choices: tuple[str, ...], default: Any) -> Any:
        if default is not MISSING and key not in self.values:
            self.allowed.append(key)
            return default
        return self._convert(key, default, default is MISSING, as_choice, choices)

    def names(self, key: str) -> tuple[str, ...]:
        """A list of names (references), each position recorded as (*path, key, i)."""
        self.allowed.append(key)
        loc = self.values.get(key)
        if loc is None:
            return ()
        path = (*self.path, key)
        record = self.record
        record(path, loc.position)
        items = loc.value
        if type(items) is list:  # the common case: good names, read without as_name
            names: list[str] = []
            match = NAME_RE.match
            for i, item in enumerate(items):
                name = item.value
                if type(name) is not str or match(name) is None:
                    break  # read again below (recording again records nothing new)
                record((*path, i), item.position)
                names.append(name)
            else:
                return tuple(names)
        out: list[str] = []
        for i, item in enumerate(expect_list(loc, f"{self.what}.{key}", self.ctx)):
            record((*path, i), item.position)
            try:
                out.append(as_name(item, None))
            except BadValue as bad:
                self.ctx.error(bad.code, f"{self.what}.{key}: {bad}", item.position)
        return tuple(out)

    def str_map(self, key: str) -> dict[str, str]:
        """A mapping of name -> string (e.g. volume paths, service placement)."""
        loc = self.node(key)
        if loc is None or not expect_mapping(loc, f"{self.what}.{key}", self.ctx):
            return {}
        out: dict[str, str] = {}
        for k, v in loc.value.items():
            self.record((*self.path, key, k), loc.key_positions.get(k, v.position))
            try:
                out[k] = as_str(v, None)
            except BadValue as bad:
                self.ctx.error(bad.code, f"{self.what}.{key}.{k}: {bad}", v.position)
        return out

    def done(self) -> None:
        """Report every key that no getter asked for."""
        for key in self.values:
            if key not in self.allowed:
                hint = suggestion(key, self.allowed)
                self.ctx.error(
                    "unknown-key",
                    f"unknown key {key!r} in {self.what}{hint}",
                    self.key_pos(key),
                )

    def items(self, key: str) -> Iterator[tuple[int, Located]]:
        loc = self.node(key)
        if loc is None:
            return iter(())
        return enumerate(expect_list(loc, f"{self.what}.{key}", self.ctx))
