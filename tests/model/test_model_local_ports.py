"""Two pyrepl replicas on one machine listen on `port + i` and export NBD on
`nbd_port + i` (i = the node's place in `paths`), so consecutive ports of two volumes
collide there: `repl up` then fails with "Address already in use". The validator says so
first, at the port's line."""

from __future__ import annotations

from pathlib import Path

import pytest

from drorch.model.loader import parse_cluster_text
from drorch.model.reports import ConfigError

LAB = (Path(__file__).resolve().parents[2] / "lab" / "sim.yaml").read_text()
# real pyrepl daemons under the simulated VMs, as `make demo` runs it
SIM = LAB.replace("  bandwidth_mibps: 1000\n", "  bandwidth_mibps: 1000\n  replication: real\n")
OLD_PORTS = (("port: 7791", "port: 7790"), ("nbd_port: 10811", "nbd_port: 10810"))


def test_the_shipped_lab_has_no_local_port_clash() -> None:
    assert "replication: real" in SIM
    parse_cluster_text(SIM, "sim.yaml")


def test_simulated_volumes_open_no_port() -> None:
    text = LAB
    for new, old in OLD_PORTS:
        text = text.replace(new, old)
    parse_cluster_text(text, "sim.yaml")  # replication: sim (the default): no daemon


def test_consecutive_ports_of_two_local_volumes_clash() -> None:
    text = SIM.replace("port: 7791", "port: 7790").replace("nbd_port: 10811", "nbd_port: 10810")
    with pytest.raises(ConfigError) as info:
        parse_cluster_text(text, "sim.yaml")
    found = [(r.code, r.position.line if r.position else 0) for r in info.value.errors]
    lines = text.splitlines()
    port_line = lines.index("    port: 7790") + 1
    nbd_line = lines.index("      nbd_port: 10810") + 1
    assert found == [("port-conflict", port_line), ("port-conflict", nbd_line)]
    assert "port 7790+0 = 7790 on this machine is already used by volume appdata (port 7789+1)" in (
        info.value.errors[0].message
    )


def test_an_nbd_port_that_lands_on_a_replication_port_clashes() -> None:
    text = SIM.replace("nbd_port: 10811", "nbd_port: 7788")  # 7788+1 = appdata's 7789
    with pytest.raises(ConfigError) as info:
        parse_cluster_text(text, "sim.yaml")
    assert [r.code for r in info.value.errors] == ["port-conflict"]
    assert "nbd_port 7788+1 = 7789" in info.value.errors[0].message


def test_remote_nodes_use_their_own_hosts() -> None:
    text = SIM.replace("port: 7791", "port: 7790").replace("nbd_port: 10811", "nbd_port: 10810")
    text = text.replace(
        "      - name: b1\n        address: local",
        "      - name: b1\n        address: root@10.2.0.11",
    )
    text = text.replace(
        "      - name: a1\n        address: local",
        "      - name: a1\n        address: root@10.1.0.11",
    )
    parse_cluster_text(text, "sim.yaml")


def test_replicas_with_their_own_address_do_not_clash() -> None:
    text = SIM
    for new, old in OLD_PORTS:
        text = text.replace(new, old)
    for node, ip in (("a1", "127.0.0.2"), ("b1", "127.0.0.3")):
        text = text.replace(
            f"      - name: {node}\n", f"      - name: {node}\n        replication_address: {ip}\n"
        )
    parse_cluster_text(text, "sim.yaml")  # each replica listens on its own address
