"""Step parameters: their kinds, coercion of `with:` arguments (strings from `--param
k=v` too) and binding them against a step type's declaration, every problem at once.
(Private: `load_step_types` imports no `_` module; `base` re-exports these.)"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class ParamKind(StrEnum):
    STR = "str"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    DURATION = "duration"  # seconds: a number, or "250ms", "30s", "5m", "1h"
    STR_LIST = "list[str]"


class _Missing:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: object = _Missing()

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds from a number or "250ms" / "30s" / "5m" / "1h"; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    else:
        raise ValueError(f"expected a duration like 30s, 5m or 250ms, got {value!r}")
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"a duration must be a finite number >= 0, got {value!r}")
    return seconds


@dataclass(frozen=True)
class Param:
    """One declared parameter of a step type (or of a runbook header)."""

    name: str
    kind: ParamKind
    doc: str
    default: object = REQUIRED
    choices: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def coerce(self, value: object) -> object:
        """The value as `kind`; ValueError with an operator-readable message otherwise.
        Strings are accepted for numbers and booleans (they come from `--param k=v`)."""
        kind = self.kind
        out: object
        if kind is ParamKind.STR:
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise ValueError(f"expected a string, got {_type_name(value)}")
            out = str(value)
        elif kind is ParamKind.INT:
            out = _as_int(value)
        elif kind is ParamKind.FLOAT:
            out = _as_float(value)
        elif kind is ParamKind.BOOL:
            out = _as_bool(value)
        elif kind is ParamKind.DURATION:
            out = parse_duration(value)
        else:
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            elif isinstance(value, tuple):
                value = list(value)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"expected a list of strings, got {_type_name(value)}")
            out = tuple(value)
        if self.choices and out not in self.choices:
            raise ValueError(f"expected one of {', '.join(self.choices)}, got {out!r}")
        return out

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "type": self.kind.value,
            "required": self.required,
            "default": None if self.required else self.default,
            "choices": list(self.choices),
            "doc": self.doc,
        }


def _type_name(value: object) -> str:
    if value is None:
        return "nothing (null)"
    return {dict: "a mapping", list: "a list", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _as_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,18}\s*", value):
        return int(value)
    raise ValueError(f"expected an integer, got {value!r}")


def _as_float(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    numeric = isinstance(value, str) and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", value)
    if not isinstance(value, int | float | str) or (isinstance(value, str) and not numeric):
        raise ValueError(f"expected a number, got {value!r}")
    out = float(value)
    if out != out or out in (float("inf"), float("-inf")):
        raise ValueError(f"expected a finite number, got {value!r}")
    return out


def _as_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


@dataclass(frozen=True)
class ArgProblem:
    """A problem binding a step's `with:` arguments; `arg` is None for the whole step."""

    code: str  # unknown-arg | missing-arg | bad-arg
    arg: str | None
    message: str


def bind_args(
    params: tuple[Param, ...], raw: Mapping[str, object]
) -> tuple[dict[str, object], list[ArgProblem]]:
    """Coerce `raw` against `params`, fill defaults, and report every problem at once."""
    by_name = {p.name: p for p in params}
    out: dict[str, object] = {}
    problems: list[ArgProblem] = []
    for key, value in raw.items():
        param = by_name.get(key)
        if param is None:
            hint = difflib.get_close_matches(key, list(by_name), n=1)
            known = ", ".join(by_name) or "none"
            extra = f" (did you mean {hint[0]!r}?)" if hint else f" (known: {known})"
            problems.append(ArgProblem("unknown-arg", key, f"unknown argument {key!r}{extra}"))
            continue
        try:
            out[key] = param.coerce(value)
        except ValueError as exc:
            problems.append(ArgProblem("bad-arg", key, f"argument {key!r}: {exc}"))
    for param in params:
        if param.name in raw:
            continue
        if param.required:
            problems.append(
                ArgProblem("missing-arg", None, f"missing required argument {param.name!r}")
            )
        else:
            out[param.name] = param.default
    return out, problems
