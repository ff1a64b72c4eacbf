"""The `drorch` command. Subcommands are imported lazily from an explicit map, so that
e.g. libvirt is only needed by the commands that use it."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from drorch import __version__

# command name -> "module:attribute" of a click command or group
COMMANDS: dict[str, str] = {
    "config": "drorch.cli.config_cmd:config",
    "status": "drorch.cli.status_cmd:status",
    "plan": "drorch.cli.plan_cmd:plan",
    "quorum": "drorch.cli.quorum_cmd:quorum",
    "quorumd": "drorch.cli.quorumd_cmd:quorumd",
    "repl": "drorch.cli.repl_cmd:repl",
    "drbd": "drorch.cli.drbd_cmd:drbd",
    "vm": "drorch.cli.vm_cmd:vm",
    "lab": "drorch.cli.lab_cmd:lab",
    "runbook": "drorch.cli.runbook_cmd:runbook",
    "watchdog": "drorch.cli.watchdog_cmd:watchdog",
    "sim": "drorch.cli.sim_cmd:sim",
    "agent": "drorch.cli.agent_cmd:agent",
    "maintenance": "drorch.cli.agent_cmd:maintenance",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        command: Any = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):  # pragma: no cover - programming error
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="drorch")
def cli() -> None:
    """drorch: disaster-recovery failover orchestration for two-site clusters."""


def main() -> None:
    """The entry point. Whatever a command fails with, no Python traceback reaches the
    user: an unexpected exception is a bug, reported on one line (DRORCH_DEBUG=1 shows
    the traceback)."""
    try:
        cli(prog_name="drorch")
    except KeyboardInterrupt:
        click.echo("drorch: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("DRORCH_DEBUG"):
            raise
        click.echo(
            f"drorch: error: {type(exc).__name__}: {exc} (a bug in drorch: please report it;"
            " DRORCH_DEBUG=1 shows where)",
            err=True,
        )
        sys.exit(1)
