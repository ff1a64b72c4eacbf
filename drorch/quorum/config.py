"""The quorum daemon's YAML config, validated with FILE:LINE:COL positions.

```yaml
listen: 127.0.0.1:7405
cert: server.crt
key: server.key
state_file: quorumd.state
heartbeat_ms: 1000
lease_ms: 3000
switch_delay_ms: 2000
clusters:
  c1:
    sites:
      A: [c1-a.crt]          # public certificates copied from the site's nodes
      B: [c1-b.crt]
```

Relative paths resolve against the config file's folder. Every problem is collected and
raised at once as a ConfigError (each `FILE:LINE:COL: code: message`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drorch.model.reports import ConfigError, Position, ReportItem
from drorch.model.source import Located, load_located
from drorch.quorum.tls import fingerprint_of

DEFAULT_PORT = 7405
# pre-hello caps: connections that have not yet sent `hello` (TLS handshake included)
DEFAULT_MAX_UNAUTHENTICATED = 1024
DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS = 64

REQUIRED = ("listen", "cert", "key", "state_file", "clusters")
OPTIONAL_INTS = {
    "heartbeat_ms": 1000,
    "lease_ms": 3000,
    "switch_delay_ms": 2000,
    "max_unauthenticated": DEFAULT_MAX_UNAUTHENTICATED,
    "max_unauthenticated_per_address": DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS,
}
KNOWN = set(REQUIRED) | set(OPTIONAL_INTS)


@dataclass(frozen=True)
class SitePins:
    cluster: str
    site: str
    cert_files: tuple[Path, ...]
    fingerprints: frozenset[str]


@dataclass(frozen=True)
class QuorumdConfig:
    path: Path
    host: str
    port: int
    cert: Path
    key: Path
    state_file: Path
    heartbeat_ms: int
    lease_ms: int
    switch_delay_ms: int
    max_unauthenticated: int = DEFAULT_MAX_UNAUTHENTICATED
    max_unauthenticated_per_address: int = DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS
    # cluster -> site -> pins
    clusters: dict[str, dict[str, SitePins]] = field(default_factory=dict)

    @property
    def idle_deadline_ms(self) -> int:
        """A session that sends nothing for this long is closed."""
        return max(3 * self.heartbeat_ms, self.lease_ms)

    def pins_by_fingerprint(self) -> dict[str, frozenset[tuple[str, str]]]:
        """fingerprint -> every (cluster, site) it is pinned for."""
        out: dict[str, set[tuple[str, str]]] = {}
        for sites in self.clusters.values():
            for pins in sites.values():
                for fp in pins.fingerprints:
                    out.setdefault(fp, set()).add((pins.cluster, pins.site))
        return {fp: frozenset(v) for fp, v in out.items()}

    def trusted_cert_files(self) -> list[Path]:
        seen: dict[str, Path] = {}
        for sites in self.clusters.values():
            for pins in sites.values():
                for f in pins.cert_files:
                    seen.setdefault(str(f), f)
        return list(seen.values())


def parse_listen(text: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or a bare host (port 7405). ValueError when malformed."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"not HOST:PORT: {text!r}")
        port_text = rest[1:] if rest else str(DEFAULT_PORT)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif ":" in text:
        raise ValueError(f"write an IPv6 address as [ADDR]:PORT: {text!r}")
    else:
        host, port_text = text, str(DEFAULT_PORT)
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"not HOST:PORT with a port in 1..65535: {text!r}")
    return host, int(port_text)


class _Checker:
    def __init__(self, path: Path) -> None:
        self.base = path.parent
        self.reports: list[ReportItem] = []
        self._fingerprints: dict[Path, str] = {}  # one file may be listed for many clusters

    def error(self, code: str, message: str, where: Position) -> None:
        self.reports.append(ReportItem(code, message, where))

    def string(self, node: Located, what: str) -> str | None:
        if isinstance(node.value, str) and node.value:
            return node.value
        self.error("type", f"{what} must be a non-empty string", node.position)
        return None

    def path(self, node: Located, what: str) -> Path | None:
        text = self.string(node, what)
        return None if text is None else (self.base / text)

    def int_ms(self, node: Located, what: str, minimum: int) -> int | None:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            self.error("type", f"{what} must be an integer >= {minimum}", node.position)
            return None
        return v

    def cert_list(self, cluster: str, site: str, node: Located) -> SitePins | None:
        if isinstance(node.value, str):  # `A: c1-a.crt` is read as `A: [c1-a.crt]`
            node = Located([node], node.position)
        if not isinstance(node.value, list) or not node.value:
            self.error(
                "sites",
                f"cluster {cluster!r} site {site!r}: give a list of certificate files",
                node.position,
            )
            return None
        files: list[Path] = []
        fps: set[str] = set()
        for entry in node.value:
            path = self.path(entry, "a certificate file")
            if path is None:
                continue
            if not path.is_file():
                self.error(
                    "missing-cert", f"certificate file {path} does not exist", entry.position
                )
                continue
            try:
                fp = self._fingerprints.get(path)
                if fp is None:
                    fp = self._fingerprints[path] = fingerprint_of(path)
                fps.add(fp)
            except (OSError, ValueError) as exc:
                self.error("bad-cert", f"{path} is not a certificate: {exc}", entry.position)
                continue
            files.append(path)
        return SitePins(cluster, site, tuple(files), frozenset(fps))


def _site_pins(
    check: _Checker, name: str, cluster: Located, key_pos: Position
) -> dict[str, SitePins]:
    if not isinstance(cluster.value, dict):
        check.error("type", f"cluster {name!r} must be a mapping with 'sites'", cluster.position)
        return {}
    for key, kpos in cluster.key_positions.items():
        if key != "sites":
            check.error("unknown-key", f"unknown key {key!r} in cluster {name!r}", kpos)
    sites_node = cluster.value.get("sites")
    if sites_node is None:
        check.error("sites", f"cluster {name!r} has no 'sites'", key_pos)
        return {}
    sites_pos = cluster.key_positions["sites"]
    if not isinstance(sites_node.value, dict):
        check.error("sites", f"cluster {name!r}: sites must be a mapping", sites_node.position)
        return {}
    if len(sites_node.value) != 2:
        check.error(
            "sites",
            f"cluster {name!r} has {len(sites_node.value)} site(s); a two-site cluster needs "
            "exactly two",
            sites_pos,
        )
    out: dict[str, SitePins] = {}
    for site, node in sites_node.value.items():
        pins = check.cert_list(name, site, node)
        if pins is not None:
            out[site] = pins
    if len(out) == 2:
        a, b = out.values()
        shared = a.fingerprints & b.fingerprints
        if shared:
            check.error(
                "shared-cert",
                f"cluster {name!r}: sites {a.site!r} and {b.site!r} pin the same certificate "
                f"{sorted(shared)[0]}; each site needs its own",
                sites_pos,
            )
    return out


def load_config(path: str | Path) -> QuorumdConfig:
    """Load and validate; raise ConfigError listing every problem with its position."""
    cfg_path = Path(path)
    root = load_located(cfg_path, "a quorumd config")
    check = _Checker(cfg_path)
    top = Position(str(cfg_path), 1, 1)
    if not isinstance(root.value, dict):
        raise ConfigError([ReportItem("type", "the config must be a mapping", root.position)])
    doc: dict[str, Located] = root.value
    for key, kpos in root.key_positions.items():
        if key not in KNOWN:
            check.error("unknown-key", f"unknown key {key!r}", kpos)
    for key in REQUIRED:
        if key not in doc:
            check.error("missing-key", f"missing required key {key!r}", top)
    values: dict[str, Any] = {}
    if "listen" in doc:
        text = check.string(doc["listen"], "listen")
        if text is not None:
            try:
                values["host"], values["port"] = parse_listen(text)
            except ValueError as exc:
                check.error("listen", str(exc), doc["listen"].position)
    for key in ("cert", "key", "state_file"):
        if key in doc:
            values[key] = check.path(doc[key], key)
    present = [k for k in ("cert", "key") if values.get(k) is not None]
    for key in present:
        if not values[key].is_file():
            check.error(
                "missing-file", f"{key} file {values[key]} does not exist", doc[key].position
            )
    if len(present) == 2 and all(values[k].is_file() for k in present):
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(values["cert"], values["key"])
        except (ssl.SSLError, OSError) as exc:
            check.error(
                "bad-key",
                f"cannot use cert {values['cert']} with key {values['key']}: {exc}",
                doc["key"].position,
            )
    for key, default in OPTIONAL_INTS.items():
        values[key] = default
        if key in doc:
            minimum = 0 if key == "switch_delay_ms" else 1
            values[key] = check.int_ms(doc[key], key, minimum)
    hb, lease = values["heartbeat_ms"], values["lease_ms"]
    if hb is not None and lease is not None and hb >= lease:
        where = doc["heartbeat_ms"].position if "heartbeat_ms" in doc else doc["lease_ms"].position
        check.error(
            "timing",
            f"heartbeat_ms ({hb}) must be less than lease_ms ({lease}), or one lost "
            "heartbeat loses the lease",
            where,
        )
    clusters: dict[str, dict[str, SitePins]] = {}
    if "clusters" in doc:
        node = doc["clusters"]
        if not isinstance(node.value, dict) or not node.value:
            check.error("clusters", "clusters must be a non-empty mapping", node.position)
        else:
            for name, cluster in node.value.items():
                clusters[name] = _site_pins(check, name, cluster, node.key_positions[name])
    if check.reports:
        raise ConfigError(check.reports)
    return QuorumdConfig(
        path=cfg_path,
        host=values["host"],
        port=values["port"],
        cert=values["cert"],
        key=values["key"],
        state_file=values["state_file"],
        heartbeat_ms=hb,
        lease_ms=lease,
        switch_delay_ms=values["switch_delay_ms"],
        max_unauthenticated=values["max_unauthenticated"],
        max_unauthenticated_per_address=values["max_unauthenticated_per_address"],
        clusters=clusters,
    )
