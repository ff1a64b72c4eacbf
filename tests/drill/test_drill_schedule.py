"""When drills are due: cron in a time zone plus a deterministic per-cluster offset."""

from __future__ import annotations

from drorch.drill.schedule import jitter, latest_due, upcoming
from tests.drill.conftest import make_refs, ts

SPREAD = "  - {name: weekly, kind: live, schedule: '0 3 * * sun', target: B, window: 30m}\n"


def test_upcoming_in_order_with_time_zone() -> None:
    refs = make_refs("shop", drills=(
        "  - {name: weekly, kind: live, schedule: '0 3 * * sun', target: B, tz: Europe/Berlin}\n"
        "  - {name: cold, kind: cold, schedule: '@quarterly', target: B}\n"
    ))  # fmt: skip
    got = upcoming(refs, ts(2026, 11, 23), count=2)
    assert [(o.ref.drill.name, o.start_at) for o in got] == [
        ("weekly", ts(2026, 11, 29, 2)),  # 03:00 Berlin (CET) is 02:00 UTC
        ("weekly", ts(2026, 12, 6, 2)),
        ("cold", ts(2027, 1, 1)),
        ("cold", ts(2027, 4, 1)),
    ]
    assert got[0].as_row()["start_at"] == "2026-11-29T03:00:00+01:00"


def test_jitter_is_deterministic_spread_and_inside_the_window() -> None:
    offsets = [jitter(f"cluster-{i}", "weekly", 1800.0) for i in range(200)]
    assert offsets == [jitter(f"cluster-{i}", "weekly", 1800.0) for i in range(200)]
    assert all(0 <= o < 1800 and o == int(o) for o in offsets)
    # no herd: 200 clusters on the same cron spread over the 30 minutes (about 7 a
    # minute on average; a herd would put them all in the first)
    per_minute = [sum(1 for o in offsets if m * 60 <= o < m * 60 + 60) for m in range(30)]
    assert max(per_minute) <= 20 and min(per_minute) >= 1
    assert len(set(offsets)) > 170
    assert min(offsets) < 180 and max(offsets) > 1620
    assert jitter("cluster-1", "weekly", 0.0) == 0.0


def test_a_jittered_start_is_still_upcoming_after_its_nominal_time() -> None:
    ref = make_refs("shop", drills=SPREAD)[0]
    offset = ref.offset
    assert offset > 60  # this name's offset: the test needs a start after 03:01
    nominal = ts(2026, 11, 29, 3)
    (first,) = upcoming([ref], nominal + 60, count=1)
    assert first.nominal == nominal and first.start_at == nominal + offset
    due = latest_due(ref, nominal + offset)
    assert due is not None and due.nominal == nominal
    before = latest_due(ref, nominal + offset - 1)
    assert before is not None and before.nominal == ts(2026, 11, 22, 3)
