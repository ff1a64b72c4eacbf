"""`replication.set_mode` async -> sync follows the drain on the step's progress line
(bytes left, rate, what it waits for), records the figures, and fails with
drain-timeout at the step's deadline; `check.replication_in_sync` does not count a sync
replica's queue of writes still waiting for the peer. On the sim lab and a FakeClock:
the primary's replica is wrapped so it drains `RATE` bytes a second once asked."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from drorch.replication.base import ReplicationStatus, Replicator
from drorch.runbook.journal import Journal
from drorch.runbook.steps._sync import unreplicated_lag
from tests.runbook.steps_lab import SimLab

MIB = 1024 * 1024
RATE = 2 * MIB
ASYNC = {"mode: sync             #": "mode: async            #"}


class Draining:
    """A replica that, asked for sync, keeps reporting async with `backlog` bytes
    queued, shrinking at RATE bytes/s of fake time, then sync (the pyrepl contract)."""

    def __init__(self, inner: Replicator, lab: SimLab, backlog: int) -> None:
        self.inner, self.lab, self.backlog = inner, lab, backlog
        self.confirmed = True  # False: the link went after the flip (pyrepl's last_switch)
        self.asked_at: float | None = None
        self.waits: list[bool] = []

    def set_mode(self, mode: str, *, wait: bool = True) -> None:
        self.waits.append(wait)
        self.inner.set_mode(mode)  # type: ignore[attr-defined]
        if mode == "sync" and self.asked_at is None:
            self.asked_at = self.lab.clock.monotonic()

    def left(self) -> int:
        if self.asked_at is None:
            return self.backlog
        return max(0, int(self.backlog - RATE * (self.lab.clock.monotonic() - self.asked_at)))

    def status(self) -> ReplicationStatus:
        st = self.inner.status()
        left = self.left()
        if self.asked_at is None or left > 0:
            sw = {"phase": "draining", "waiting_for": f"{left} queued bytes to drain"}
            extra = {**st.extra, "mode_switch": sw if self.asked_at is not None else None}
            return dataclasses.replace(st, mode="async", lag_bytes=left, extra=extra)
        last = {"to": "sync", "finished": "the link was lost after the flip",
                "confirmed": self.confirmed}  # fmt: skip
        return dataclasses.replace(st, extra={**st.extra, "mode_last_switch": last})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _lab(tmp_path: Path, backlog: int) -> tuple[SimLab, Draining]:
    lab = SimLab(tmp_path, ASYNC)
    key = ("appdata", "a1")
    wrapped = Draining(lab.env.replicators[key], lab, backlog)
    lab.env.replicators[key] = wrapped  # type: ignore[assignment]
    return lab, wrapped


RUNBOOK = """\
name: to-sync
steps:
  - id: switch-to-sync
    action: replication.set_mode
    with: {mode: sync}
    timeout: TIMEOUT
"""


def test_the_drain_is_drawn_with_bytes_left_and_rate_then_recorded(tmp_path: Path) -> None:
    lab, primary = _lab(tmp_path, 8 * MIB)
    assert lab.check("replication.set_mode", mode="sync").checked[-1] == (
        "appdata: 8.0 MiB to drain before sync"
    )
    summary = lab.runbook(RUNBOOK.replace("TIMEOUT", "1m"))
    assert summary.status == "succeeded", lab.output.lines
    assert primary.waits == [False]  # asked without waiting: the step follows it itself
    bars = [u for u in lab.output.updates if u[0] == "[1/1] switch-to-sync"]
    assert bars[0][1:] == (0, 8 * MIB, "drain to sync: 8.0 MiB left at ? MiB/s")
    assert bars[1][1:] == (0.5 * MIB, 8 * MIB, "drain to sync: 7.5 MiB left at 2.0 MiB/s, ~4 s")
    assert bars[-1][1:] == (8 * MIB, 8 * MIB, "drained")
    dones = [u[1] for u in bars]
    assert dones == sorted(dones)  # never backwards
    assert "  appdata: drained 8.0 MiB to sync in 4.0 s" in lab.output.lines
    assert "  changed: set appdata to sync (appdata drained 8.0 MiB in 4.0 s)" in lab.output.lines
    end = next(e for e in Journal(lab.env.state_dir).events(summary.run_id) if e.kind == "end")
    assert end.data["drained"] == {
        "appdata": {"backlog_bytes": 8 * MIB, "most_bytes_left": 8 * MIB, "seconds": 4.0}
    }
    assert {lab.env.replicators[("appdata", n)].status().mode for n in ("a1", "b1")} == {"sync"}


def test_a_drain_past_the_step_timeout_fails_and_rolls_nothing_forward(tmp_path: Path) -> None:
    lab, _ = _lab(tmp_path, 8 * MIB)
    summary = lab.runbook(RUNBOOK.replace("TIMEOUT", "2s"))
    assert summary.status == "failed" and summary.failed_code == "drain-timeout"
    failed = [line for line in lab.output.lines if "FAILED drain-timeout" in line]
    assert failed == [
        "  FAILED drain-timeout: appdata: 4.0 MiB still to drain to sync, waiting for 4194304"
        " queued bytes to drain (the switch goes on; run the step again to follow it)"
    ]
    # the secondary was not asked yet (it is asked once the primary has drained)
    assert lab.env.replicators[("appdata", "a1")].status().mode == "async"


def test_in_sync_ignores_a_sync_queue_but_not_an_async_or_draining_one(tmp_path: Path) -> None:
    lab = SimLab(tmp_path)
    rep = lab.env.replicators[("appdata", "a1")]
    st = rep.status()
    assert st.mode == "sync"
    busy = dataclasses.replace(st, lag_bytes=512 * 1024)  # writes waiting for the peer
    assert unreplicated_lag(busy) == 0
    assert unreplicated_lag(dataclasses.replace(busy, mode="async")) == 512 * 1024
    flipped = dataclasses.replace(busy, extra={"mode_switch": {"phase": "flipped"}})
    assert unreplicated_lag(flipped) == 512 * 1024  # async writes still in that queue

    class Busy:
        def __init__(self, mode: str) -> None:
            self.mode = mode

        def status(self) -> ReplicationStatus:
            return dataclasses.replace(rep.status(), lag_bytes=512 * 1024, mode=self.mode)

    lab.env.replicators[("appdata", "a1")] = Busy("sync")  # type: ignore[assignment]
    assert lab.check("check.replication_in_sync").message == "4 replica(s) in sync"
    lab.env.replicators[("appdata", "a1")] = Busy("async")  # type: ignore[assignment]
    summary = lab.runbook("name: c\nsteps:\n  - {id: c, action: check.replication_in_sync}\n")
    assert summary.failed_code == "not-in-sync"


def test_a_switch_the_peer_never_confirmed_is_not_a_drain(tmp_path: Path) -> None:
    """pyrepl ends a switch unconfirmed when the link goes after the flip, before the peer
    acknowledged it holds the backlog (attack finding): sync from then on, but up to the
    last backlog may be missing at the peer. The step must fail, not report drained."""
    lab, primary = _lab(tmp_path, 1 * MIB)
    primary.confirmed = False
    summary = lab.runbook(RUNBOOK.replace("TIMEOUT", "1m"))
    assert summary.status == "failed" and summary.failed_code == "drain-unconfirmed"
    assert any(
        "appdata: sync from now on, but not drained: the link was lost after the flip" in line
        for line in lab.output.lines
    ), lab.output.lines
