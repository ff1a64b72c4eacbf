"""Small clusters built in Python for the DRBD tests (no loader needed)."""

from __future__ import annotations

from types import MappingProxyType

from drorch.model.types import (
    Cluster,
    DrbdOptions,
    Driver,
    Node,
    ReplicationMode,
    Site,
    Volume,
)


def two_site_cluster(
    *,
    mode: ReplicationMode = ReplicationMode.SYNC,
    drbd: DrbdOptions | None = None,
    a1: Node | None = None,
    b1: Node | None = None,
    port: int = 7789,
    paths: dict[str, str] | None = None,
) -> Cluster:
    volume = Volume(
        name="r0",
        driver=Driver.DRBD,
        mode=mode,
        size=64 * 1024 * 1024,
        port=port,
        paths=MappingProxyType(paths or {"a1": "/dev/vg0/r0", "b1": "/dev/vg1/r0"}),
        drbd=drbd or DrbdOptions(),
    )
    return Cluster(
        name="c1",
        sites=(Site("A", (a1 or Node("a1"),)), Site("B", (b1 or Node("b1"),))),
        primary_site="A",
        volumes=(volume,),
    )
