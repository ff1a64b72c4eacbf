"""Service step types: `service.start`, `service.stop`, `service.relocate`.

A service is started and stopped by its configured commands on a node (`start:` /
`stop:` in the cluster file) through that node's runner. drorch records what it last
did to each service (`services-<cluster>.json` under the state dir; in a simulated
cluster `sim-services.json` in the sim folder, where every service starts out running
at the primary site): the probe reads that record, so a resumed run does not start a
service twice, and the simulated monitors read it too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from drorch.decide.startup import service_node
from drorch.model.types import Cluster, Service
from drorch.remote.base import CommandTimeout, RunnerError
from drorch.runbook.steps._where import PLAN_ARGS, service, sim_dir, site_name, text
from drorch.runbook.steps.base import (
    Param,
    ParamKind,
    StepContext,
    StepFailed,
    StepResult,
    StepType,
    register,
)

COMMAND_TIMEOUT = 120.0


def _records_path(ctx: StepContext) -> Path:
    d = sim_dir(ctx)
    if d is not None:
        return d / "sim-services.json"
    return ctx.env.state_dir / f"services-{ctx.cluster.name}.json"


def _load(ctx: StepContext) -> dict[str, dict[str, str]]:
    path = _records_path(ctx)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raw = None
    except (OSError, ValueError) as exc:
        raise StepFailed("state-unreadable", f"{path}: {exc}") from exc
    if isinstance(raw, dict):
        return {str(k): dict(v) for k, v in raw.items() if isinstance(v, dict)}
    if sim_dir(ctx) is None:
        return {}
    return {name: dict(record) for name, record in _sim_default(ctx.cluster).items()}


_DEFAULT: list[tuple[Cluster, dict[str, dict[str, str]]]] = []  # one slot: the last cluster


def _sim_default(cluster: Cluster) -> dict[str, dict[str, str]]:
    """The simulated services before drorch touched any: all running at primary_site
    (computed once per cluster model: a plan asks for it at every step)."""
    hit = _DEFAULT[0] if _DEFAULT else None
    if hit is None or hit[0] is not cluster:
        site = cluster.primary_site
        hit = (cluster, {
            s.name: {"state": "running", "site": site, "node": service_node(cluster, s, site)}
            for s in cluster.services
        })  # fmt: skip
        _DEFAULT[:] = [hit]
    return hit[1]


def service_record(ctx: StepContext, name: str) -> dict[str, str]:
    """What drorch last did to service `name`: {"state", "site", "node"} (may be empty)."""
    return _load(ctx).get(name, {})


def _record(ctx: StepContext, name: str, state: str, site: str, node: str) -> None:
    records = _load(ctx)
    records[name] = {"state": state, "site": site, "node": node}
    path = _records_path(ctx)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _where(
    ctx: StepContext, svc: Service, args: Mapping[str, object], site_key: str
) -> tuple[str, str]:
    site = text(args, site_key)
    node = text(args, "node") if site_key == "site" else text(args, "from_node")
    if not site and node:
        site = ctx.cluster.node(node)[0].name
    if not site:
        raise StepFailed("bad-arg", f"{svc.name}: give the site (or node) to act at")
    site_name(ctx, site)
    return site, node or service_node(ctx.cluster, svc, site)


def _run(ctx: StepContext, svc: Service, which: str, node: str) -> str:
    command = svc.start if which == "start" else svc.stop
    try:
        runner = ctx.env.runner(node)
    except KeyError:
        raise StepFailed("unknown-node", f"no runner for node {node!r}") from None
    left = ctx.remaining()
    timeout = COMMAND_TIMEOUT if left is None else max(0.001, min(COMMAND_TIMEOUT, left))
    try:
        result = runner.run(["sh", "-c", command], timeout=timeout)
    except CommandTimeout as exc:
        raise StepFailed("command-timeout", f"{svc.name} {which} on {node}: {exc}") from exc
    except RunnerError as exc:
        raise StepFailed("node-unreachable", f"{svc.name} {which} on {node}: {exc}") from exc
    if result.returncode != 0:
        last = (result.stderr.strip() or result.stdout.strip()).splitlines()
        raise StepFailed(
            f"service-{which}-failed",
            f"{svc.name}: {command!r} on {node} exited "
            f"{result.returncode}: {last[-1] if last else ''}",
            data={"rc": result.returncode},
        )
    return f"{svc.name}: {which} {command!r} on {node}: exit 0"


class _ServiceStep(StepType):
    which = "start"
    undo_restores = True
    state = "running"

    def _target(self, ctx: StepContext, args: Mapping[str, object]) -> tuple[Service, str, str]:
        svc = service(ctx, text(args, "target"))
        site, node = _where(ctx, svc, args, "site")
        return svc, site, node

    def describe(self, args: Mapping[str, object]) -> str:
        where = text(args, "site") or text(args, "node")
        return f"{self.which} service {text(args, 'target')} at {where}"

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        svc, site, node = self._target(ctx, args)
        rec = service_record(ctx, svc.name)
        seen = f"drorch's record: {rec.get('state', 'none')} at {rec.get('site', '-')}"
        checked = (f"node {node} has a runner: {node in ctx.env.runners}", seen)
        if node not in ctx.env.runners:
            raise StepFailed("unknown-node", f"no runner for node {node!r}")
        if self.probe(ctx, args):
            return StepResult(False, f"{svc.name} is already {self.state} at {site}", checked)
        command = svc.start if self.which == "start" else svc.stop
        return StepResult(True, f"would run {command!r} on {node}", checked)

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        svc, _site, node = self._target(ctx, args)
        rec = service_record(ctx, svc.name)
        return rec.get("state") == self.state and rec.get("node") == node

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        svc, site, node = self._target(ctx, args)
        if self.probe(ctx, args):
            return StepResult(False, f"{svc.name} is already {self.state} on {node}")
        message = _run(ctx, svc, self.which, node)
        _record(ctx, svc.name, self.state, site, node)
        return StepResult(True, message, data={"service": svc.name, "site": site, "node": node})


@register
class ServiceStart(_ServiceStep):
    """Start a service on its node at the site (its `start:` command); after `after`.

    Fails with service-start-failed (the exit code and the last line of output) or
    command-timeout. Undo: service.stop."""

    name = "service.start"
    params = (*PLAN_ARGS, Param("after", ParamKind.STR_LIST, "Started after these.", default=()))
    undo = "service.stop"


@register
class ServiceStop(_ServiceStep):
    """Stop a service on its node at the site (its `stop:` command); after `before`.

    Fails with service-stop-failed or command-timeout. Undo: service.start."""

    name = "service.stop"
    params = (*PLAN_ARGS, Param("before", ParamKind.STR_LIST, "Stopped after these.", default=()))
    undo = "service.start"
    which = "stop"
    state = "stopped"


@register
class ServiceRelocate(StepType):
    """Move a service: stop it on `from_node` at `from_site`, then start it on its node
    at the site. Stops first, so it never runs twice. Undo: itself, back again."""

    name = "service.relocate"
    params = (
        *PLAN_ARGS,
        Param("from_site", ParamKind.STR, "Where it runs now.", default=""),
        Param("from_node", ParamKind.STR, "The node it runs on now.", default=""),
    )
    undo = "service.relocate"
    undo_restores = True

    def describe(self, args: Mapping[str, object]) -> str:
        moves = f"{text(args, 'from_site')} -> {text(args, 'site')}"
        return f"relocate service {text(args, 'target')} {moves}"

    def _ends(
        self, ctx: StepContext, args: Mapping[str, object]
    ) -> tuple[Service, tuple[str, str], tuple[str, str]]:
        svc = service(ctx, text(args, "target"))
        return svc, _where(ctx, svc, args, "from_site"), _where(ctx, svc, args, "site")

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        svc, (_fsite, fnode), (_site, node) = self._ends(ctx, args)
        for n in (fnode, node):
            if n not in ctx.env.runners:
                raise StepFailed("unknown-node", f"no runner for node {n!r}")
        checked = (f"runners for {fnode} and {node}",)
        if self.probe(ctx, args):
            return StepResult(False, f"{svc.name} already runs on {node}", checked)
        return StepResult(True, f"would stop {svc.name} on {fnode}, start it on {node}", checked)

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        svc, _, (_site, node) = self._ends(ctx, args)
        rec = service_record(ctx, svc.name)
        return rec.get("state") == "running" and rec.get("node") == node

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        svc, (fsite, fnode), (site, node) = self._ends(ctx, args)
        if self.probe(ctx, args):
            return StepResult(False, f"{svc.name} already runs on {node}")
        stopped = _run(ctx, svc, "stop", fnode)
        _record(ctx, svc.name, "stopped", fsite, fnode)
        started = _run(ctx, svc, "start", node)
        _record(ctx, svc.name, "running", site, node)
        return StepResult(True, f"{stopped}; {started}", data={"service": svc.name, "site": site})

    def undo_args(self, args: Mapping[str, object], result: StepResult) -> dict[str, object]:
        return {
            "target": args["target"],
            "site": args.get("from_site", ""),
            "node": args.get("from_node", ""),
            "from_site": args.get("site", ""),
            "from_node": args.get("node", ""),
        }
