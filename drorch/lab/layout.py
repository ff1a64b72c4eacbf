"""Where a two-site lab lives: namespaces, addresses, directories, sockets and URIs.

Everything is derived from one `LabLayout`, so two labs (the operator's and the test
suite's) can run side by side with different names, subnets and directories.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

#: Environment variable naming the directory for the image cache and lab state.
LAB_DIR_ENV = "DRORCH_LAB_DIR"


def default_lab_root() -> Path:
    """`$DRORCH_LAB_DIR`, else `.cache/lab` in the source checkout drorch runs from."""
    configured = os.environ.get(LAB_DIR_ENV)
    if configured:
        return Path(configured).resolve()
    return Path(__file__).resolve().parents[2] / ".cache" / "lab"


@dataclass(frozen=True)
class LabSite:
    """One site: its network namespace, its address on the WAN bridge, its veth."""

    name: str
    address: str
    netns: str
    veth: str  # host side of the pair, moved into the WAN namespace


@dataclass(frozen=True)
class LabWitness:
    """The third place: the quorum daemon's namespace, joined to the WAN bridge."""

    address: str
    netns: str
    veth: str
    name: str = "witness"


#: The TCP services the sites offer each other over the WAN, (name, port): what the WAN
#: emulator proxies. libvirtd (peer-to-peer migration control), pyrepl replication (one
#: port per volume, from 7789), the agents' membership link.
SITE_SERVICES: tuple[tuple[str, int], ...] = (
    ("libvirt", 16509),
    *((f"repl{i}", 7789 + i) for i in range(4)),
    ("membership", 7900),
)
#: What the witness offers the sites: the quorum daemon.
WITNESS_SERVICES: tuple[tuple[str, int], ...] = (("quorumd", 7443),)


@dataclass(frozen=True)
class LabLayout:
    """A lab instance. `prefix` is prepended to namespace names; `subnet` is the first
    three octets of the /24 the sites share (site i gets .i, the bridge gets .254)."""

    name: str = "default"
    prefix: str = ""
    site_names: tuple[str, str] = ("siteA", "siteB")
    subnet: str = "10.77.0"
    root: Path = field(default_factory=default_lab_root)
    migration_ports: tuple[int, int] = (49152, 49215)
    #: keepalive (interval s, count) of the libvirtd connections between the sites, both
    #: the source's peer-to-peer client (qemu.conf) and the server side (libvirtd.conf):
    #: a partition is noticed after about interval * (count + 1) seconds.
    p2p_keepalive: tuple[int, int] = (2, 2)

    def __post_init__(self) -> None:
        for s in self.site_names:
            if len(self.prefix + "v-" + s) > 15:
                raise ValueError(f"interface name {self.prefix}v-{s!r} exceeds 15 characters")

    @property
    def sites(self) -> tuple[LabSite, LabSite]:
        a, b = (
            LabSite(
                name=s,
                address=f"{self.subnet}.{i}",
                netns=f"{self.prefix}{s}",
                veth=f"{self.prefix}v-{s}",
            )
            for i, s in enumerate(self.site_names, start=1)
        )
        return a, b

    @property
    def witness(self) -> LabWitness | None:
        """The witness namespace (address .3 of the subnet)."""
        return LabWitness(
            address=f"{self.subnet}.3", netns=f"{self.prefix}witness", veth=f"{self.prefix}v-wit"
        )

    def wan_services_to(self, place: str) -> tuple[tuple[str, int], ...]:
        """The proxied services of a site, or of the witness."""
        return WITNESS_SERVICES if place == "witness" else SITE_SERVICES

    def site(self, name: str) -> LabSite:
        for s in self.sites:
            if s.name == name:
                return s
        raise KeyError(f"no site {name!r} in lab {self.name!r}")

    @property
    def wan_netns(self) -> str:
        return f"{self.prefix}wan"

    @property
    def bridge(self) -> str:
        return "br0"

    @property
    def bridge_address(self) -> str:
        return f"{self.subnet}.254"

    # --- directories -------------------------------------------------------------
    @property
    def image_dir(self) -> Path:
        """Shared by every lab instance: the kernel and initramfs cache."""
        return self.root / "images"

    @property
    def state_dir(self) -> Path:
        return self.root / "labs" / self.name

    @property
    def guest_dir(self) -> Path:
        """Serial logs and disk images of guests (the same path from both sites)."""
        return self.state_dir / "guests"

    def site_dir(self, site: str) -> Path:
        self.site(site)
        return self.state_dir / "sites" / site

    def run_dir(self, site: str) -> Path:
        """Bind-mounted on /run/libvirt inside the site's mount namespace."""
        return self.site_dir(site) / "run"

    def private_dirs(self, site: str) -> dict[str, Path]:
        """Host directory -> the libvirt directory it replaces inside the site."""
        d = self.site_dir(site)
        return {
            "/etc/libvirt": d / "etc",
            "/run/libvirt": d / "run",
            "/var/lib/libvirt": d / "lib",
            "/var/cache/libvirt": d / "cache",
            "/var/log/libvirt": d / "log",
        }

    def socket(self, site: str) -> Path:
        return self.run_dir(site) / "libvirt-sock"

    # --- URIs --------------------------------------------------------------------
    def local_uri(self, site: str) -> str:
        """How drorch (in the host namespace) reaches the site's libvirtd."""
        return f"qemu+unix:///system?socket={self.socket(site)}"

    def peer_uri(self, site: str) -> str:
        """How the other site's libvirtd reaches this one (peer-to-peer migration)."""
        return f"qemu+tcp://{self.site(site).address}/system"

    def migration_uri(self, site: str) -> str:
        """Where the memory stream goes (VIR_MIGRATE_PARAM_URI)."""
        return f"tcp://{self.site(site).address}"
