"""`drorch agent run|status|self-fence` and `drorch maintenance on|off`."""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from drorch.cli.flags import confirm_or_stop, dry_run_option, yes_option
from drorch.cli.loading import config_option, load_or_exit
from drorch.cli.output import format_option, render

EXIT_FAILED = 1


def _node_option(f: click.decorators.FC) -> click.decorators.FC:
    return click.option("--node", required=True, help="This node's name in the cluster file.")(f)


def _control(config: Path, node: str) -> Path:
    from drorch.agent.daemon import agent_paths
    from drorch.statedir import default_state_dir

    cluster = load_or_exit(config)
    try:
        cluster.node(node)
    except KeyError:
        raise click.BadParameter(f"no node {node!r} in {config}", param_hint="--node") from None
    return agent_paths(default_state_dir(), cluster, node)["control"]


@click.group()
def agent() -> None:
    """The per-node agent: membership, quorum, watchdog, self-fencing, takeover."""


@agent.command("run")
@config_option
@_node_option
@click.option("-v", "--verbose", is_flag=True)
def run_cmd(config: Path, node: str, verbose: bool) -> None:
    """Run this node's agent in the foreground until SIGTERM (clean stop: the watchdog
    is disarmed with the magic close)."""
    from drorch.agent.daemon import AgentStartError, run
    from drorch.cli.agent_runbooks import agent_runbooks
    from drorch.fencing.watchdog import WatchdogError
    from drorch.statedir import default_state_dir

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    cluster = load_or_exit(config)
    try:
        cluster.node(node)
    except KeyError:
        raise click.BadParameter(f"no node {node!r} in {config}", param_hint="--node") from None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1`: every stack
    try:
        state = default_state_dir()
        runbooks = agent_runbooks(cluster, config, node=node, state_dir=state)
        sys.exit(run(config, cluster, node, stop, state, runbooks))
    except (AgentStartError, WatchdogError, OSError, ValueError) as e:
        click.echo(f"drorch: error: {e}", err=True)
        sys.exit(EXIT_FAILED)


@agent.command("status")
@config_option
@_node_option
@format_option()
def status_cmd(config: Path, node: str, fmt: str) -> None:
    """Membership, quorum and its reason, the watchdog's last feed and slack, monitors,
    and the last decision, from the running agent's control socket."""
    from drorch.agent.control import ask

    path = _control(config, node)
    try:
        answer = ask(path, {"op": "status"})
    except (OSError, ValueError) as e:
        click.echo(f"drorch: error: the agent of {node} does not answer on {path}: {e}", err=True)
        sys.exit(EXIT_FAILED)
    render(_for_table(answer) if fmt == "table" else answer, fmt)


def _for_table(answer: dict[str, object]) -> dict[str, object]:
    """Monitors, replicas and background jobs as tables of their own (JSON/YAML keep the
    shape)."""
    out = dict(answer)
    monitors = answer.get("monitors")
    if isinstance(monitors, dict) and monitors:
        out["monitors"] = [
            {"monitor": name, **(m if isinstance(m, dict) else {"state": m})}
            for name, m in monitors.items()
        ]
    replicas = answer.get("replicas")
    if isinstance(replicas, dict) and replicas:
        out["replicas"] = [
            {
                "volume": name,
                **{
                    k: v
                    for k, v in r.items()
                    if k in ("role", "disk", "connection", "epoch", "percent_in_sync", "reason")
                },
            }
            for name, r in replicas.items()
            if isinstance(r, dict)
        ]
    unobserved = answer.get("unobserved")
    if isinstance(unobserved, dict) and unobserved:  # calls past the loop's budget
        out["unobserved"] = [{"call": k, "reason": v} for k, v in unobserved.items()]
    else:
        out.pop("unobserved", None)
    jobs = answer.get("jobs")
    if isinstance(jobs, dict) and jobs:
        rows: list[dict[str, object]] = []
        for key, job in jobs.items():
            for j in job if isinstance(job, list) else [job]:
                if isinstance(j, dict):
                    rows.append({"job": key, **{k: v for k, v in j.items() if k != "name"}})
                elif isinstance(j, str):  # a finished action's line (jobs.rejoined)
                    rows.append({"job": key, "message": j})
        out["jobs"] = rows
    return out


@agent.command("self-fence")
@config_option
@_node_option
@dry_run_option
@yes_option
def self_fence_cmd(config: Path, node: str, dry_run: bool, yes: bool) -> None:
    """Stop this node writing now: destroy its guests, demote its volumes. The soft
    watchdog runs this (with --yes) when the agent stops feeding it; a person is asked
    first, and --dry-run lists what it would stop."""
    from drorch.agent.resources import EnvResources
    from drorch.decide.agent import SelfFenceDecision
    from drorch.envbuild import build_environment_report
    from drorch.model.types import SelfFence

    cluster = load_or_exit(config)
    try:
        cluster.node(node)
    except KeyError:
        raise click.BadParameter(f"no node {node!r} in {config}", param_hint="--node") from None
    env, _ = build_environment_report(cluster, config.resolve().parent)
    try:
        resources = EnvResources(cluster, node, env)
        if dry_run or not yes:
            here = ", ".join(resources.primary_here()) or "nothing runs or writes here"
            if dry_run:
                click.echo(f"would stop writing on {node}: {here}")
                return
            confirm_or_stop(yes, f"Self-fence {node} now (destroy its guests, demote: {here})?")
        done = resources.self_fence(
            SelfFenceDecision(True, SelfFence.SUICIDE, "self-fence requested")
        )
    finally:
        env.close()
    for line in done:
        click.echo(line)
    if any("FAILED" in line for line in done):
        sys.exit(EXIT_FAILED)


@click.command()
@click.argument("state", type=click.Choice(["on", "off"]))
@config_option
@_node_option
def maintenance(state: str, config: Path, node: str) -> None:
    """Maintenance mode (Pacemaker's maintenance-mode, `patronictl pause`): the agents
    keep monitoring but act on nothing, and their watchdogs are disarmed cleanly."""
    from drorch.agent.control import ask

    path = _control(config, node)
    try:
        answer = ask(path, {"op": "maintenance", "on": state == "on"})
    except (OSError, ValueError) as e:
        click.echo(f"drorch: error: the agent of {node} does not answer on {path}: {e}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(
        f"maintenance {'ON: the agents act on nothing' if answer.get('maintenance') else 'off'}"
    )
