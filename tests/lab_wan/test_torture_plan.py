"""`lab torture`'s schedules (drorch.lab.torture_plan): a function of the seed."""

from __future__ import annotations

from drorch.lab.torture_plan import CATALOGUE, Timing, make_schedule, make_schedules


def test_the_same_seed_gives_the_same_schedules_and_another_seed_others() -> None:
    assert make_schedules(7, 20) == make_schedules(7, 20)
    assert make_schedules(7, 20) != make_schedules(8, 20)
    # run n does not depend on how many runs were asked for
    assert make_schedules(7, 3)[2] == make_schedules(7, 20)[2] == make_schedule(7, 3)


def test_every_schedule_keeps_to_the_rules() -> None:
    t = Timing()
    for seed in range(30):
        for s in make_schedules(seed, 20):
            assert 1 <= len(s.faults) <= t.max_faults
            assert t.first[0] <= s.faults[0].at <= t.first[1] + 0.05
            for a, b in zip(s.faults, s.faults[1:], strict=False):
                assert t.gap[0] - 0.05 <= b.at - a.at <= t.gap[1] + 0.05
            assert t.hold[0] - 0.05 <= s.heal_at - s.faults[-1].at <= t.hold[1] + 0.05
            for f in s.faults:
                assert f.target in CATALOGUE[f.kind]
            pairs = [(f.kind, f.target) for f in s.faults]
            assert len(pairs) == len(set(pairs)), s  # no fault twice
            kills = [f for f in s.faults if f.kind == "kill-site"]
            assert len(kills) <= 1, s  # never both sites
            if kills:
                later = [f for f in s.faults if f.at > kills[0].at and f.kind != "partition"]
                assert all(f.target != kills[0].target for f in later), s


def test_over_many_runs_every_kind_of_fault_is_drawn() -> None:
    kinds = {f.kind for s in make_schedules(1, 40) for f in s.faults}
    assert kinds == set(CATALOGUE)


def test_a_schedule_reads_as_its_times() -> None:
    s = make_schedule(7, 1)
    text = s.describe()
    assert text.startswith(f"+{s.faults[0].at:.1f}s {s.faults[0].kind} {s.faults[0].target}")
    assert text.endswith(f"+{s.heal_at:.1f}s heal")
