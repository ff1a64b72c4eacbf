"""Load and validate a runbook file, reporting every problem at once.

    runbook = load_runbook("runbooks/hurricane-planned-migration.yaml")  # or ConfigError

Each problem is `FILE:LINE:COL: CODE: message` (the same `ReportItem`s and YAML
positions as the cluster config): unknown keys and actions with a "did you mean",
bad or missing arguments for an action, duplicate step ids, references to undefined
params or step ids (in `with:`, `confirm:` and `when:`), a `rollback: undo` on an
action that has no undo, bad `when:` conditions and retry policies without a total
deadline or without the codes to retry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from drorch.model.config_file import read_config_text
from drorch.model.reports import ConfigError, Position, ReportItem
from drorch.model.source import Located, parse_located
from drorch.runbook import load_fields as f
from drorch.runbook.model import OnFailure, Retry, Runbook, RunbookStep, references, substitute
from drorch.runbook.names import REPLICA_FIELDS
from drorch.runbook.steps.base import Param, ParamKind, StepType, bind_args, load_step_types
from drorch.runbook.when import Condition, WhenError, parse_condition

HEADER_KEYS = ("name", "description", "params", "steps")
STEP_KEYS = (
    "id",
    "action",
    "with",
    "when",
    "timeout",
    "retry",
    "confirm",
    "on_failure",
    "rollback",
)
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
MAX_STEPS = 500
WHEN_ROOTS = ("params", "facts", "steps", "observed")
STEP_FIELDS = ("status", "changed", "message", "data")
OBSERVED = {"replica": 4, "vm": 3, "reachable": 2, "epoch": 1}


def load_runbook(path: str | Path) -> Runbook:
    p = Path(path)
    return parse_runbook_text(read_config_text(p, "a runbook"), str(p))


def parse_runbook_text(text: str, file: str = "<runbook>") -> Runbook:
    root = parse_located(text, file)
    runbook, reports = check_runbook(root, file, text)
    if reports or runbook is None:
        raise ConfigError(reports)
    return runbook


def check_runbook(
    root: Located, file: str, text: str = "", step_types: Mapping[str, StepType] | None = None
) -> tuple[Runbook | None, list[ReportItem]]:
    types = step_types if step_types is not None else load_step_types()
    reports = f.Reports()
    body = f.mapping(root, "a runbook", reports)
    if body is None:
        return None, reports.items
    f.check_keys(root, HEADER_KEYS, ("name", "steps"), "runbook", reports)
    name = f.string(body["name"], "name", reports) if "name" in body else None
    description = ""
    if "description" in body:
        description = f.string(body["description"], "description", reports, empty_ok=True) or ""
    params = _params(body.get("params"), reports)
    steps: list[RunbookStep] = []
    loader = _StepLoader(types, {p.name: p for p in params}, reports, text)
    steps_node = body.get("steps")
    if steps_node is not None:
        if not isinstance(steps_node.value, list) or not steps_node.value:
            reports.error("bad-type", "steps must be a non-empty list", steps_node.position)
        elif len(steps_node.value) > MAX_STEPS:
            reports.error("bad-value", f"at most {MAX_STEPS} steps", steps_node.position)
        else:
            for item in steps_node.value:
                step = loader.step(item, rollback_of=None)
                if step is not None:
                    steps.append(step)
    if reports.items or name is None:
        return None, reports.items
    return Runbook(name, description, tuple(params), tuple(steps), file, text), []


def _params(node: Located | None, reports: f.Reports) -> list[Param]:
    if node is None:
        return []
    body = f.mapping(node, "params", reports)
    out: list[Param] = []
    for name, value in (body or {}).items():
        if not PARAM_NAME.match(name):
            reports.error(
                "bad-value",
                f"param name {name!r}: letters, digits, '_' and '-' only",
                node.key_positions.get(name, node.position),
            )
            continue
        param = f.runbook_param(name, value, reports)
        if param is not None:
            out.append(param)
    return out


class _StepLoader:
    def __init__(
        self, types: Mapping[str, StepType], params: dict[str, Param], reports: f.Reports,
        text: str,
    ) -> None:  # fmt: skip
        self.lines = text.splitlines()
        self.types = types
        self.params = params
        self.reports = reports
        self.seen: dict[str, Position] = {}  # step id -> where first defined

    def step(self, node: Located, rollback_of: str | None) -> RunbookStep | None:
        r = self.reports
        what = "step" if rollback_of is None else f"rollback of {rollback_of!r}"
        body = f.mapping(node, what, r)
        if body is None:
            return None
        allowed = STEP_KEYS if rollback_of is None else (*STEP_KEYS[:-2], "on_failure")
        raw_id = body["id"].value if "id" in body else None
        what = f"step {raw_id!r}" if isinstance(raw_id, str) else what
        f.check_keys(node, allowed, ("id", "action"), what, r)
        step_id = self._id(body.get("id"), what)
        known_before = set(self.seen) - ({step_id} if step_id else set())
        if step_id is not None:
            self.seen.setdefault(step_id, body["id"].position)
        action = self._action(body.get("action"), what)
        step_type = self.types.get(action or "")
        args = self._args(body.get("with"), step_type, what)
        when = self._when(body.get("when"), what, known_before)
        timeout = f.duration(body["timeout"], f"{what} timeout", r) if "timeout" in body else None
        retry = Retry()
        if "retry" in body:
            retry = f.retry(body["retry"], timeout, what, r) or Retry()
        confirm = self._confirm(body.get("confirm"), what, step_id, action)
        on_failure = OnFailure.ABORT
        if "on_failure" in body:
            raw = body["on_failure"].value
            choices = [o.value for o in OnFailure]
            if raw in choices:
                on_failure = OnFailure(raw)
            else:
                r.error(
                    "bad-value",
                    f"{what} on_failure must be one of {', '.join(choices)}"
                    + f.did_you_mean(str(raw), choices),
                    body["on_failure"].position,
                )
        rollback: list[RunbookStep] = []
        undo = False
        if "rollback" in body and step_id is not None:
            undo, rollback = self._rollback(body["rollback"], step_id, step_type, action)
        if step_id is None or action is None or args is None:
            return None
        return RunbookStep(
            step_id, action, args, when, timeout, retry, confirm, on_failure,
            tuple(rollback), undo, node.position,
        )  # fmt: skip

    def _id(self, node: Located | None, what: str) -> str | None:
        if node is None:
            return None
        if not isinstance(node.value, str) or not NAME.match(node.value):
            self.reports.error(
                "bad-value",
                f"{what} id must be 1-64 letters, digits, '_' or '-', got {node.value!r}",
                node.position,
            )
            return None
        first = self.seen.get(node.value)
        if first is not None:
            self.reports.error(
                "duplicate-id",
                f"step id {node.value!r} is already used (first at line {first.line})",
                node.position,
            )
            return None
        return node.value

    def _action(self, node: Located | None, what: str) -> str | None:
        if node is None:
            return None
        if not isinstance(node.value, str) or node.value not in self.types:
            hint = f.did_you_mean(str(node.value), self.types)
            self.reports.error(
                "unknown-action",
                f"{what}: unknown action {node.value!r}{hint}; `drorch runbook actions` lists them",
                node.position,
            )
            return None
        return node.value

    def _args(
        self, node: Located | None, step_type: StepType | None, what: str
    ) -> dict[str, object] | None:
        if node is None:
            raw: dict[str, object] = {}
            positions: dict[str, Position] = {}
            where = Position("", 0, 0)
        else:
            body = f.mapping(node, f"{what} with", self.reports)
            if body is None:
                return None
            raw = {k: v.plain() for k, v in body.items()}
            positions = {k: v.position for k, v in body.items()}
            where = node.position
        broken: set[str] = set()
        for key, value in raw.items():
            for ref in references(value):
                if not self._reference_ok(ref, what, positions[key]):
                    broken.add(key)
        if step_type is not None:
            self._bind(step_type, raw, positions, where, what, broken)
        return None if broken else raw

    def _reference_ok(self, ref: str, what: str, position: Position) -> bool:
        if ref.startswith("!"):
            self.reports.error(
                "bad-value",
                f"{what}: {ref[1:]!r} is not a reference; write ${{params.NAME}} "
                "(or $${ for a literal)",
                position,
            )
            return False
        if ref not in self.params:
            self.reports.error(
                "undefined-param",
                f"{what}: param {ref!r} is not declared{f.did_you_mean(ref, self.params)}",
                position,
            )
            return False
        return True

    def _bind(
        self, step_type: StepType, raw: dict[str, object], positions: dict[str, Position],
        where: Position, what: str, broken: set[str],
    ) -> None:  # fmt: skip
        declared = {p.name: p for p in step_type.params}
        sample: dict[str, object] = {}
        for key, value in raw.items():
            whole = _whole_reference(value)
            target = declared.get(key)
            if key in broken:
                sample[key] = _sample(target) if target else value
                continue
            if whole is not None and target is not None:
                param = self.params[whole]
                if param.required:
                    if param.kind != target.kind and target.kind is not ParamKind.STR:
                        self.reports.error(
                            "bad-arg",
                            f"{what}: argument {key!r} wants {target.kind.value} but param "
                            f"{whole!r} is {param.kind.value}",
                            positions[key],
                        )
                    sample[key] = _sample(target)  # typed at run time, with its value
                    continue
            sample[key] = substitute(value, {n: _sample(p) for n, p in self.params.items()})
        args, problems = bind_args(step_type.params, sample)
        if not problems:
            problems = step_type.validate(args)
        fallback = where if where.line else Position(where.file, 0, 0)
        for problem in problems:
            pos = positions.get(problem.arg or "", fallback)
            self.reports.error(problem.code, f"{what} ({step_type.name}): {problem.message}", pos)

    def _when(self, node: Located | None, what: str, known_steps: set[str]) -> Condition | None:
        if node is None:
            return None
        if not isinstance(node.value, str):
            self.reports.error("bad-when", f"{what} when: a condition string", node.position)
            return None
        pos = node.position
        if self._quoted(pos):
            pos = Position(pos.file, pos.line, pos.col + 1)
        try:
            cond = parse_condition(node.value)
        except WhenError as exc:
            at = Position(pos.file, pos.line, pos.col + exc.offset)
            self.reports.error("bad-when", f"{what} when: {exc.message}", at)
            return None
        for segments, offset in cond.names:
            at = Position(pos.file, pos.line, pos.col + offset)
            self._when_name(segments, at, what, known_steps)
        return cond

    def _quoted(self, pos: Position) -> bool:
        if not 0 < pos.line <= len(self.lines):
            return False
        line = self.lines[pos.line - 1]
        return 0 < pos.col <= len(line) and line[pos.col - 1] in "'\""

    def _when_name(self, seg: tuple[str, ...], at: Position, what: str, known: set[str]) -> None:
        r = self.reports
        dotted = ".".join(seg)
        root = seg[0]
        if root not in WHEN_ROOTS or len(seg) < 2:
            hint = f" (a string? quote it: '{dotted}')" if len(seg) == 1 else ""
            r.error(
                "bad-when",
                f"{what} when: {dotted!r}: names start with {', '.join(WHEN_ROOTS)} "
                f"and name a field (e.g. params.mode){hint}",
                at,
            )
        elif root == "params" and (len(seg) != 2 or seg[1] not in self.params):
            r.error(
                "undefined-param",
                f"{what} when: param {'.'.join(seg[1:])!r} is not declared"
                + f.did_you_mean(seg[1], self.params),
                at,
            )
        elif root == "steps":
            if seg[1] not in known:
                r.error(
                    "undefined-step",
                    f"{what} when: no earlier step {seg[1]!r}" + f.did_you_mean(seg[1], known),
                    at,
                )
            elif len(seg) < 3 or seg[2] not in STEP_FIELDS or (seg[2] == "data") != (len(seg) == 4):
                r.error(
                    "bad-when",
                    f"{what} when: {dotted!r}: use steps.ID.status|changed|message or "
                    "steps.ID.data.KEY",
                    at,
                )
        elif root == "observed" and (
            OBSERVED.get(seg[1]) != len(seg) - 1
            or (seg[1] == "replica" and seg[-1] not in REPLICA_FIELDS)
        ):
            r.error(
                "bad-when",
                f"{what} when: {dotted!r}: use observed.replica.VOLUME.SITE."
                f"{'|'.join(REPLICA_FIELDS)}, "
                "observed.vm.VM.SITE, observed.reachable.SITE or observed.epoch",
                at,
            )

    def _confirm(
        self, node: Located | None, what: str, step_id: str | None, action: str | None
    ) -> str | None:
        if node is None or node.value is False:
            return None
        if node.value is True:
            return f"Run step {step_id} ({action})?"
        if isinstance(node.value, str) and node.value.strip():
            for ref in references(node.value):
                self._reference_ok(ref, what, node.position)
            return node.value
        self.reports.error("bad-type", f"{what} confirm: true, false or a prompt", node.position)
        return None

    def _rollback(
        self, node: Located, step_id: str, step_type: StepType | None, action: str | None
    ) -> tuple[bool, list[RunbookStep]]:
        if node.value == "undo":
            if step_type is not None and step_type.undo is None and action != "plan.execute":
                self.reports.error(
                    "no-undo",
                    f"step {step_id!r}: rollback: undo, but {action!r} has no undo; "
                    "write the rollback steps instead",
                    node.position,
                )
            return True, []
        if not isinstance(node.value, list) or not node.value:
            self.reports.error(
                "bad-type", f"step {step_id!r} rollback: 'undo' or a list of steps", node.position
            )
            return False, []
        steps = [self.step(item, rollback_of=step_id) for item in node.value]
        return False, [s for s in steps if s is not None]


def _whole_reference(value: object) -> str | None:
    if isinstance(value, str):
        refs = references(value)
        if len(refs) == 1 and value.strip().startswith("${") and value.strip().endswith("}"):
            return refs[0]
    return None


def _sample(param: Param) -> object:
    if not param.required:
        return param.default
    if param.choices:
        return param.choices[0]
    return {ParamKind.INT: 1, ParamKind.FLOAT: 1.0, ParamKind.BOOL: True,
            ParamKind.DURATION: 1.0, ParamKind.STR_LIST: ("x",)}.get(param.kind, "x")  # fmt: skip
