"""`lab demo`'s report: each measurement next to its target, judged from the phases."""

from __future__ import annotations

from drorch.lab.demo import Phase, demo_report


def test_measurements_are_judged_against_their_targets() -> None:
    phases = [
        Phase("lab up (1 VM, sync)", True),
        Phase("hurricane: migrate to siteB", True, figures={"downtime_s": {"vm1": 0.3}}),
        Phase("weekly drill: migrate back to siteA", True, figures={"downtime_s": {"vm1": 0.7}}),
        Phase("cold failover: kill site A", True, figures={"rto_s": 18.5, "acked_values_lost": 0}),
        Phase("fail back to siteA", False, detail="exit 1"),
    ]
    report = demo_report(phases, takeover_wait=9.0)
    rows = {m["measurement"].split(" (")[0]: m for m in report["measurements"]}
    assert rows["live-migration downtime per VM"]["value"] == "300 ms, 700 ms"
    assert rows["live-migration downtime per VM"]["met"] is False  # 700 ms > 500 ms
    assert rows["automatic-failover RTO"]["met"] is True  # 18.5 <= 9 + 10
    assert rows["RPO in acknowledged counter values lost"]["met"] is True
    assert [p["ok"] for p in report["phases"]] == [True, True, True, True, False]


def test_a_failover_that_never_booted_meets_nothing() -> None:
    report = demo_report([Phase("cold failover: kill site A", False)], takeover_wait=9.0)
    met = {m["measurement"].split(" (")[0]: m["met"] for m in report["measurements"]}
    assert met["automatic-failover RTO"] is False
    assert met["RPO in acknowledged counter values lost"] is False


def test_sync_write_latency_is_met_only_when_each_delayed_write_took_a_round_trip() -> None:
    def latency(round_trip: bool) -> Phase:
        figures = {
            "sync_write_median_ms": {"wan_0ms": 3.1, "wan_20ms": 44.0},
            "sync_write_min_ms": {"wan_0ms": 2.5, "wan_20ms": 41.0},
            "sync_write_at_least_round_trip": round_trip,
        }
        return Phase("sync write latency with and without WAN delay", True, figures=figures)

    def row(phases: list[Phase]) -> dict[str, object]:
        report = demo_report(phases, takeover_wait=9.0)
        (found,) = (m for m in report["measurements"] if m["measurement"].startswith("sync"))
        return found

    good = row([latency(True)])
    assert good["value"] == "3.1 ms (WAN 0 ms one-way), 44 ms (WAN 20 ms one-way)"
    assert good["met"] is True
    assert row([latency(False)])["met"] is False  # faster than light: not through the WAN
    assert row([])["met"] is False and row([])["value"] == "-"
