"""The step-type contract every runbook action implements, and the registry of them.

A step type is written like an Ansible module: it declares its parameters (`params`),
supports check mode (`check`: what it would change and what it checked, changing
nothing), says whether it has already taken effect (`probe`, used by resume), does the
work (`run`: `changed`, a message, data for the report), names the step type that
undoes it (`undo`), and documents itself (the class docstring).

    @register
    class Wait(StepType):
        '''Sleep for `seconds` (on the injected clock).'''
        name = "wait"
        params = (Param("seconds", ParamKind.DURATION, "How long to wait."),)
        ...

Steps act only through `StepContext.env` (runners, hypervisors, replicators, clock)
and report failures by raising `StepFailed(code, message)`; the engine retries only
the codes a runbook names in `retry.codes`. Timeouts are cooperative: a step that waits
uses `ctx.sleep()` / `ctx.check_deadline()`, which raise `StepTimeout` at the step's
deadline, and passes `ctx.remaining()` to blocking calls that take a timeout.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar, Protocol, TypeVar

if TYPE_CHECKING:
    from drorch.clock import Clock
    from drorch.environment import Environment
    from drorch.model.types import Cluster


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


@dataclass(frozen=True)
class StepResult:
    """What a step did (run) or would do (check).

    `changed`: it changed (or, in check mode, would change) something. `message`: one
    line for the operator. `checked`: what it looked at to decide (check mode lists
    every observation it made). `data`: machine-readable facts for the journal and the
    report (e.g. `downtime_s`, `vm`, `site`, `verified_at`)."""

    changed: bool
    message: str
    checked: tuple[str, ...] = ()
    data: Mapping[str, object] = field(default_factory=dict)


class StepFailed(Exception):
    """A step could not do its work. `code` is stable (retry.codes names it); `data` goes
    into the journal."""

    def __init__(
        self, code: str, message: str, *, data: Mapping[str, object] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data: Mapping[str, object] = dict(data or {})


class StepTimeout(StepFailed):
    """The step ran past its deadline (raised by the context's deadline helpers)."""

    def __init__(self, message: str) -> None:
        super().__init__("step-timeout", message)


class Progress(Protocol):
    """Live progress of the running step (the CLI draws one line; tests record)."""

    def update(self, done: float, total: float, detail: str = "") -> None:
        """`done` of `total` units (bytes, seconds, VMs) with a short detail."""

    def note(self, text: str) -> None:
        """A line worth keeping in the output (not redrawn)."""


class NullProgress:
    """Progress that goes nowhere."""

    def update(self, done: float, total: float, detail: str = "") -> None:
        return None

    def note(self, text: str) -> None:
        return None


@dataclass
class StepContext:
    """Everything a step may use. `params` are the runbook's resolved parameters;
    `facts` is shared observed state (steps may record what later `when:` conditions
    test, e.g. `facts["migration_converged"]`); `deadline` is monotonic seconds."""

    env: Environment
    cluster: Cluster
    params: Mapping[str, object] = field(default_factory=dict)
    progress: Progress = field(default_factory=NullProgress)
    dry_run: bool = False
    run_id: str = ""
    step_id: str = ""
    deadline: float | None = None
    force: bool = False
    accept_data_loss: bool = False
    facts: dict[str, object] = field(default_factory=dict)

    @property
    def clock(self) -> Clock:
        return self.env.clock

    def remaining(self) -> float | None:
        """Seconds left before the step's deadline (None = no deadline, never < 0)."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - self.clock.monotonic())

    def check_deadline(self) -> None:
        """Raise StepTimeout once the deadline has passed."""
        if self.deadline is not None and self.clock.monotonic() >= self.deadline:
            raise StepTimeout(f"step {self.step_id or '?'} ran past its timeout")

    def sleep(self, seconds: float) -> None:
        """Sleep on the injected clock, but never past the deadline (then StepTimeout)."""
        left = self.remaining()
        if left is not None and seconds >= left:
            self.clock.sleep(left)
            self.check_deadline()
            raise StepTimeout(f"step {self.step_id or '?'} ran past its timeout")
        self.clock.sleep(seconds)


class StepType(ABC):
    """One kind of runbook step. Subclasses set `name`, `params`, optionally `undo`
    and `idempotent`, write a docstring (shown by `drorch runbook actions`), and
    implement `check`, `probe` and `run`.

    `idempotent`: running it again after it took effect changes nothing more (a
    check, a wait). Resume never relies on it: a step interrupted mid-run is re-run
    only if `probe` says it has not taken effect."""

    name: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    undo: ClassVar[str | None] = None
    idempotent: ClassVar[bool] = False

    @property
    def doc(self) -> str:
        return inspect.cleandoc(type(self).__doc__ or "(undocumented)")

    @property
    def summary(self) -> str:
        return self.doc.splitlines()[0]

    def validate(self, args: Mapping[str, object]) -> list[ArgProblem]:
        """Cross-argument checks after binding (each argument is already typed)."""
        return []

    def describe(self, args: Mapping[str, object]) -> str:
        """One line saying what the step does with these arguments."""
        shown = ", ".join(f"{k}={v}" for k, v in args.items() if v not in (None, "", ()))
        return f"{self.name}({shown})" if shown else self.name

    @abstractmethod
    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        """Check mode: observe only, and return what `run` would change (`changed`,
        `message`) and what was looked at (`checked`). Must change nothing. Raise
        StepFailed when the step could not run as things stand."""

    @abstractmethod
    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        """Has this step already taken effect? (Read only.) Resume asks this of a step
        that started but never finished before deciding to run it again; a step whose
        effect cannot be observed returns False and must then be safe to re-run."""

    @abstractmethod
    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        """Do the work; return `changed`, a message and report data, or raise
        StepFailed. Honour `ctx.deadline` (use ctx.sleep / ctx.remaining)."""

    def undo_args(self, args: Mapping[str, object], result: StepResult) -> dict[str, object]:
        """Arguments for the `undo` step type after this step ran with `args` and
        returned `result`. Default: the arguments whose names the undo step declares."""
        undo = STEP_TYPES.get(self.undo or "")
        if undo is None:
            return {}
        names = {p.name for p in undo.params}
        return {k: v for k, v in args.items() if k in names}


STEP_TYPES: dict[str, StepType] = {}
"""Every registered step type by name (complete after `load_step_types()`)."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
S = TypeVar("S", bound=type[StepType])


def register(cls: S) -> S:
    """Class decorator: add one instance of `cls` to STEP_TYPES under `cls.name`."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise TypeError(f"{cls.__name__}: step type name {name!r} is not like 'vm.migrate_live'")
    existing = STEP_TYPES.get(name)
    if existing is not None and type(existing).__qualname__ != cls.__qualname__:
        raise TypeError(f"step type {name!r} registered twice ({type(existing).__name__})")
    seen: set[str] = set()
    for param in cls.params:
        if param.name in seen:
            raise TypeError(f"{name}: parameter {param.name!r} declared twice")
        seen.add(param.name)
    STEP_TYPES[name] = cls()
    return cls


_loaded = False


def load_step_types(
    import_module: Callable[[str], object] = importlib.import_module,
) -> dict[str, StepType]:
    """Import every module of `drorch.runbook.steps` (each registers its family) and
    return the registry. Cheap after the first call."""
    global _loaded
    if not _loaded:
        import drorch.runbook.steps as package

        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if info.name != "base" and not info.name.startswith("_"):
                import_module(f"{package.__name__}.{info.name}")
        _loaded = True
    return STEP_TYPES


def suggest(name: str, known: list[str] | None = None) -> str | None:
    """The closest known step-type name to `name` (for "did you mean")."""
    pool = known if known is not None else sorted(STEP_TYPES)
    hits = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    return hits[0] if hits else None
