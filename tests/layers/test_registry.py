"""The one lazy `module:attr` registry behind drivers and CLI commands."""

from __future__ import annotations

import sys

import pytest

from drorch.registry import Registry, load, subclass_of


def test_load_imports_lazily_and_checks() -> None:
    sys.modules.pop("json.tool", None)
    reg: Registry[object] = Registry("thing", {"tool": "json.tool:main"}, callable)
    assert "json.tool" not in sys.modules  # nothing imported until asked
    assert reg.load("tool") is load("json.tool:main") and "json.tool" in sys.modules
    with pytest.raises(KeyError, match="no thing 'nope' \\(known: tool\\)"):
        reg.load("nope")
    strict: Registry[type] = Registry("driver", {"x": "json:dumps"}, subclass_of(Exception))
    with pytest.raises(TypeError, match="driver 'x': json:dumps is not what it should be"):
        strict.load("x")
    with pytest.raises(ValueError, match="is not 'module:attribute'"):
        load("json.dumps")


def test_every_registered_driver_and_command_loads() -> None:
    from drorch.cli.main import COMMANDS
    from drorch.replication.drivers import REPLICATOR_DRIVERS
    from drorch.virt.drivers import HYPERVISOR_DRIVERS

    for registry in (COMMANDS, REPLICATOR_DRIVERS, HYPERVISOR_DRIVERS):
        for name in registry:
            assert registry.load(name) is not None


def test_the_config_accepts_exactly_the_registered_hypervisor_drivers() -> None:
    """model/ may not import virt/, so it names the drivers itself: the same names."""
    from drorch.model.schema import HYPERVISOR_DRIVERS as ACCEPTED
    from drorch.model.types import Driver
    from drorch.replication.drivers import REPLICATOR_DRIVERS
    from drorch.virt.drivers import HYPERVISOR_DRIVERS

    assert set(ACCEPTED) == set(HYPERVISOR_DRIVERS)
    assert {d.value for d in Driver} == set(REPLICATOR_DRIVERS)
