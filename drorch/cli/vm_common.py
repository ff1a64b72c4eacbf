"""What the `drorch vm` commands share: loading the cluster's VMs, and turning the
library's refusals into drorch's exit codes (unknown name 2, unsafe 3, failed 1)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from drorch.cli.exits import BadName, Refused
from drorch.cli.loading import load_or_exit
from drorch.virt.base import HypervisorError
from drorch.virt.cluster_vms import ClusterVMs, UnknownName, VMOperationRefused


@contextmanager
def cluster_vms(config: Path) -> Iterator[ClusterVMs]:
    """Load the model and build the environment; config errors exit 2."""
    from drorch.envbuild import build_environment_report

    cluster = load_or_exit(config)
    env, problems = build_environment_report(cluster, config.resolve().parent)
    unavailable = {p.subject: p.message for p in problems if p.kind == "hypervisor"}
    try:
        yield ClusterVMs(cluster, env, unavailable)
    except UnknownName as exc:
        raise BadName(str(exc)) from None
    except VMOperationRefused as exc:
        raise Refused(f"refused: {exc}") from None
    except HypervisorError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        env.close()
