"""The two-site lab as one object: `up`, `down`, `status`, `partition`, `heal`."""

from __future__ import annotations

from typing import Any

from drorch.clock import Clock, SystemClock
from drorch.lab.faults import LabFaults
from drorch.lab.image import GuestImage, ImageBuilder
from drorch.lab.layout import LabLayout
from drorch.lab.network import LabNetwork, PartitionMode
from drorch.lab.processes import live_pid
from drorch.lab.site import LabSiteDaemons
from drorch.lab.wan_lab import LabWan
from drorch.remote.base import CommandRunner


class Lab:
    def __init__(
        self, layout: LabLayout, runner: CommandRunner, clock: Clock | None = None
    ) -> None:
        self.layout = layout
        self.runner = runner
        self.clock = clock or SystemClock()
        self.network = LabNetwork(layout, runner)
        self.wan = LabWan(layout, runner, self.clock)
        self.faults = LabFaults(layout, runner, self.clock, self.wan)
        self.sites = {
            s.name: LabSiteDaemons(layout, s.name, runner, self.clock) for s in layout.sites
        }

    def image(self) -> GuestImage:
        return ImageBuilder(self.layout.image_dir, self.runner).ensure()

    def up(self) -> GuestImage:
        """Build (or reuse) the guest image, create the network, start both sites.
        Idempotent: what already runs is left running."""
        image = self.image()
        self.layout.guest_dir.mkdir(parents=True, exist_ok=True)
        self.network.up()
        self.network.heal()
        for daemons in self.sites.values():
            daemons.up()
        return image

    def down(self) -> list[str]:
        """Stop guests and daemons by PID, then delete the namespaces."""
        return self.down_sites() + self.down_network()

    def down_sites(self) -> list[str]:
        """Destroy the guests, stop QEMU, libvirtd and virtlogd of both sites, by PID."""
        done: list[str] = []
        for daemons in self.sites.values():
            done += daemons.down()
        return done

    def down_network(self) -> list[str]:
        """Stop the WAN proxy by PID, then delete the namespaces."""
        done = self.wan.down()
        self.network.down()
        return done

    def partition(self, mode: PartitionMode = "drop") -> None:
        self.network.partition(mode)

    def heal(self) -> None:
        self.network.heal()

    def status(self) -> dict[str, Any]:
        namespaces = self.network.namespaces() if self._can_list_netns() else set()
        sites = []
        for site in self.layout.sites:
            daemons = self.sites[site.name]
            pids = daemons.pids()
            guests = sorted(
                p.stem
                for p in (self.layout.run_dir(site.name) / "qemu").glob("*.pid")
                if live_pid(p, "qemu-system")
            )
            sites.append(
                {
                    "site": site.name,
                    "netns": site.netns if site.netns in namespaces else None,
                    "address": site.address,
                    "libvirtd": pids["libvirtd"],
                    "virtlogd": pids["virtlogd"],
                    "uri": self.layout.local_uri(site.name),
                    "peer_uri": self.layout.peer_uri(site.name),
                    "running_guests": guests,
                }
            )
        return {
            "lab": self.layout.name,
            "state_dir": str(self.layout.state_dir),
            "wan": self.layout.wan_netns if self.layout.wan_netns in namespaces else None,
            "sites": sites,
        }

    def _can_list_netns(self) -> bool:
        return self.runner.run(["ip", "netns", "list"]).ok
