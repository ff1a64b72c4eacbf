"""Fault injection in a running lab, each fault recorded in the lab's event log.

* `partition A-B|A-witness|B-witness [drop|reset]`: the WAN proxy stops (drop) or
  resets (reset) that pair's proxied links, and nft in both namespaces cuts the rest of
  their traffic (ICMP, migration data). `heal [PAIR]` undoes one or all.
* `kill-site A`: SIGKILL to every process in A's network namespace (libvirtd, QEMU, the
  replication daemons, the agent) - found by namespace inode, signalled by PID. A power
  loss: nothing gets to clean up. `drorch lab up` brings the site back.
* `kill-witness`: the same for the witness namespace (the quorum daemon).
* `freeze-agent A` / `thaw-agent A`: SIGSTOP / SIGCONT to A's agent (a hung node: its
  soft watchdog is what must fence it).
* `slow-disk A` / `fast-disk A`: A's replication daemons (which serve its guests' disks)
  are paused part of every period (`drorch.lab.stutter`).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from drorch.clock import Clock
from drorch.lab.events import EventLog, LabEvent
from drorch.lab.layout import LabLayout
from drorch.lab.processes import cmdline, live_pid, spawn_detached, stop_pid
from drorch.lab.wan import PartitionKind, WanError
from drorch.lab.wan_lab import LabWan, short
from drorch.remote.base import CommandRunner

PAIRS = ("A-B", "A-witness", "B-witness")
_NFT_TABLE = "drorch_fault"
STUTTER_MODULE = "drorch.lab.stutter"


class FaultError(Exception):
    """A fault could not be injected; the message says why."""


def namespace_pids(netns: str) -> list[int]:
    """Every process whose network namespace is `netns` (by nsfs inode)."""
    try:
        ns = os.stat(f"/run/netns/{netns}")
    except OSError:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(entry / "ns" / "net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (ns.st_dev, ns.st_ino):
            pids.append(int(entry.name))
    return sorted(pids)


class LabFaults:
    def __init__(self, layout: LabLayout, runner: CommandRunner, clock: Clock, wan: LabWan) -> None:
        self.layout = layout
        self.runner = runner
        self.clock = clock
        self.wan = wan
        self.events = EventLog(layout.state_dir / "events.jsonl", clock)

    # ------------------------------------------------------------------ places
    def _place(self, name: str) -> tuple[str, str]:
        """`A`, `siteA` or `witness` -> (netns, address)."""
        witness = self.layout.witness
        if name == "witness" and witness is not None:
            return witness.netns, witness.address
        for site in self.layout.sites:
            if name in (site.name, short(site.name)):
                return site.netns, site.address
        known = [short(s.name) for s in self.layout.sites] + ["witness"]
        raise FaultError(f"no place {name!r} in the lab (places: {', '.join(known)})")

    def agent_pid_file(self, site: str) -> Path:
        """Where `drorch lab up` keeps the PID of the site's agent."""
        return self.layout.state_dir / "pids" / f"agent-{self._site_name(site)}.pid"

    def _site_name(self, name: str) -> str:
        for site in self.layout.sites:
            if name in (site.name, short(site.name)):
                return site.name
        raise FaultError(f"no site {name!r} (sites: {', '.join(self.layout.site_names)})")

    # ------------------------------------------------------------------ partitions
    def partition(self, pair: str, kind: PartitionKind = "drop") -> LabEvent:
        if pair not in PAIRS:
            raise FaultError(f"unknown pair {pair!r}; use one of {', '.join(PAIRS)}")
        try:
            state = self.wan.partition(pair, kind)
        except WanError as exc:
            raise FaultError(str(exc)) from None
        self._apply_nft(state.partitions)
        return self.events.record("partition", pair, f"{kind}: proxied links and other traffic")

    def heal(self, pair: str | None = None) -> LabEvent:
        if pair is not None and pair not in PAIRS:
            raise FaultError(f"unknown pair {pair!r}; use one of {', '.join(PAIRS)}")
        try:
            state = self.wan.heal(pair)
        except WanError as exc:
            raise FaultError(str(exc)) from None
        self._apply_nft(state.partitions)
        return self.events.record("heal", pair or "all", "partitions lifted")

    def _apply_nft(self, parts: Mapping[str, PartitionKind]) -> None:
        existing = set(self.runner.run(["ip", "netns", "list"]).stdout.split())
        for place in ["A", "B", "witness"]:
            try:
                netns, _ = self._place(place)
            except FaultError:
                continue
            if netns not in existing:
                continue
            rules_out, rules_in = [], []
            for pair, kind in parts.items():
                ends = pair.split("-")
                if place not in ends:
                    continue
                other = ends[1] if ends[0] == place else ends[0]
                _, address = self._place(other)
                verdict = "reject with tcp reset" if kind == "reset" else "drop"
                rules_out += [f"    ip daddr {address} meta l4proto tcp {verdict}",
                              f"    ip daddr {address} drop"]  # fmt: skip
                rules_in.append(f"    ip saddr {address} drop")
            ns = ["ip", "netns", "exec", netns, "nft"]
            self.runner.run([*ns, "delete", "table", "inet", _NFT_TABLE])
            if not rules_out:
                continue
            text = "\n".join(
                [
                    f"table inet {_NFT_TABLE} {{",
                    "  chain out {",
                    "    type filter hook output priority 0; policy accept;",
                    *rules_out,
                    "  }",
                    "  chain in {",
                    "    type filter hook input priority 0; policy accept;",
                    *rules_in,
                    "  }",
                    "}",
                    "",
                ]
            )
            self.runner.run([*ns, "-f", "-"], input=text, check=True)

    # ------------------------------------------------------------------ kills
    def kill_place(self, name: str) -> LabEvent:
        netns, _ = self._place(name)
        killed = []
        for pid in namespace_pids(netns):
            what = cmdline(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed.append(f"{pid} {what[:60]}")
        kind = "kill-witness" if name == "witness" else "kill-site"
        detail = f"SIGKILL to {len(killed)} processes in {netns}"
        return self.events.record(kind, short(name), detail, killed=killed)

    # ------------------------------------------------------------------ agents
    def freeze_agent(self, site: str, *, thaw: bool = False) -> LabEvent:
        pid = live_pid(self.agent_pid_file(site), "agent run")
        if pid is None:
            raise FaultError(
                f"no agent runs at {site} (no live PID in {self.agent_pid_file(site)})"
            )
        os.kill(pid, signal.SIGCONT if thaw else signal.SIGSTOP)
        kind = "thaw-agent" if thaw else "freeze-agent"
        return self.events.record(kind, short(site), f"{'SIGCONT' if thaw else 'SIGSTOP'} {pid}")

    # ------------------------------------------------------------------ disks
    def _stutter_pid_file(self, site: str) -> Path:
        return self.layout.site_dir(self._site_name(site)) / "slow-disk.pid"

    def slow_disk(self, site: str, pause: float = 0.05, period: float = 0.1) -> LabEvent:
        netns, _ = self._place(site)
        targets = [p for p in namespace_pids(netns) if "repl serve" in cmdline(p)]
        if not targets:
            raise FaultError(f"no replication daemon runs at {site}: no disk to slow down")
        self.fast_disk(site, record=False)
        pid_file = self._stutter_pid_file(site)
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", STUTTER_MODULE, "--pause", str(pause)]
        argv += ["--period", str(period), *map(str, targets)]
        # nobody's child (not a Popen left running: a ResourceWarning in a long-lived
        # caller such as `lab torture`, and a zombie to reap once fast_disk stops it)
        spawn_detached(argv, log=pid_file.with_suffix(".log"), pid_file=pid_file)
        detail = f"{len(targets)} replication daemons paused {pause * 1000:g} of every"
        detail += f" {period * 1000:g} ms"
        return self.events.record("slow-disk", short(site), detail, pids=targets)

    def fast_disk(self, site: str, *, record: bool = True) -> LabEvent | None:
        pid = live_pid(self._stutter_pid_file(site), STUTTER_MODULE)
        if pid is not None:
            stop_pid(pid, STUTTER_MODULE, self.clock, grace=5.0)
        if record:
            return self.events.record("fast-disk", short(site), "disk speed restored")
        return None
