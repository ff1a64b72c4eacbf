"""What every `drorch lab` command shares: the lab-selection options and the Lab."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def lab_options(f: F) -> F:
    f = click.option("--subnet", default="10.77.0", show_default=True,
                     help="First three octets of the sites' /24.")(f)  # fmt: skip
    f = click.option("--prefix", default="", help="Prefix of the namespace names.")(f)
    f = click.option("--name", "lab_name", default="default", show_default=True,
                     help="Lab instance name.")(f)  # fmt: skip
    return f


@contextmanager
def lab_instance(lab_name: str, prefix: str, subnet: str) -> Iterator[Any]:
    from drorch.lab.faults import FaultError
    from drorch.lab.lab import Lab
    from drorch.lab.layout import LabLayout
    from drorch.lab.stack import StackError
    from drorch.remote.base import RunnerError
    from drorch.remote.local import LocalRunner
    from drorch.virt.base import HypervisorError

    try:
        yield Lab(LabLayout(name=lab_name, prefix=prefix, subnet=subnet), LocalRunner())
    except (
        RunnerError,
        OSError,
        HypervisorError,
        TimeoutError,
        ValueError,
        FaultError,
        StackError,
    ) as exc:
        raise click.ClickException(str(exc)) from None
