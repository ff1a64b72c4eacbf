"""A pyrepl replica on an ssh node is driven through `drorch repl ... --control` on that
node. What loses or moves data asks first when a person types it, so the driver, which
has decided already and has nobody to ask, passes --yes (without it the remote command
stops at once: no terminal there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drorch.environment import Environment
from drorch.model.types import Node, Volume
from drorch.replication.pyrepl.driver import PyreplReplicator
from drorch.testing.runner import Expect, ScriptedRunner

NODE = Node("b1", address="root@10.0.0.2:22")
VOLUME = Volume("vol", "pyrepl", "sync", 2**20, 7789, paths={"a1": "/a.img", "b1": "/b.img"})  # type: ignore[arg-type]


def _replica(tmp_path: Path, runner: ScriptedRunner) -> PyreplReplicator:
    env = Environment(runners={"b1": runner}, base_dir=tmp_path)
    return PyreplReplicator(VOLUME, NODE, env, control=Path("/run/vol@b1.ctl"))


@pytest.mark.parametrize(
    ("call", "command", "extra"),
    [
        (lambda r: r.promote(3), "promote", ["--yes", "--epoch", "3"]),
        (lambda r: r.demote(), "demote", ["--yes"]),
        (lambda r: r.resolve_discard_local(), "resolve", ["--yes", "--no-wait", "--discard-local"]),
        (lambda r: r.disconnect(), "disconnect", ["--yes"]),
        (lambda r: r.allow_two_primaries(), "allow-two-primaries", ["--yes"]),
    ],
)
def test_remote_commands_that_ask_get_yes(
    tmp_path: Path, call: object, command: str, extra: list[str]
) -> None:
    argv = ["drorch", "repl", command, "--control", "/run/vol@b1.ctl", "--format", "json"]
    runner = ScriptedRunner([Expect([*argv, *extra], stdout="{}")])
    call(_replica(tmp_path, runner))  # type: ignore[operator]
    runner.assert_done()


def test_the_driver_passes_yes_to_exactly_the_commands_that_ask() -> None:
    """ASKS (the driver's ops) and the `drorch repl` commands with --yes are one set, so
    a command that starts asking cannot leave the remote driver stuck behind it."""
    import click

    from drorch.cli.repl_cmd import repl
    from drorch.replication.pyrepl.driver import ASKS

    ctx = click.Context(repl)
    asking = set()
    for name in repl.list_commands(ctx):
        command = repl.get_command(ctx, name)
        assert command is not None
        if any(p.name == "yes" for p in command.params):
            asking.add({"stop": "shutdown"}.get(name, name).replace("-", "_"))
    assert asking - {"down"} == ASKS  # `repl down -c` acts on the local node only
