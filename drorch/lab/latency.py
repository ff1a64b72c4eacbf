"""Sync write latency through the lab's WAN proxy, as `drorch lab demo` measures it.

A 4 KiB write with FUA (force unit access: acknowledged only once durable), sent by
`qemu-io` from inside site A's namespace to the volume's NBD export at A, the way the
guest's own writes go. The volume is sync, so the export acknowledges the write only
after B's replica has it: the write crosses the WAN (through the proxy) and back. It
goes to the last 4 KiB of the disk; the heartbeat guest uses sector 0 only.

Measured with the WAN as it is (no delay) and with `delay` one-way in each direction
(`drorch lab wan --delay 20ms`); the previous impairment is put back afterwards. With
delay d a sync write cannot take less than one round trip, 2 d (`Impairment.round_trip`).
"""

from __future__ import annotations

import re
import statistics
import subprocess
from dataclasses import dataclass
from typing import Any

from drorch.lab.wan import Impairment
from drorch.lab.wan_lab import LabWan

BLOCK = 4096
_OPS = re.compile(r"([\d.]+) ops/sec")


class LatencyError(Exception):
    """The writes could not be made or timed; the message has qemu-io's words."""


@dataclass(frozen=True)
class WriteLatency:
    delay_s: float  # one-way WAN delay while measured
    samples_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples_s)

    @property
    def min_s(self) -> float:
        return min(self.samples_s)

    @property
    def round_trip_s(self) -> float:
        return Impairment(delay=self.delay_s).round_trip

    @property
    def at_least_round_trip(self) -> bool:
        return self.min_s >= self.round_trip_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "wan_delay_ms": round(self.delay_s * 1000, 1),
            "median_ms": round(self.median_s * 1000, 1),
            "min_ms": round(self.min_s * 1000, 1),
            "round_trip_ms": round(self.round_trip_s * 1000, 1),
            "writes": len(self.samples_s),
        }


def qemu_io_writes(
    netns: str, host: str, port: int, export: str, offset: int, count: int, timeout: float = 60
) -> tuple[float, ...]:
    """`count` 4 KiB FUA writes at `offset` over one NBD connection; each one's time
    (qemu-io times each command: 1 op, so its ops/sec is 1 / latency)."""
    argv = ["ip", "netns", "exec", netns, "qemu-io", "-f", "raw", f"nbd://{host}:{port}/{export}"]
    for i in range(count):
        argv += ["-c", f"write -f -P {0x40 + i % 64} {offset} {BLOCK}"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LatencyError(f"qemu-io did not finish {count} writes in {timeout:g} s") from None
    except FileNotFoundError:
        raise LatencyError("qemu-io is not installed (Debian package qemu-utils)") from None
    rates = [float(m) for m in _OPS.findall(done.stdout)]
    if done.returncode != 0 or len(rates) != count or not all(rates):
        raise LatencyError(f"qemu-io exit {done.returncode}: {(done.stderr or done.stdout)[-300:]}")
    return tuple(1.0 / r for r in rates)


def measure_with_and_without_delay(
    wan: LabWan,
    *,
    netns: str,
    host: str,
    port: int,
    export: str,
    disk_size: int,
    delay: float = 0.020,
    count: int = 5,
) -> list[WriteLatency]:
    """The latencies with no WAN delay, then with `delay` one-way; the impairment that
    was set before is restored, also when a measurement fails."""
    before = wan.state().impairment
    offset = disk_size - BLOCK
    out: list[WriteLatency] = []
    try:
        for d in (0.0, delay):
            wan.set(Impairment(delay=d))
            out.append(WriteLatency(d, qemu_io_writes(netns, host, port, export, offset, count)))
    finally:
        wan.set(before)
    return out
