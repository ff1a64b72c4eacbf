"""`drorch agent run|status|self-fence` and `drorch maintenance on|off`."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

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
    from drorch.fencing.watchdog import WatchdogError

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
    try:
        sys.exit(run(config, cluster, node, stop))
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
    render(answer, fmt)


@agent.command("self-fence")
@config_option
@_node_option
def self_fence_cmd(config: Path, node: str) -> None:
    """Stop this node writing now: destroy its guests, demote its volumes. The soft
    watchdog runs this when the agent stops feeding it."""
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
        done = EnvResources(cluster, node, env).self_fence(
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
