"""The WAN emulator wired into a running lab.

The proxy (`drorch.lab.wan_proxy`) runs in the `wan` namespace on the bridge address.
Each site's namespace gets nft DNAT rules (output hook) that send its TCP connections to
the other site's inter-site services (`LabLayout.wan_services`: libvirtd, replication,
membership, witness) to the proxy instead, which forwards them to the real address with
the configured delay, jitter and loss. Nothing else changes: the cluster file keeps the
sites' real addresses, and a connection looks to the far end as if it came from the
bridge address. Traffic that is not listed (ICMP, the migration data ports) is not
impaired; `lab fault partition` cuts it with nft separately.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

from drorch.clock import Clock
from drorch.lab.layout import LabLayout
from drorch.lab.processes import live_pid, stop_pid
from drorch.lab.wan import Impairment, PartitionKind, WanLink, WanState, WanStateFile
from drorch.remote.base import CommandRunner
from drorch.wait import wait_until

PROXY_MODULE = "drorch.lab.wan_proxy"
PROXY_PORT_BASE = 41000
#: How long `lab wan`/`lab fault` waits for the proxy to put a new setting in effect.
APPLY_TIMEOUT = 15.0
_NFT_TABLE = "drorch_wan"


def short(site: str) -> str:
    """`siteA` -> `A`: how faults and link groups name a site."""
    return site[4:] if site.startswith("site") and len(site) > 4 else site


def group_of(a: str, b: str) -> str:
    """The partition group of two places, in a stable order (`A-B`, `A-witness`)."""
    x, y = short(a), short(b)
    return f"{x}-{y}" if (y == "witness" or (x != "witness" and x <= y)) else f"{y}-{x}"


def lab_links(layout: LabLayout) -> tuple[WanLink, ...]:
    """Every proxied link of the lab: for each direction between the places (sites, and
    the witness when the layout has one), one link per inter-site service port."""
    places = [(s.name, s.address) for s in layout.sites]
    if layout.witness is not None:
        places.append(("witness", layout.witness.address))
    links: list[WanLink] = []
    port = PROXY_PORT_BASE
    for src, _ in places:
        for dst, dst_address in places:
            if src == dst or src == "witness":
                continue  # the witness only answers; it dials no one
            for service, target_port in layout.wan_services_to(dst):
                links.append(
                    WanLink(
                        name=f"{short(src)}->{short(dst)}:{service}",
                        group=group_of(src, dst),
                        listen=(layout.bridge_address, port),
                        target=(dst_address, target_port),
                    )
                )
                port += 1
    return tuple(links)


class LabWan:
    def __init__(self, layout: LabLayout, runner: CommandRunner, clock: Clock) -> None:
        self.layout = layout
        self.runner = runner
        self.clock = clock
        self.file = WanStateFile(layout.state_dir / "wan.json")
        self.pid_file = layout.state_dir / "wan-proxy.pid"
        self.log = layout.state_dir / "wan-proxy.log"

    def pid(self) -> int | None:
        return live_pid(self.pid_file, PROXY_MODULE)

    def state(self) -> WanState:
        if not self.file.exists():
            return WanState(lab_links(self.layout))
        return self.file.read()

    def ensure(self) -> WanState:
        """Write the links (keeping the impairment and partitions), start the proxy in
        the wan namespace unless it runs, and put the DNAT rules in place. Idempotent."""
        state = replace(self.state(), links=lab_links(self.layout))
        version = self.file.write(state)
        if self.pid() is None:
            self._start_proxy()
        self._wait_applied(version)  # every link listens before DNAT sends traffic to it
        self._install_dnat(state)
        return state

    def set(self, impairment: Impairment) -> WanState:
        return self._commit(replace(self.ensure(), impairment=impairment))

    def partition(self, group: str, kind: PartitionKind = "drop") -> WanState:
        return self._commit(self.ensure().partition(group, kind))

    def heal(self, group: str | None = None) -> WanState:
        if not self.file.exists():
            return self.state()
        return self._commit(self.file.read().heal(group))

    def down(self) -> list[str]:
        done = []
        pid = self.pid()
        if pid is not None:
            done.append(stop_pid(pid, PROXY_MODULE, self.clock, grace=5.0))
        for site in self.layout.sites:
            self.runner.run(
                ["ip", "netns", "exec", site.netns, "nft", "delete", "table", "ip", _NFT_TABLE]
            )
        self.file.path.unlink(missing_ok=True)  # the next lab starts with a clean WAN
        self.file.applied_path.unlink(missing_ok=True)
        return done

    # ------------------------------------------------------------------ internals
    def _commit(self, state: WanState) -> WanState:
        """Write `state` and return once the running proxy has put it in effect, so a
        `drorch lab wan`/`fault` command that returned is already true on the wire."""
        version = self.file.write(state)
        if self.pid() is not None:
            self._wait_applied(version)
        return state

    def _wait_applied(self, version: str, timeout: float = APPLY_TIMEOUT) -> None:
        deadline = self.clock.monotonic() + timeout
        if not wait_until(
            self.clock, lambda: self.file.applied() == version, deadline, interval=0.02
        ):
            tail = self.log.read_text()[-800:] if self.log.exists() else "no log"
            raise OSError(
                f"the WAN proxy did not apply {self.file.path} within {timeout:g} s: {tail}"
            )

    def _start_proxy(self) -> None:
        self.layout.state_dir.mkdir(parents=True, exist_ok=True)
        self.pid_file.unlink(missing_ok=True)
        argv = [sys.executable, "-m", PROXY_MODULE, "--state", str(self.file.path)]
        argv += ["--pid-file", str(self.pid_file)]
        in_wan = ["ip", "netns", "exec", self.layout.wan_netns]
        script = 'setsid "$@" </dev/null >>"$LOG" 2>&1 &'
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "LOG": str(self.log)}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
        import subprocess

        subprocess.run(["sh", "-c", script, "sh", *in_wan, *argv], env=env, check=True, timeout=30)
        if not wait_until(
            self.clock, lambda: self.pid() is not None, self.clock.monotonic() + 15, interval=0.05
        ):
            tail = self.log.read_text()[-800:] if self.log.exists() else "no log"
            raise OSError(f"the WAN proxy did not start in {self.layout.wan_netns}: {tail}")

    def _install_dnat(self, state: WanState) -> None:
        by_source: dict[str, list[WanLink]] = {}
        for link in state.links:
            by_source.setdefault(link.name.split("->")[0], []).append(link)
        for site in self.layout.sites:
            rules = [
                f"    ip daddr {lk.target[0]} tcp dport {lk.target[1]}"
                f" dnat to {lk.listen[0]}:{lk.listen[1]}"
                for lk in by_source.get(short(site.name), [])
            ]
            # One transaction that flushes the rules and adds them again. Deleting the
            # table instead unregistered the NAT hook, and the kernel then drops the NAT
            # bindings of live connections: every proxied connection (replication,
            # membership, witness) was reset by each `lab wan` / `lab up`.
            text = "\n".join(
                [
                    f"table ip {_NFT_TABLE} {{}}",
                    f"flush table ip {_NFT_TABLE}",
                    f"table ip {_NFT_TABLE} {{",
                    "  chain out {",
                    "    type nat hook output priority -100; policy accept;",
                    *rules,
                    "  }",
                    "}",
                    "",
                ]
            )
            ns = ["ip", "netns", "exec", site.netns, "nft"]
            self.runner.run([*ns, "-f", "-"], input=text, check=True)
