"""Parse the human units used in config files: durations (`500ms`, `10s`, `2m`) and sizes."""

from __future__ import annotations

import re
from fractions import Fraction

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "K": 1024,
    "KB": 1000,
    "KIB": 1024,
    "M": 1024**2,
    "MB": 1000**2,
    "MIB": 1024**2,
    "G": 1024**3,
    "GB": 1000**3,
    "GIB": 1024**3,
    "T": 1024**4,
    "TB": 1000**4,
    "TIB": 1024**4,
    "P": 1024**5,
    "PB": 1000**5,
    "PIB": 1024**5,
}


class UnitError(ValueError):
    """A value that is not a valid duration or size; the message says what is accepted."""


def parse_duration(value: object) -> float:
    """Return seconds for `500ms`, `10s`, `2m`, `1h`, `1d` or a bare number of seconds."""
    if isinstance(value, bool):
        raise UnitError(f"expected a duration like 500ms, 10s or 2m, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise UnitError(f"a duration cannot be negative, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise UnitError(f"expected a duration like 500ms, 10s or 2m, got {value!r}")
    m = _DURATION_RE.match(value)
    if not m:
        raise UnitError(f"expected a duration like 500ms, 10s or 2m, got {value!r}")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]


def format_duration(seconds: float) -> str:
    """Inverse of parse_duration, choosing the largest exact unit (`1.5s`, `500ms`, `2m`)."""
    ms = round(seconds * 1000)
    if ms % 60000 == 0 and ms >= 60000:
        return f"{ms // 60000}m"
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"


def parse_size(value: object) -> int:
    """Return bytes for `4096`, `64KiB`, `1GiB`, `10G` (binary) or `10GB` (decimal)."""
    if isinstance(value, bool):
        raise UnitError(f"expected a size like 64KiB or 1GiB, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise UnitError(f"a size cannot be negative, got {value!r}")
        return value
    if not isinstance(value, str):
        raise UnitError(f"expected a size like 64KiB or 1GiB, got {value!r}")
    m = _SIZE_RE.match(value)
    if not m:
        raise UnitError(f"expected a size like 64KiB or 1GiB, got {value!r}")
    unit = (m.group(2) or "").upper()
    exact = Fraction(m.group(1)) * _SIZE_UNITS[unit]
    if exact.denominator != 1:
        raise UnitError(f"{value!r} is not a whole number of bytes")
    return int(exact)


def format_size(size: int) -> str:
    """Inverse of parse_size, choosing the largest exact binary unit (`64KiB`, `1GiB`)."""
    for unit, factor in (("PiB", 1024**5), ("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024}KiB"
    return str(size)
