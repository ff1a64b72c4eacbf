"""Runbook loading: a good file becomes frozen steps; a bad one reports every problem
at once as FILE:LINE:COL: CODE: message."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from drorch.model.reports import ConfigError
from drorch.runbook.load import parse_runbook_text
from drorch.runbook.model import OnFailure, substitute
from drorch.runbook.steps.base import (
    Param,
    ParamKind,
    StepContext,
    StepResult,
    StepType,
    load_step_types,
)


class Toy(StepType):
    """Toy step."""

    name = "toy.promote"
    params = (
        Param("volume", ParamKind.STR, "v"),
        Param("epoch", ParamKind.INT, "e", default=0),
        Param("wait", ParamKind.DURATION, "w", default=5.0),
    )
    undo = "toy.demote"

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        return StepResult(True, "")

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        return False

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        return StepResult(True, "")


class ToyDemote(Toy):
    """Toy undo."""

    name = "toy.demote"
    params = (Param("volume", ParamKind.STR, "v"),)
    undo = None


def types() -> dict[str, StepType]:
    real = load_step_types()
    return {"wait": real["wait"], "plan.execute": real["plan.execute"],
            "toy.promote": Toy(), "toy.demote": ToyDemote()}  # fmt: skip


def load(text: str) -> object:
    from drorch.model.source import parse_located
    from drorch.runbook.load import check_runbook

    runbook, reports = check_runbook(parse_located(text, "rb.yaml"), "rb.yaml", text, types())
    if reports:
        raise ConfigError(reports)
    return runbook


GOOD = """\
name: move
description: Move it.
params:
  to: {type: str, default: B, choices: [A, B]}
  vol: {type: str}
  settle: {type: duration, default: 2s}
steps:
  - id: first
    action: toy.promote
    with: {volume: "${params.vol}", epoch: "7"}
    timeout: 30s
    retry: {attempts: 3, backoff: 1s, codes: [busy]}
    rollback: undo
  - id: settle
    action: wait
    with: {seconds: "${params.settle}", reason: "let ${params.vol} settle"}
    when: steps.first.changed and params.to == 'B'
    confirm: true
    on_failure: continue
  - id: go
    action: plan.execute
    with: {kind: migration, to: "${params.to}"}
    confirm: "Move to ${params.to}?"
    on_failure: rollback
    rollback:
      - {id: back, action: toy.demote, with: {volume: x}}
"""


def test_good_runbook_loads() -> None:
    rb = load(GOOD)
    assert rb.name == "move"  # type: ignore[attr-defined]
    first, settle, go = rb.steps  # type: ignore[attr-defined]
    assert first.retry.attempts == 3 and first.retry.codes == ("busy",)
    assert first.retry.deadline == pytest.approx(3 * 30 + 1 + 2)  # derived total deadline
    assert first.undo is True
    assert settle.on_failure is OnFailure.CONTINUE
    assert settle.confirm == "Run step settle (wait)?"
    assert settle.when.text.startswith("steps.first")
    assert go.rollback[0].id == "back"
    assert go.on_failure is OnFailure.ROLLBACK


def test_substitution_keeps_types_and_interpolates() -> None:
    params = {"vol": "db", "settle": 2.0, "vms": ("a", "b")}
    assert substitute("${params.settle}", params) == 2.0
    assert substitute("let ${params.vol} settle", params) == "let db settle"
    assert substitute("vms ${params.vms}", params) == "vms a,b"
    assert substitute("cost $${params.vol}", params) == "cost ${params.vol}"
    assert substitute({"a": ["${params.vol}"]}, params) == {"a": ["db"]}


BAD = """\
name: broken
params:
  to: {type: site}
  n: {type: int, default: many}
  vol: {type: str}
steps:
  - id: first
    action: toy.promot
    with: {volume: x}
  - id: first
    action: wait
    with: {secnds: 3}
  - id: two
    action: toy.promote
    with: {volume: "${params.volume}", epoch: [1], wait: "${oops}"}
    rollback: undo
    retry: {attempts: 3, codes: [busy]}
  - id: three
    action: toy.demote
    with: {volume: a}
    rollback: undo
    when: steps.four.changed or params.nope == 1 or steps.two.wrong
    on_failure: explode
  - id: four
    action: wait
    with: {seconds: 1}
    when: "params.n ==="
    confirm: 3
    tiemout: 5s
