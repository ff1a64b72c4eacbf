"""drorch.lab.latency reads each write's time from qemu-io's own per-command timing."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from drorch.lab import latency
from drorch.lab.latency import LatencyError, WriteLatency, qemu_io_writes

OUT = (
    "wrote 4096/4096 bytes at offset 16773120\n"
    "4 KiB, 1 ops; 00.04 sec (97.1 KiB/sec and 24.2718 ops/sec)\n"
    "wrote 4096/4096 bytes at offset 16773120\n"
    "4 KiB, 1 ops; 00.04 sec (99.9 KiB/sec and 25.0000 ops/sec)\n"
)


def fake_run(stdout: str, rc: int = 0) -> Any:
    seen: list[list[str]] = []

    def run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        seen.append(argv)
        return subprocess.CompletedProcess(argv, rc, stdout, "boom" if rc else "")

    run.seen = seen  # type: ignore[attr-defined]
    return run


def test_each_write_is_one_over_its_ops_per_second(monkeypatch: pytest.MonkeyPatch) -> None:
    run = fake_run(OUT)
    monkeypatch.setattr(latency.subprocess, "run", run)
    got = qemu_io_writes("eesiteA", "10.77.74.1", 10809, "vm1-disk", 16773120, 2)
    assert got == pytest.approx((1 / 24.2718, 0.040))
    argv = run.seen[0]
    assert argv[:5] == ["ip", "netns", "exec", "eesiteA", "qemu-io"]
    assert "nbd://10.77.74.1:10809/vm1-disk" in argv
    assert argv.count("-c") == 2 and all("write -f " in a for a in argv if a.startswith("write"))


def test_a_failed_or_short_run_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(latency.subprocess, "run", fake_run(OUT, rc=1))
    with pytest.raises(LatencyError, match="exit 1"):
        qemu_io_writes("ns", "h", 1, "e", 0, 2)
    monkeypatch.setattr(latency.subprocess, "run", fake_run(OUT))
    with pytest.raises(LatencyError):
        qemu_io_writes("ns", "h", 1, "e", 0, 3)  # three asked, two timed


def test_a_round_trip_is_twice_the_one_way_delay() -> None:
    fast = WriteLatency(0.020, (0.039, 0.045))
    assert fast.round_trip_s == pytest.approx(0.040) and not fast.at_least_round_trip
    assert WriteLatency(0.020, (0.041, 0.050)).at_least_round_trip
    assert WriteLatency(0.0, (0.002,)).as_dict()["round_trip_ms"] == 0
