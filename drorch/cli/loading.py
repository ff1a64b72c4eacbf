"""The `-c/--config FILE` option and loading the cluster for a command.

A config with errors prints every `FILE:LINE:COL: CODE: message` on stderr and exits 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from drorch.model.types import Cluster

F = TypeVar("F", bound=Callable[..., Any])
EXIT_CONFIG = 2


def config_option(func: F) -> F:
    """`-c/--config FILE` (or $DRORCH_CONFIG)."""
    return click.option(
        "-c",
        "--config",
        "config",
        required=True,
        envvar="DRORCH_CONFIG",
        type=click.Path(path_type=Path),  # the loader refuses all but a regular file
        help="The cluster YAML file (or $DRORCH_CONFIG).",
    )(func)


def load_or_exit(config: Path) -> Cluster:
    """The validated cluster; on errors print them all and exit 2. Warnings go to stderr."""
    from drorch.model.loader import load_cluster_with_warnings
    from drorch.model.reports import ConfigError

    try:
        cluster, warnings = load_cluster_with_warnings(config)
    except ConfigError as exc:
        for report in exc.reports:
            click.echo(str(report), err=True)
        sys.exit(EXIT_CONFIG)
    for warning in warnings:
        click.echo(str(warning), err=True)
    return cluster


@dataclass
class Loaded:
    cluster: Cluster
    env: Any  # drorch.environment.Environment (imported lazily)
    problems: list[str]


@contextmanager
def cluster_environment(config: Path) -> Iterator[Loaded]:
    """Load the cluster and build its environment; drivers that fail are listed in
    `problems` (reported by the command), and the environment is closed afterwards."""
    from drorch.envbuild import build_environment_report

    cluster = load_or_exit(config)
    env, problems = build_environment_report(cluster, config.resolve().parent)
    env.config_file = config.resolve()
    try:
        yield Loaded(cluster, env, [str(p) for p in problems])
    finally:
        env.close()
