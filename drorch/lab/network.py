"""The lab network: namespaces siteA, siteB, witness and wan, a bridge in wan, one veth
each for the sites and the witness.

`up` and `down` are idempotent. `partition` cuts the WAN between the sites in one of
three ways, and `heal` undoes any of them:

* `reject` - nft in each site rejects the other site's traffic with a TCP reset (fast
  failure, like a firewall change);
* `drop`   - nft silently drops it (what a dead router looks like: TCP only notices by
  timing out, so this is what deadlines and keepalives are for);
* `link`   - the site's port on the WAN bridge goes down (a cut fibre; also silent).
"""

from __future__ import annotations

from typing import Literal

from drorch.lab.layout import LabLayout, LabSite, LabWitness
from drorch.remote.base import CommandRunner

PartitionMode = Literal["reject", "drop", "link"]
PARTITION_MODES: tuple[PartitionMode, ...] = ("reject", "drop", "link")
_NFT_TABLE = "drorch_partition"


class LabNetwork:
    def __init__(self, layout: LabLayout, runner: CommandRunner) -> None:
        self.layout = layout
        self.runner = runner

    def namespaces(self) -> set[str]:
        out = self.runner.run(["ip", "netns", "list"], check=True).stdout
        return {line.split()[0] for line in out.splitlines() if line.strip()}

    @property
    def places(self) -> list[LabSite | LabWitness]:
        """The namespaces on the WAN bridge: both sites, then the witness."""
        witness = self.layout.witness
        return [*self.layout.sites, *([witness] if witness is not None else [])]

    def is_up(self) -> bool:
        wanted = {p.netns for p in self.places} | {self.layout.wan_netns}
        return wanted <= self.namespaces()

    def up(self) -> None:
        """Create what is missing; leave what exists alone."""
        lay, run = self.layout, self.runner
        existing = self.namespaces()
        for ns in [lay.wan_netns, *(p.netns for p in self.places)]:
            if ns not in existing:
                run.run(["ip", "netns", "add", ns], check=True)
            run.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        wan = lay.wan_netns
        if not run.run(["ip", "-n", wan, "link", "show", lay.bridge]).ok:
            run.run(["ip", "-n", wan, "link", "add", lay.bridge, "type", "bridge"], check=True)
            run.run(
                ["ip", "-n", wan, "addr", "add", f"{lay.bridge_address}/24", "dev", lay.bridge],
                check=True,
            )
        run.run(["ip", "-n", wan, "link", "set", lay.bridge, "up"], check=True)
        for site in self.places:
            if not run.run(["ip", "-n", wan, "link", "show", site.veth]).ok:
                peer = ["peer", "name", "eth0", "netns", site.netns]
                run.run(["ip", "link", "add", site.veth, "type", "veth", *peer], check=True)
                run.run(["ip", "link", "set", site.veth, "netns", wan], check=True)
                run.run(
                    ["ip", "-n", site.netns, "addr", "add", f"{site.address}/24", "dev", "eth0"],
                    check=True,
                )
            run.run(["ip", "-n", wan, "link", "set", site.veth, "master", lay.bridge], check=True)
            run.run(["ip", "-n", wan, "link", "set", site.veth, "up"], check=True)
            run.run(["ip", "-n", site.netns, "link", "set", "eth0", "up"], check=True)

    def down(self) -> None:
        """Delete the namespaces (their veths go with them)."""
        existing = self.namespaces()
        for ns in [*(p.netns for p in self.places), self.layout.wan_netns]:
            if ns in existing:
                self.runner.run(["ip", "netns", "del", ns], check=True)

    # --- faults --------------------------------------------------------------------
    def partition(self, mode: PartitionMode = "drop") -> None:
        """Cut site <-> site traffic. Idempotent; `heal` undoes it."""
        if mode not in PARTITION_MODES:
            raise ValueError(f"unknown partition mode {mode!r}; use one of {PARTITION_MODES}")
        if mode == "link":
            for site in self.layout.sites:
                self.runner.run(
                    ["ip", "-n", self.layout.wan_netns, "link", "set", site.veth, "down"],
                    check=True,
                )
            return
        verdict = "reject with tcp reset" if mode == "reject" else "drop"
        a, b = self.layout.sites
        for here, there in ((a, b), (b, a)):
            self._drop_table(here.netns)
            rules = "\n".join(
                [
                    f"table inet {_NFT_TABLE} {{",
                    "  chain out {",
                    "    type filter hook output priority 0; policy accept;",
                    f"    ip daddr {there.address} meta l4proto tcp {verdict}",
                    f"    ip daddr {there.address} drop",
                    "  }",
                    "  chain in {",
                    "    type filter hook input priority 0; policy accept;",
                    f"    ip saddr {there.address} drop",
                    "  }",
                    "}",
                    "",
                ]
            )
            self.runner.run(
                ["ip", "netns", "exec", here.netns, "nft", "-f", "-"], input=rules, check=True
            )

    def heal(self) -> None:
        for site in self.layout.sites:
            self._drop_table(site.netns)
            self.runner.run(
                ["ip", "-n", self.layout.wan_netns, "link", "set", site.veth, "up"], check=True
            )

    def _drop_table(self, netns: str) -> None:
        self.runner.run(
            ["ip", "netns", "exec", netns, "nft", "delete", "table", "inet", _NFT_TABLE]
        )
