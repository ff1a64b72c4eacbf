"""The flags every destructive command shares, and what they mean (one convention):

- `--dry-run`: observe and check everything the real run checks (the same refusals,
  the same exit codes), say what would be done, change nothing;
- `--yes`: do not ask. Without it a destructive command asks on the terminal; with
  no terminal to ask on (stdin is not a TTY: a script, a pipe, cron) it asks nothing
  and stops at once, as it does on any answer but yes (exit 1, nothing done). A script
  says `--yes`; a piped "y" is not a confirmation;
- `--force`: override a forceable refusal, and nothing else. Whatever may lose data
  also needs `--accept-data-loss`.

Also the click callbacks that read a duration or a size as the config file writes them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def dry_run_option(func: F) -> F:
    return click.option(
        "--dry-run",
        is_flag=True,
        help="Check everything the real run checks and say what it would do; change nothing.",
    )(func)


def yes_option(func: F) -> F:
    return click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")(func)


def force_options(overrides: str) -> Callable[[F], F]:
    """`--force` (its help: `overrides`, the forceable refusal it overrides) and
    `--accept-data-loss`; check them with `check_force`."""

    def decorate(func: F) -> F:
        func = click.option(
            "--accept-data-loss",
            is_flag=True,
            help="Acknowledge that forcing may lose or corrupt data.",
        )(func)
        return click.option("--force", is_flag=True, help=overrides)(func)

    return decorate


def check_force(force: bool, accept_data_loss: bool) -> None:
    """A usage error unless `--force` and `--accept-data-loss` are given together."""
    if force != accept_data_loss:
        raise click.UsageError("--force needs --accept-data-loss (and the other way round)")


def confirm_or_stop(yes: bool, question: str) -> None:
    """Ask `question` on the terminal unless --yes; no, no answer, or no terminal at all
    (stdin not a TTY) ends the command with exit 1, nothing done."""
    if yes:
        return
    if sys.stdin is None or not sys.stdin.isatty():
        raise click.ClickException(
            f"not confirmed (no terminal to ask on): {question.rstrip('?')}; nothing done:"
            " --yes goes ahead without asking"
        )
    try:
        answer = click.confirm(question, default=False)
    except click.Abort:
        click.echo("", err=True)
        raise click.ClickException(
            "not confirmed (no answer); nothing done: --yes does not ask"
        ) from None
    if not answer:
        raise click.ClickException("not confirmed; nothing done")


def duration(_ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A click callback: a duration written like everywhere else (`10s`, `5m`, `300ms`;
    a bare number is seconds), positive."""
    if value is None:
        return None
    from drorch.model.units import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None
    if seconds <= 0:
        raise click.BadParameter("must be positive", param=param)
    return seconds


def byte_size(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    """A click callback: a size written like everywhere else (`64KiB`, `1GiB`, `10GB`; a
    bare number is bytes)."""
    from drorch.model.units import UnitError, parse_size

    if value is None:
        return None
    try:
        return parse_size(value)
    except UnitError as exc:
        raise click.BadParameter(str(exc)) from exc
