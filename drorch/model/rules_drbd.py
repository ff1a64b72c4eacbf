"""The DRBD driver's rules over the model: what a `driver: drbd` volume must satisfy to
become a DRBD 9 resource. `config validate` reports them with `file:line:col` (through
rules.check_all), and `drbd render` refuses with the same messages: one place for each
rule. Pure: model types in, problems out.

Node ids follow the cluster file: the nodes with a backing disk in `paths`, in site order
then node order, get ids 0, 1, ... Replication address: `Node.replication_address` when
set; otherwise the host of an ssh `address`; otherwise, for `address: local`,
127.0.0.(id+1). All nodes of a resource must use the same address family.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from drorch.model.types import Cluster, Driver, Node, ReplicationMode, Volume

AFTER_SB_0PRI = frozenset(
    {
        "disconnect",
        "discard-younger-primary",
        "discard-older-primary",
        "discard-zero-changes",
        "discard-least-changes",
        "discard-local",
        "discard-remote",
    }
)
AFTER_SB_1PRI = frozenset(
    {"disconnect", "consensus", "violently-as0p", "discard-secondary", "call-pri-lost-after-sb"}
)
AFTER_SB_2PRI = frozenset({"disconnect", "violently-as0p", "call-pri-lost-after-sb"})
ON_CONGESTION = frozenset({"block", "pull-ahead", "disconnect"})
QUORUM = frozenset({"off", "majority", "all"})
ON_NO_QUORUM = frozenset({"suspend-io", "io-error"})
_TOKEN = re.compile(r"^[A-Za-z0-9_.()-]+$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


@dataclass(frozen=True)
class DrbdPeer:
    node: str
    node_id: int
    disk: str
    address: str  # host part, no port
    family: str  # ipv4 | ipv6


def replication_host(node: Node, node_id: int) -> str:
    """Where DRBD listens on `node` (see the module docstring)."""
    if node.replication_address:
        return node.replication_address
    if node.is_local:
        return f"127.0.0.{node_id + 1}"
    host = node.address.rpartition("@")[2]
    if host.startswith("["):
        return host[1 : host.index("]")]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host


def peers(cluster: Cluster, volume: Volume) -> list[DrbdPeer]:
    """The nodes that hold a replica of `volume`, with their DRBD node ids."""
    out: list[DrbdPeer] = []
    for site in cluster.sites:
        for node in site.nodes:
            if node.name in volume.paths:
                node_id = len(out)
                host = replication_host(node, node_id)
                family = "ipv4" if _IPV4.match(host) else "ipv6" if ":" in host else "ipv4"
                out.append(DrbdPeer(node.name, node_id, volume.paths[node.name], host, family))
    return out


def peer_for(cluster: Cluster, volume: Volume, node: str) -> DrbdPeer:
    for p in peers(cluster, volume):
        if p.node == node:
            return p
    raise KeyError(f"node {node} holds no replica of volume {volume.name}")


Where = tuple[str, ...]  # the key path inside the volume's YAML mapping
GENERIC = "\0"  # prefix of a problem the generic volume rules report already


def check(cluster: Cluster, volume: Volume) -> list[str]:
    """Every reason the volume cannot become a DRBD resource (empty when it can)."""
    return [message for _, message in check_where(cluster, volume)]


def check_where(cluster: Cluster, volume: Volume) -> list[tuple[Where, str]]:
    """Like check(), with the key path of the volume's setting that each problem is about."""
    return [(w, m.removeprefix(GENERIC)) for w, m in _problems(cluster, volume)]


def drbd_only(cluster: Cluster, volume: Volume) -> list[tuple[Where, str]]:
    """The problems only the DRBD rules find (validation reports the others already)."""
    return [(w, m) for w, m in _problems(cluster, volume) if not m.startswith(GENERIC)]


def _problems(cluster: Cluster, volume: Volume) -> list[tuple[Where, str]]:
    o = volume.drbd
    found: list[tuple[Where, str]] = []

    def problem(where: Where, message: str) -> None:
        found.append((where, message))

    def generic(where: Where, message: str) -> None:  # the generic volume rules say it too
        found.append((where, GENERIC + message))

    if volume.driver is not Driver.DRBD:
        generic(("driver",), f"driver is {volume.driver.value}, not drbd")
    nodes = peers(cluster, volume)
    known = {n.name for s in cluster.sites for n in s.nodes}
    for name in volume.paths:
        if name not in known:
            generic(("paths", name), f"paths names unknown node {name!r}")
    if len(nodes) < 2:
        generic(("paths",), f"needs a backing disk on at least two nodes, has {len(nodes)}")
    sites_with_disk = {s.name for s in cluster.sites for n in s.nodes if n.name in volume.paths}
    if len(nodes) >= 2 and len(sites_with_disk) < 2:
        generic(("paths",), "all replicas are at one site; a DR volume needs one at each site")
    if len({p.family for p in nodes}) > 1:
        problem(("paths",), "nodes mix IPv4 and IPv6 replication addresses")
    if not 1 <= volume.port <= 65535:
        generic(("port",), f"port {volume.port} is not a TCP port")
    for label, value, allowed in (
        ("after_sb_0pri", o.after_sb_0pri, AFTER_SB_0PRI),
        ("after_sb_1pri", o.after_sb_1pri, AFTER_SB_1PRI),
        ("after_sb_2pri", o.after_sb_2pri, AFTER_SB_2PRI),
        ("on_congestion", o.on_congestion, ON_CONGESTION),
        ("quorum", o.quorum, QUORUM),
        ("on_no_quorum", o.on_no_quorum, ON_NO_QUORUM),
    ):
        if value not in allowed:
            generic(
                ("drbd", label), f"{label} {value!r} is not one of {', '.join(sorted(allowed))}"
            )
    if o.on_congestion != "block" and volume.mode is not ReplicationMode.ASYNC:
        generic(
            ("drbd", "on_congestion"),
            f"on_congestion {o.on_congestion} needs mode async (DRBD protocol A)",
        )
    for label, alg in (("verify_alg", o.verify_alg), ("csums_alg", o.csums_alg)):
        if not _TOKEN.match(alg):
            problem(("drbd", label), f"{label} {alg!r} is not a kernel crypto algorithm name")
    if not o.device.startswith("/dev/drbd"):
        problem(("drbd", "device"), f"device {o.device!r} is not a /dev/drbdN device")
    if not 0.1 <= o.ping_timeout <= 30:
        problem(
            ("drbd", "ping_timeout"), f"ping_timeout {o.ping_timeout}s is outside DRBD's 0.1s..30s"
        )
    if not 0.1 <= o.timeout <= 60:
        problem(("drbd", "timeout"), f"timeout {o.timeout}s is outside DRBD's 0.1s..60s")
    if not 0 <= o.ko_count <= 200:
        problem(("drbd", "ko_count"), f"ko_count {o.ko_count} is outside DRBD's 0..200")
    for p in nodes:
        if p.family == "ipv4" and not _IPV4.match(p.address):
            problem(
                ("paths", p.node),
                f"{p.node}: DRBD needs an IP address, not the host name {p.address!r};"
                " set replication_address",
            )
        if not p.disk.startswith("/"):
            problem(
                ("paths", p.node), f"backing disk {p.disk!r} of {p.node} is not an absolute path"
            )
    return found
