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
from typing import TYPE_CHECKING, ClassVar, Protocol, TypeVar

if TYPE_CHECKING:
    from drorch.clock import Clock
    from drorch.environment import Environment
    from drorch.model.types import Cluster


from drorch.runbook.steps._params import REQUIRED as REQUIRED  # re-exported: the API
from drorch.runbook.steps._params import ArgProblem as ArgProblem
from drorch.runbook.steps._params import Param as Param
from drorch.runbook.steps._params import ParamKind as ParamKind
from drorch.runbook.steps._params import bind_args as bind_args
from drorch.runbook.steps._params import parse_duration as parse_duration


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
    only if `probe` says it has not taken effect.

    `undo_restores`: its undo restores the state from before it ran from whatever a
    failed run of it left (and changes nothing when it did nothing), so a rollback
    undoes the failed step too, not only the completed ones. The failure's `data`, with
    `failed: True`, is then passed to `undo_args` as the result's."""

    name: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    undo: ClassVar[str | None] = None
    idempotent: ClassVar[bool] = False
    undo_restores: ClassVar[bool] = False

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
