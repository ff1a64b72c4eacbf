"""Waiting on `drbdsetup events2`: the `DrbdReplicator` methods that follow DRBD's
events until something is settled, instead of polling.

* after `drbdadm connect`: until the handshake ends, with split brain (DRBD calls its
  split-brain helper, or drops back to StandAlone) raised as SplitBrain;
* online verify (`verify`): until replication leaves VerifyS/VerifyT, then the blocks
  the kernel log names as out of sync (`dmesg`).

Every status seen on the way goes to `on_progress` (a CLI's progress bar).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from drorch.remote.base import CommandTimeout, RunnerError
from drorch.replication.base import (
    ConnState,
    ReplicationError,
    ReplicationStatus,
    SplitBrain,
    VerifyResult,
)
from drorch.replication.drbd import policy
from drorch.replication.drbd.events2 import follow
from drorch.replication.drbd.ops import Op, Outcome
from drorch.replication.drbd.status_sources import DrbdUnreachable

if TYPE_CHECKING:
    from drorch.model.types import Node, Volume
    from drorch.remote.base import CommandRunner

BLOCK = 4096  # DRBD's bitmap granularity: one bit per 4 KiB
SPLIT_BRAIN_HELPERS = frozenset({"initial-split-brain", "split-brain"})
_OUT_OF_SYNC = re.compile(r"Out of sync: start=(\d+), size=(\d+) \(sectors\)")


class Waits:
    """Mixed into `DrbdReplicator` (which provides the attributes and methods below)."""

    name: str
    mode: str
    node: Node
    volume: Volume
    runner: CommandRunner
    log: list[str]
    connect_wait: float
    verify_wait: float
    on_progress: Callable[[ReplicationStatus], None] | None

    if TYPE_CHECKING:

        def status(self) -> ReplicationStatus: ...
        def _decide(self, decision: policy.Decision) -> bool: ...
        def _run(self, op: Op, *options: str, input: str | None = None) -> Outcome: ...
        def _generation(self, st: ReplicationStatus) -> tuple[dict[str, Any], str | None]: ...

    def _follow_until(
        self, done: Callable[[ReplicationStatus], bool], wait: float
    ) -> ReplicationStatus | None:
        """Follow events2 until `done(status)`; the last status seen (None if none) when
        the stream ends or `wait` seconds pass."""
        last: ReplicationStatus | None = None
        stream = follow(self.runner, self.name, self.mode, timeout=wait)
        try:
            for st in stream:
                last = st
                if self.on_progress is not None:
                    self.on_progress(st)
                if done(st):
                    break
        except CommandTimeout:
            pass
        except RunnerError as exc:
            raise DrbdUnreachable(f"{self.node.name}: events2: {exc}") from exc
        finally:
            stream.close()
        return last

    def _await_connection(self) -> None:
        """Wait until the handshake ends. Split brain (DRBD calls its split-brain helper,
        or drops back to StandAlone) raises SplitBrain; still Connecting at the end of the
        wait is fine (DRBD keeps trying until the peer answers)."""
        seen_connecting = False

        def settled(st: ReplicationStatus) -> bool:
            nonlocal seen_connecting
            helpers = {
                str(r.get("helper"))
                for r in st.extra.get("details", {}).get("recent", [])
                if r.get("event") == "call"
            }
            if helpers & SPLIT_BRAIN_HELPERS:
                return True
            if st.connection is ConnState.CONNECTING:
                seen_connecting = True
            replication = st.extra.get("drbd", {}).get("replication")
            if st.connection is ConnState.CONNECTED and replication == "Off":
                return False
            return st.connection is not ConnState.CONNECTING and (
                st.connection is not ConnState.STANDALONE or seen_connecting
            )

        last = self._follow_until(settled, self.connect_wait)
        if last is None:
            return
        recent = last.extra.get("details", {}).get("recent", [])
        split = any(r.get("helper") in SPLIT_BRAIN_HELPERS for r in recent)
        if split or (last.connection is ConnState.STANDALONE and seen_connecting):
            generation, _problem = self._generation(last)
            raise SplitBrain(
                f"{self.name}: DRBD refused the connection and went StandAlone "
                f"({'split brain detected' if split else 'handshake failed'}); "
                "resolve it with resolve --discard-local on the side whose changes are lost",
                local={
                    "node": self.node.name,
                    "role": last.role.value,
                    "generation": generation,
                    "out_of_sync_bytes": last.out_of_sync_bytes,
                },
                peer={"disk": last.peer_disk.value, "role": last.peer_role.value},
            )
        if last.connection is ConnState.STANDALONE:
            raise ReplicationError(
                f"{self.name}: still StandAlone after drbdadm connect (see the kernel log)"
            )
        if last.connection is ConnState.CONNECTING:
            self.log.append(
                f"still Connecting after {self.connect_wait:g}s: the peer does not answer yet;"
                " DRBD keeps trying"
            )

    def verify(self) -> VerifyResult:
        if self._decide(policy.decide_verify(self.status())):
            self._run(Op.VERIFY)
        outcome: dict[str, str] = {}

        def finished(st: ReplicationStatus) -> bool:
            # drbdadm verify changes the state before it returns, so a status that is not
            # Verify* means the verify has ended: Established = completed, else stopped.
            replication = str(st.extra.get("drbd", {}).get("replication"))
            if replication in ("VerifyS", "VerifyT"):
                return False
            outcome["end"] = replication
            return True

        last = self._follow_until(finished, self.verify_wait)
        if last is None or "end" not in outcome:
            raise ReplicationError(
                f"{self.name}: online verify did not finish within {self.verify_wait:.0f}s; "
                "it keeps running (watch drorch drbd status)"
            )
        if outcome["end"] != "Established":
            raise ReplicationError(
                f"{self.name}: online verify stopped: replication is {outcome['end']}, "
                f"connection {last.connection.value}"
            )
        size = int(last.extra.get("size_bytes", self.volume.size))
        offsets: tuple[int, ...] = ()
        if last.out_of_sync_bytes:
            offsets = self._out_of_sync_offsets()
            if not offsets:
                raise ReplicationError(
                    f"{self.name}: verify found {last.out_of_sync_bytes} bytes out of sync, "
                    "but the kernel log names no blocks; run drbdadm invalidate on the "
                    "stale side"
                )
        return VerifyResult(size // BLOCK, offsets, BLOCK)

    def _out_of_sync_offsets(self) -> tuple[int, ...]:
        """Block offsets DRBD's online verify logged as `Out of sync: start=S, size=N
        (sectors)` for this resource."""
        try:
            result = self.runner.run(["dmesg"], timeout=15.0)
        except RunnerError as exc:
            raise DrbdUnreachable(f"{self.node.name}: dmesg: {exc}") from exc
        offsets: set[int] = set()
        for line in result.stdout.splitlines():
            if f"drbd {self.name}/" not in line:
                continue
            m = _OUT_OF_SYNC.search(line)
            if m:
                start, size = int(m.group(1)) * 512, int(m.group(2)) * 512
                offsets.update(range(start - start % BLOCK, start + size, BLOCK))
        return tuple(sorted(offsets))
