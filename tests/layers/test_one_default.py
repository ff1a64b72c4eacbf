"""One default per setting: pyrepl's defaults are the model's (`PyreplOptions`); the
engine's config and `drorch repl serve` must not disagree with them (see
coord/notes-operator.md: they should read them from the model, not restate them)."""

from __future__ import annotations

import re

import click

from drorch.model.types import PyreplOptions
from drorch.model.units import parse_size
from drorch.replication.pyrepl.engine_config import EngineConfig


def test_engine_defaults_are_the_models() -> None:
    d = PyreplOptions()
    fields = EngineConfig.__dataclass_fields__
    assert fields["region_size"].default == d.region_size
    assert fields["max_lag_bytes"].default == d.max_lag_bytes
    assert fields["on_congestion"].default == d.on_congestion


def test_repl_serve_defaults_are_the_models() -> None:
    from drorch.cli.main import cli

    ctx = click.Context(cli)
    repl = cli.get_command(ctx, "repl")
    assert isinstance(repl, click.Group)
    serve = repl.get_command(ctx, "serve")
    assert serve is not None
    params = {p.name: p for p in serve.params}
    d = PyreplOptions()
    assert parse_size(params["region_size"].default) == d.region_size
    # the async-only options have no click default (whether one was given matters: serve
    # refuses them in sync mode); the default their help states must be the model's
    stated = {name: _stated_default(params[name]) for name in ("max_lag", "on_congestion")}
    assert parse_size(stated["max_lag"]) == d.max_lag_bytes
    assert stated["on_congestion"] == d.on_congestion


def _stated_default(param: click.Parameter) -> str:
    assert isinstance(param, click.Option)
    match = re.search(r"\[default: ([^\]]+)\]", param.help or "")
    assert match, f"--{param.name} states no default in its help: {param.help!r}"
    return match.group(1)
