"""`lab torture`'s verdict from one run's logs (drorch.lab.torture_judge)."""

from __future__ import annotations

from typing import Any

from drorch.lab.torture_judge import (
    Sample,
    Stop,
    disk_lost,
    judge,
    role_overlaps,
    sample_overlaps,
    totals,
)

A, B = "siteA", "siteB"
FULL = ["volume vm1-disk", "vm vm1"]


def _role(at: float, site: str, primary: list[str]) -> dict[str, Any]:
    return {"at": at, "site": site, "node": site[-1].lower() + "1", "primary": primary}


def test_a_clean_cold_failover_is_no_split_brain() -> None:
    # A primary since before the run; A killed at 10; B primary from 25
    roles = [_role(0, A, FULL), _role(1, B, []), _role(25, B, FULL)]
    assert role_overlaps(roles, [Stop(10, A, "kill-site")], 5, 60) == []


def test_a_kill_that_is_not_known_leaves_both_primary_in_the_role_logs() -> None:
    roles = [_role(0, A, FULL), _role(1, B, []), _role(25, B, FULL)]
    (found,) = role_overlaps(roles, [], 5, 60)
    assert (found.source, found.start, found.end) == ("role-logs", 25, 60)


def test_a_frozen_agent_whose_softdog_fired_stops_being_primary_when_it_fired() -> None:
    # A's agent frozen at 10 logs nothing until thawed at 40; its softdog fired at 14
    roles = [_role(0, A, FULL), _role(1, B, []), _role(24, B, FULL), _role(40, A, [])]
    assert role_overlaps(roles, [Stop(14, A, "softdog fired")], 5, 60) == []
    (found,) = role_overlaps(roles, [], 5, 60)
    assert (found.start, found.end) == (24, 40)


def test_overlaps_outside_the_run_do_not_count_and_are_clipped_to_it() -> None:
    roles = [_role(0, A, FULL), _role(1, B, FULL), _role(8, B, [])]
    (found,) = role_overlaps(roles, [], 5, 60)
    assert (found.start, found.end) == (5, 8)
    assert role_overlaps(roles, [], 10, 60) == []


def test_an_agent_that_cannot_ask_its_replicator_is_judged_by_the_samples_instead() -> None:
    roles = [_role(0, A, FULL), _role(1, B, ["volume vm1-disk (unknown)"])]
    assert role_overlaps(roles, [], 0, 60) == []


def test_samples_with_two_primaries_or_the_guest_at_both_sites_are_merged_intervals() -> None:
    samples = [
        Sample(1.0, (A,), (A,)),
        Sample(1.5, (A, B), (A, B)),
        Sample(2.0, (A, B), (A,)),
        Sample(2.5, (B,), (B,)),
        Sample(3.0, (B,), (A, B)),
    ]
    found = sample_overlaps(samples)
    assert [(f.source, f.start, f.end) for f in found] == [
        ("replicas", 1.5, 1.5),
        ("replicas", 3.0, 3.0),
        ("hypervisors", 1.5, 2.0),
    ]
    assert "still at the end" in found[1].detail


def test_the_verdict_fails_a_sync_loss_but_not_an_async_one() -> None:
    kw: dict[str, Any] = dict(roles=[], stops=[], samples=[], start=0, first_fault=2, end=90)
    ok = judge(acked_lost=0, heal=30, recovered_at=50, **kw)
    assert ok.safe and ok.recovered and (ok.recovery_s, ok.fault_to_healthy_s) == (20, 48)
    assert not judge(acked_lost=3, heal=30, recovered_at=50, **kw).safe
    assert judge(acked_lost=3, heal=30, recovered_at=50, mode="async", **kw).safe
    stuck = judge(acked_lost=0, heal=30, recovered_at=None, **kw)
    assert stuck.safe and not stuck.recovered and stuck.recovery_s is None


def test_totals_count_runs_faults_split_brains_losses_and_the_median_recovery() -> None:
    kw: dict[str, Any] = dict(roles=[], stops=[], start=0, first_fault=2, heal=30, end=90)
    v = [
        judge(samples=[], acked_lost=0, recovered_at=40, **kw),
        judge(samples=[Sample(3, (A, B), (A,))], acked_lost=1, recovered_at=60, **kw),
        judge(samples=[], acked_lost=0, recovered_at=None, **kw),
    ]
    t = totals(v, [1, 2, 3])
    assert t["runs"] == 3 and t["faults_injected"] == 6
    assert t["split_brains"] == 1 and t["runs_with_split_brain"] == 1
    assert t["acked_values_lost"] == 1 and t["recovered"] == 2
    assert t["median_recovery_s"] == 20.0 and t["max_recovery_s"] == 30.0


def test_a_loss_is_seen_on_the_disks_even_when_the_guest_never_boots_again() -> None:
    assert disk_lost(30, {A: 30, B: 28}) == 0  # one replica holds the last value
    assert disk_lost(30, {A: None, B: 27}) == 3
    assert disk_lost(None, {A: None, B: None}) == 0  # nothing was acknowledged
    assert disk_lost(5, {A: None, B: None}) == 5
