"""The step-type contract: typed params, binding with every problem at once, the
registry, and the cooperative deadline, exercised through the real `wait` step."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from drorch.environment import Environment
from drorch.model.loader import parse_cluster_text
from drorch.runbook.steps.base import (
    STEP_TYPES,
    Param,
    ParamKind,
    StepContext,
    StepResult,
    StepTimeout,
    StepType,
    bind_args,
    load_step_types,
    parse_duration,
    register,
    suggest,
)
from drorch.testing.clock import FakeClock
from tests.runbook.steps_lab import RecordingProgress

CLUSTER = """\
cluster: tiny
primary_site: A
sites:
  A: {nodes: [{name: a1}]}
  B: {nodes: [{name: b1}]}
"""


def ctx(clock: FakeClock, deadline: float | None = None) -> StepContext:
    cluster = parse_cluster_text(CLUSTER, "tiny.yaml")[0]
    return StepContext(
        env=Environment(clock=clock),
        cluster=cluster,
        progress=RecordingProgress(),
        step_id="w",
        deadline=deadline,
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(5, 5.0), (0.5, 0.5), ("30s", 30.0), ("5m", 300.0), ("250ms", 0.25), ("1h", 3600.0)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["-1s", "5 minutes", "", True, None, [], float("nan"), -3])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("kind", "raw", "value"),
    [
        (ParamKind.INT, "42", 42),
        (ParamKind.FLOAT, "1.5", 1.5),
        (ParamKind.BOOL, "yes", True),
        (ParamKind.BOOL, "off", False),
        (ParamKind.STR, 7, "7"),
        (ParamKind.STR_LIST, "a, b", ("a", "b")),
        (ParamKind.STR_LIST, ["x"], ("x",)),
    ],
)
def test_coerce(kind: ParamKind, raw: object, value: object) -> None:
    assert Param("p", kind, "doc").coerce(raw) == value


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        (ParamKind.INT, True),
        (ParamKind.INT, "4.5"),
        (ParamKind.FLOAT, "inf"),
        (ParamKind.BOOL, "maybe"),
        (ParamKind.STR, {"a": 1}),
        (ParamKind.STR, None),
        (ParamKind.STR_LIST, [1, 2]),
    ],
)
def test_coerce_refuses(kind: ParamKind, raw: object) -> None:
    with pytest.raises(ValueError):
        Param("p", kind, "doc").coerce(raw)


def test_choices() -> None:
    p = Param("mode", ParamKind.STR, "doc", default="sync", choices=("sync", "async"))
    assert p.coerce("async") == "async"
    with pytest.raises(ValueError, match="one of sync, async"):
        p.coerce("fast")


def test_bind_reports_every_problem_at_once() -> None:
    params = (
        Param("seconds", ParamKind.DURATION, "d"),
        Param("site", ParamKind.STR, "s"),
        Param("reason", ParamKind.STR, "r", default=""),
    )
    args, problems = bind_args(params, {"secnds": 3, "site": ["A"]})
    codes = sorted(p.code for p in problems)
    assert codes == ["bad-arg", "missing-arg", "unknown-arg"]
    unknown = next(p for p in problems if p.code == "unknown-arg")
    assert "did you mean 'seconds'" in unknown.message
    assert args == {"reason": ""}


def test_bind_fills_defaults() -> None:
    wait = load_step_types()["wait"]
    args, problems = bind_args(wait.params, {"seconds": "2s"})
    assert problems == []
    assert args == {"seconds": 2.0, "reason": ""}


def test_registry_loads_wait_and_documents_it() -> None:
    types = load_step_types()
    wait = types["wait"]
    assert wait.summary.startswith("Wait a fixed time")
    assert wait.idempotent and wait.undo is None
    assert suggest("wiat") == "wait"
    for name, step in types.items():
        assert step.name == name
        assert step.doc != "(undocumented)", name


def test_register_refuses_bad_names_and_duplicates() -> None:
    class Base(StepType):
        def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
            return StepResult(False, "")

        def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
            return False

        def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
            return StepResult(False, "")

    class BadName(Base):
        name = "Vm Migrate"

    class Dup(Base):
        name = "wait"

    class TwiceParam(Base):
        name = "test.twice"
        params = (Param("a", ParamKind.STR, ""), Param("a", ParamKind.INT, ""))

    load_step_types()
    with pytest.raises(TypeError, match="not like"):
        register(BadName)
    with pytest.raises(TypeError, match="registered twice"):
        register(Dup)
    with pytest.raises(TypeError, match="declared twice"):
        register(TwiceParam)
    assert "test.twice" not in STEP_TYPES
    assert type(STEP_TYPES["wait"]).__name__ == "Wait"


def test_wait_check_changes_nothing_and_sleeps_not() -> None:
    clock = FakeClock()
    c = ctx(clock)
    wait = load_step_types()["wait"]
    result = wait.check(c, {"seconds": 30.0, "reason": "settle"})
    assert result == StepResult(False, "would wait 30s (settle)")
    assert clock.sleeps == []


def test_wait_runs_on_the_clock_with_progress() -> None:
    clock = FakeClock()
    c = ctx(clock)
    result = load_step_types()["wait"].run(c, {"seconds": 2.5, "reason": ""})
    assert result.changed is False
    assert result.data == {"waited_s": 2.5}
    assert clock.sleeps == [1.0, 1.0, 0.5]
    assert isinstance(c.progress, RecordingProgress)
    assert c.progress.updates[-1] == (2.5, 2.5, "done")
    assert c.progress.updates[0] == (0.0, 2.5, "2s left")


def test_wait_stops_at_the_deadline() -> None:
    clock = FakeClock()
    c = ctx(clock, deadline=clock.monotonic() + 1.5)
    with pytest.raises(StepTimeout) as info:
        load_step_types()["wait"].run(c, {"seconds": 10.0, "reason": ""})
    assert info.value.code == "step-timeout"
    assert clock.monotonic() == pytest.approx(1001.5)
    assert c.remaining() == 0.0
