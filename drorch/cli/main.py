"""The `drorch` command. Subcommands are imported lazily from an explicit map, so that
e.g. libvirt is only needed by the commands that use it."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from drorch import __version__
from drorch.cli.exits import ExitCode, error_line, show_click_error
from drorch.registry import Registry

# command name -> "module:attribute" of a click command or group (drorch.registry)
COMMANDS: Registry[click.Command] = Registry(
    "command",
    {
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
        "drill": "drorch.cli.drill_cmd:drill",
        "scheduler": "drorch.cli.scheduler_cmd:scheduler",
        "metrics": "drorch.cli.metrics_cmd:metrics",
        "migrate": "drorch.cli.shortcut_cmd:migrate",
        "failover": "drorch.cli.shortcut_cmd:failover",
        "failback": "drorch.cli.shortcut_cmd:failback",
        "start": "drorch.cli.shortcut_cmd:start",
    },
    lambda obj: isinstance(obj, click.Command),
)


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        return COMMANDS.load(cmd_name)

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Click's main, but every error is one `drorch: error:` line (click prints
        `Error:`), with the exit codes of `drorch.cli.exits`."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as exc:
            show_click_error(exc)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo(error_line("aborted"), err=True)
            sys.exit(ExitCode.FAILED)
        sys.exit(result if isinstance(result, int) else ExitCode.OK)


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
        click.echo(error_line("interrupted"), err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as exc:
        if os.environ.get("DRORCH_DEBUG"):
            raise
        click.echo(
            f"drorch: error: {type(exc).__name__}: {exc} (a bug in drorch: please report it;"
            " DRORCH_DEBUG=1 shows where)",
            err=True,
        )
        sys.exit(ExitCode.FAILED)
