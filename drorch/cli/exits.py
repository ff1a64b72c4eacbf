"""drorch's exit codes and its one error line, `drorch: error: MESSAGE`.

Every command exits with one of these (the README's "Exit codes" table lists the same
rows; `tests/cli/test_cli_exit_codes.py` checks the two against each other and against
every literal exit in `drorch/cli`). `drorch status` reads 1 and 2 as its health:
1 degraded, 2 broken.
"""

from __future__ import annotations

import sys
from enum import IntEnum
from typing import NoReturn

import click


class ExitCode(IntEnum):
    OK = 0  # done (a dry run: it would be done); `status`: healthy
    FAILED = 1  # the operation failed; `status`: degraded
    USAGE = 2  # bad usage, an unknown name, or a bad config file; `status`: broken
    REFUSED = 3  # refused as unsafe: nothing was done (--force only for forceable ones)
    SPLIT_BRAIN = 4  # replication found a split brain: resolve it first
    STALE_EPOCH = 5  # a fencing epoch not above the highest already seen (equal: reuse)
    INTERRUPTED = 130  # Ctrl-C


PREFIX = "drorch: error: "


def error_line(message: str) -> str:
    return f"{PREFIX}{message}"


def fail(message: str, code: ExitCode | int = ExitCode.FAILED) -> NoReturn:
    """Print `drorch: error: MESSAGE` on stderr and exit with `code`."""
    click.echo(error_line(message), err=True)
    sys.exit(int(code))


class Refused(click.ClickException):
    """Refused as unsafe; nothing was done (exit 3)."""

    exit_code = ExitCode.REFUSED


class BadName(click.ClickException):
    """An unknown site, node, VM or volume on the command line (exit 2)."""

    exit_code = ExitCode.USAGE


def show_click_error(exc: click.ClickException) -> None:
    """A click error as drorch prints every error: usage hint first, then one
    `drorch: error:` line (click's own would say `Error:`)."""
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        ctx = exc.ctx
        hint = ""
        if ctx.command.get_help_option(ctx) is not None:
            hint = f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help.\n"
        click.echo(f"{ctx.get_usage()}\n{hint}", err=True)
    click.echo(error_line(exc.format_message()), err=True)