"""


def test_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load(BAD)
    lines = [str(r) for r in info.value.reports]
    expected = [
        "rb.yaml:3:14: bad-value: param 'to': type 'site' is not one of str, int, float, bool, "
        "duration, list[str]",
        "rb.yaml:4:27: bad-value: param 'n' default: expected an integer, got 'many'",
        "rb.yaml:8:13: unknown-action: step 'first': unknown action 'toy.promot' "
        "(did you mean 'toy.promote'?); `drorch runbook actions` lists them",
        "rb.yaml:10:9: duplicate-id: step id 'first' is already used (first at line 7)",
        "rb.yaml:12:11: missing-arg: step 'first' (wait): missing required argument 'seconds'",
        "rb.yaml:12:20: unknown-arg: step 'first' (wait): unknown argument 'secnds' "
        "(did you mean 'seconds'?)",
        "rb.yaml:15:20: undefined-param: step 'two': param 'volume' is not declared "
        "(did you mean 'vol'?)",
        "rb.yaml:15:47: bad-arg: step 'two' (toy.promote): argument 'epoch': expected an "
        "integer, got [1]",
        "rb.yaml:15:58: bad-value: step 'two': '${oops}' is not a reference; write "
        "${params.NAME} (or $${ for a literal)",
        "rb.yaml:17:12: bad-retry: step 'two' retry needs a total deadline: set retry "
        "deadline or the step's timeout",
        "rb.yaml:21:15: no-undo: step 'three': rollback: undo, but 'toy.demote' has no undo; "
        "write the rollback steps instead",
        "rb.yaml:22:11: undefined-step: step 'three' when: no earlier step 'four'",
        "rb.yaml:22:33: undefined-param: step 'three' when: param 'nope' is not declared",
        "rb.yaml:22:53: bad-when: step 'three' when: 'steps.two.wrong': use "
        "steps.ID.status|changed|message or steps.ID.data.KEY",
        "rb.yaml:23:17: bad-value: step 'three' on_failure must be one of abort, rollback, "
        "continue",
        "rb.yaml:27:23: bad-when: step 'four' when: unexpected character '='",
        "rb.yaml:28:14: bad-type: step 'four' confirm: true, false or a prompt",
        "rb.yaml:29:5: unknown-key: step 'four': unknown key 'tiemout' (did you mean 'timeout'?)",
    ]
    assert lines == expected


def test_bad_args_are_reported_by_the_step_type() -> None:
    text = """\
name: x
steps:
  - id: a
    action: toy.promote
    with: {epoch: [1], wait: soon}
"""
    with pytest.raises(ConfigError) as info:
        load(text)
    assert [str(r) for r in info.value.reports] == [
        "rb.yaml:5:11: missing-arg: step 'a' (toy.promote): missing required argument 'volume'",
        "rb.yaml:5:19: bad-arg: step 'a' (toy.promote): argument 'epoch': expected an "
        "integer, got [1]",
        "rb.yaml:5:30: bad-arg: step 'a' (toy.promote): argument 'wait': expected a duration "
        "like 30s, 5m or 250ms, got 'soon'",
    ]


W = "name: x\nsteps:\n  - {id: a, action: wait, with: {seconds: 1}, "
S = "name: x\nsteps: [{id: a, action: wait, with: {seconds: 1}, "


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("[]", "bad-type"),
        ("name: x\nsteps: []\n", "bad-type"),
        ("name: x\n", "missing-key"),
        ("name: x\nstep: []\nsteps: [{id: a, action: wait, with: {seconds: 1}}]\n", "unknown-key"),
        ("name: x\nsteps: [{id: 'a b', action: wait, with: {seconds: 1}}]\n", "bad-value"),
        ("name: x\nsteps: [{id: a, action: wait, with: {seconds: 1}, timeout: 0}]\n", "bad-value"),
        (
            "name: x\nsteps: [{id: a, action: wait, with: {seconds: 1}, "
            "retry: {attempts: 2, deadline: 1m}}]\n",
            "bad-retry",
        ),
        (
            "name: x\nsteps: [{id: a, action: wait, with: {seconds: 1}, "
            "retry: {attempts: 1000, codes: [x]}}]\n",
            "bad-retry",
        ),
        (
            W + "when: 'observed.vm.web'}\n",
            "bad-when",
        ),
        (
            W + "when: 'os.system'}\n",
            "bad-when",
        ),
        (
            W + "when: 'steps.a.changed'}\n",
            "undefined-step",
        ),
        ("name: x\nname: y\nsteps: []\n", "duplicate-key"),
        (
            S + "confirm: 'go ${params.z}?'}]\n",
            "undefined-param",
        ),
        ("name: x\nsteps: [{id: a, action: wait, with: {seconds: 1}, rollback: 5}]\n", "bad-type"),
        ("name: [\n", "yaml"),
    ],
)
def test_single_problems(text: str, code: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(text)
    assert code in {r.code for r in info.value.reports}, [str(r) for r in info.value.reports]


def test_param_of_wrong_kind_for_an_argument() -> None:
    text = """\
name: x
params: {n: {type: bool}}
steps:
  - {id: a, action: wait, with: {seconds: "${params.n}"}}
"""
    with pytest.raises(ConfigError) as info:
        load(text)
    assert [str(r) for r in info.value.reports] == [
        "rb.yaml:4:43: bad-arg: step 'a': argument 'seconds' wants duration but param 'n' is bool"
    ]


def test_real_registry_used_by_default() -> None:
    rb = parse_runbook_text("name: x\nsteps: [{id: a, action: wait, with: {seconds: 1}}]\n")
    assert rb.steps[0].action == "wait"
