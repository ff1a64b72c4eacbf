"""Other step types: `shell` (a command here or on a node, with a timeout) and `notify`
(append a line to a file, e.g. the change log a change ticket points at)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from drorch.remote.base import CommandRunner, CommandTimeout, RunnerError
from drorch.runbook.steps.base import (
    ArgProblem,
    Param,
    ParamKind,
    StepContext,
    StepFailed,
    StepResult,
    StepType,
    register,
)


def _runner(ctx: StepContext, node: str) -> CommandRunner:
    if not node:
        from drorch.remote.local import LocalRunner

        return LocalRunner(clock=ctx.clock, cwd=ctx.env.base_dir)
    try:
        return ctx.env.runner(node)
    except KeyError:
        raise StepFailed("unknown-node", f"no node {node!r} in the environment") from None


def _argv(args: Mapping[str, object], key: str) -> list[str]:
    value = args.get(key)
    if isinstance(value, tuple):
        return [str(v) for v in value]
    return ["sh", "-c", str(value)] if value else []


def _timeout(ctx: StepContext, args: Mapping[str, object]) -> float:
    value = args.get("timeout")
    limit = float(value) if isinstance(value, int | float) else 60.0
    left = ctx.remaining()
    return limit if left is None else max(0.001, min(limit, left))


def _exec(ctx: StepContext, args: Mapping[str, object], argv: Sequence[str]) -> tuple[int, str]:
    runner = _runner(ctx, str(args.get("node") or ""))
    try:
        result = runner.run(argv, timeout=_timeout(ctx, args))
    except CommandTimeout as exc:
        raise StepFailed("command-timeout", f"{' '.join(argv)}: {exc}") from exc
    except RunnerError as exc:
        raise StepFailed("node-unreachable", f"{' '.join(argv)}: {exc}") from exc
    out = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return result.returncode, out[-1] if out else ""


@register
class Shell(StepType):
    """Run a command locally or on a node (`node`), with a timeout.

    `command` runs through `sh -c`; `argv` runs as is (no shell). `unless` is a read-only
    command whose exit 0 means "already done": it is the probe, and check mode runs it to
    say whether the step would change anything (the command itself never runs in a dry
    run). A non-zero exit other than `expect_rc` fails with command-failed."""

    name = "shell"
    params = (
        Param("command", ParamKind.STR, "A shell command line.", default=""),
        Param("argv", ParamKind.STR_LIST, "The command as a list (no shell).", default=()),
        Param("node", ParamKind.STR, "The node to run on (default: here).", default=""),
        Param("timeout", ParamKind.DURATION, "Kill it after this long.", default=60.0),
        Param("expect_rc", ParamKind.INT, "The exit code that means success.", default=0),
        Param("unless", ParamKind.STR, "Read-only command; exit 0 = already done.", default=""),
    )

    def validate(self, args: Mapping[str, object]) -> list[ArgProblem]:
        if bool(args.get("command")) == bool(args.get("argv")):
            return [ArgProblem("bad-arg", None, "give exactly one of 'command' and 'argv'")]
        return []

    def describe(self, args: Mapping[str, object]) -> str:
        where = f" on {args['node']}" if args.get("node") else ""
        what = args.get("command") or " ".join(_argv(args, "argv"))
        return f"run {what!r}{where}"

    def _done(self, ctx: StepContext, args: Mapping[str, object]) -> bool | None:
        if not args.get("unless"):
            return None
        rc, _ = _exec(ctx, args, _argv(args, "unless"))
        return rc == 0

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        done = self._done(ctx, args)
        checked = () if done is None else (f"unless {args['unless']!r}: exit {0 if done else 1}",)
        if done:
            return StepResult(False, f"would skip {self.describe(args)}: already done", checked)
        return StepResult(True, f"would {self.describe(args)}", checked)

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        return bool(self._done(ctx, args))

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        if self._done(ctx, args):
            return StepResult(False, "already done (unless exited 0)")
        argv = _argv(args, "command") or _argv(args, "argv")
        rc, last = _exec(ctx, args, argv)
        if rc != args.get("expect_rc", 0):
            raise StepFailed("command-failed", f"{' '.join(argv)} exited {rc}: {last}",
                             data={"rc": rc})  # fmt: skip
        return StepResult(True, f"{self.describe(args)}: exit {rc}", data={"rc": rc})


@register
class Notify(StepType):
    """Append a line to a file (relative paths: next to the cluster config).

    The line carries the UTC time, the run id and the step id, so a resumed run sees
    (probe) that it already wrote it and does not write it twice."""

    name = "notify"
    params = (
        Param("message", ParamKind.STR, "What to say."),
        Param("file", ParamKind.STR, "The file to append to."),
    )

    def _path(self, ctx: StepContext, args: Mapping[str, object]) -> Path:
        path = Path(str(args["file"]))
        return path if path.is_absolute() else ctx.env.base_dir / path

    def _tag(self, ctx: StepContext) -> str:
        return f"run={ctx.run_id} step={ctx.step_id}"

    def describe(self, args: Mapping[str, object]) -> str:
        return f"notify {args['file']}: {args['message']}"

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        path = self._path(ctx, args)
        where = path.parent if not path.exists() else path
        ok = os.access(where, os.W_OK)
        if not ok:
            raise StepFailed("not-writable", f"cannot write {path}")
        return StepResult(True, f"would append to {path}: {args['message']}",
                          (f"{where} is writable",))  # fmt: skip

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        path = self._path(ctx, args)
        tag = self._tag(ctx) + " "
        return path.exists() and any(tag in line for line in path.read_text().splitlines())

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        path = self._path(ctx, args)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ctx.clock.now()))
        line = f"{stamp} {self._tag(ctx)} {args['message']}\n"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StepFailed("not-writable", f"cannot write {path}: {exc}") from exc
        return StepResult(True, f"appended to {path}", data={"file": str(path)})
