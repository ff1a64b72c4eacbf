"""The status invariants as a table: each broken picture gives its coded report."""

from __future__ import annotations

import pytest

from drorch.decide.health import Health, check_health, exit_code
from drorch.decide.snapshot import SavedXMLView, Snapshot
from tests.decide.conftest import healthy_at_a, replica

STANDALONE = replica("dbdata", "B", "secondary", conn="StandAlone")


def _with(**changes: object) -> Snapshot:
    base = healthy_at_a()
    replicas = dict(base.replicas)
    vms = dict(base.vm_states)
    replicas.update(changes.pop("replicas", {}))  # type: ignore[call-overload]
    vms.update(changes.pop("vms", {}))  # type: ignore[call-overload]
    return healthy_at_a(replicas=replicas, vm_states=vms, **changes)


def test_healthy_cluster_has_no_reports() -> None:
    assert check_health(healthy_at_a()) == ()
    assert exit_code(()) == 0


@pytest.mark.parametrize(
    ("snapshot", "code", "message"),
    [
        (
            _with(vms={("db-vm", "B"): "running"}),
            "vm-at-two-sites",
            "VM db runs at A and B: two copies write to its disks",
        ),
        (
            _with(vms={("db-vm", "A"): "shutoff", ("db-vm", "B"): "running"}),
            "vm-on-non-primary-volume",
            "VM db runs at B but its volume dbdata is secondary there",
        ),
        (
            _with(replicas={("webdata", "B"): replica("webdata", "B", "primary")}),
            "two-primaries",
            "volume webdata is primary at both A and B outside a live hand-over: a split"
            " brain in the making",
        ),
        (
            _with(
                vms={("db-vm", "A"): "shutoff", ("db-vm", "B"): "running"},
                replicas={("dbdata", "B"): replica("dbdata", "B", "primary"),
                          ("dbdata", "A"): replica("dbdata", "A", "secondary")},
            ),
            None,
            None,
        ),
        (
            _with(vms={("web", "A"): "shutoff", ("web", "B"): "running"},
                  replicas={("webdata", "B"): replica("webdata", "B", "secondary")}),
            "volume-away-from-vm",
            "volume webdata is primary at A while its VM web runs at B",
        ),
        (
            healthy_at_a(reachable={"A": True, "B": False}),
            "site-unreachable",
            "site B is unreachable: none of its drivers answered",
        ),
        (
            _with(replicas={("dbdata", "B"): STANDALONE}),
            "replication-not-connected",
            "volume dbdata at B is StandAlone (disk UpToDate): writes are not replicated",
        ),
        (
            _with(replicas={("dbdata", "B"): replica("dbdata", "B", "secondary", "Inconsistent",
                                                     "SyncTarget", behind=4096)}),
            "replication-behind",
            "volume dbdata at B is Inconsistent with 4096 bytes out of sync and 0 bytes of lag",
        ),
        (
            healthy_at_a(unobserved=("replication dbdata@b1: ControlUnreachable: no daemon",)),
            "unobserved",
            "could not be observed: replication dbdata@b1: ControlUnreachable: no daemon",
        ),
    ],
)  # fmt: skip
def test_each_invariant(snapshot: Snapshot, code: str | None, message: str | None) -> None:
    reports = check_health(snapshot)
    if code is None:
        assert reports == ()
        return
    found = [r for r in reports if r.code == code]
    assert [r.message for r in found] == [message], reports
    assert found[0].action


def test_live_hand_over_is_not_two_primaries() -> None:
    s = _with(
        replicas={("webdata", "B"): replica("webdata", "B", "primary")},
        vms={("web", "B"): "paused"},  # the migration's destination, receiving
    )
    assert check_health(s) == ()


def test_exit_codes() -> None:
    warn = check_health(
        _with(replicas={("dbdata", "B"): replica("dbdata", "B", "secondary", conn="StandAlone")})
    )
    assert {r.severity for r in warn} == {Health.WARNING} and exit_code(warn) == 1
    broken = check_health(healthy_at_a(reachable={"A": True, "B": False}))
    assert exit_code(broken) == 2


def test_a_vm_that_runs_nowhere_or_crashed_is_an_outage() -> None:
    stopped = check_health(_with(vms={("db-vm", "A"): "shutoff"}))
    assert [(r.code, r.message) for r in stopped] == [
        ("vm-stopped", "VM db runs at no site: its service is down")
    ]
    crashed = check_health(_with(vms={("db-vm", "A"): "crashed"}))
    assert [r.code for r in crashed] == ["vm-crashed"]
    # with a site unreachable, only the unreachable site is reported for it
    assert "vm-stopped" not in {
        r.code for r in check_health(healthy_at_a(reachable={"A": False, "B": True}, vm_states={}))
    }


def test_witness_reports() -> None:
    from drorch.decide.snapshot import WitnessView

    down = check_health(healthy_at_a(witness_errors={"A": "cannot connect: refused"}))
    assert [(r.code, r.severity) for r in down] == [("witness-unreachable", Health.WARNING)]
    views = {"A": WitnessView("A", "A", 4, True, 3000), "B": WitnessView("B", "A", 4, False, 3000)}
    wrong = check_health(healthy_at_a(witness=views))
    assert [r.message for r in wrong] == [
        "the witness grants 3000 ms leases but quorum.lease_timeout is 10s (asked as site A)"
    ]
    ok = {s: WitnessView(s, "A", 4, s == "A", 10000) for s in ("A", "B")}
    assert check_health(healthy_at_a(witness=ok)) == ()
    out = check_health(healthy_at_a(outdated={("dbdata", "B"): 7}))
    assert [r.code for r in out] == ["replica-outdated"]
    assert "dbdata at B as outdated since epoch 7" in out[0].message


def _saved(vm: str, site: str, stale: str | None = None) -> SavedXMLView:
    return SavedXMLView(vm, site, f"/state/xml/{vm}/{site}.xml", 100.0, "A", stale)


def test_saved_xml_missing_and_stale() -> None:
    everything = {(vm, site): _saved(vm, site) for vm in ("db", "web") for site in ("A", "B")}
    assert check_health(_with(saved_xml=everything, saved_xml_observed=True)) == ()
    # not looked at: nothing said (snapshots built by hand, decisions that need no XML)
    assert check_health(_with()) == ()
    only_a = {k: v for k, v in everything.items() if k[1] == "A"}
    missing = check_health(_with(saved_xml=only_a, saved_xml_observed=True))
    assert [(r.severity, r.code) for r in missing] == [(Health.WARNING, "saved-xml-missing")] * 2
    assert missing[0].message == (
        "no domain XML of db is saved for B and the config has no `xml:` for it: a failover"
        " there could not define it"
    )
    stale = dict(everything)
    stale[("web", "B")] = _saved(
        "web", "B", "the definition at A differs from the copy saved 5m ago"
    )
    reports = check_health(_with(saved_xml=stale, saved_xml_observed=True))
    assert [r.code for r in reports] == ["saved-xml-stale"]
    assert reports[0].message.endswith(
        "running now: the definition at A differs from the copy saved 5m ago"
    )
    assert reports[0].action.startswith("save it again (`drorch vm sync-xml web`)")
    assert exit_code(reports) == 1


@pytest.mark.parametrize(
    ("holder", "code", "severity"),
    [("A", None, None), (None, "quorum-unheld", Health.WARNING),
     ("B", "quorum-elsewhere", Health.ERROR)],
)  # fmt: skip
def test_the_lease_holder_against_where_the_volumes_are_primary(
    holder: str | None, code: str | None, severity: Health | None
) -> None:
    from drorch.decide.snapshot import WitnessView

    views = {s: WitnessView(s, holder, 4, s == holder, 10000) for s in ("A", "B")}
    reports = check_health(healthy_at_a(witness=views))
    assert [(r.code, r.severity) for r in reports] == ([] if code is None else [(code, severity)])
    if code == "quorum-elsewhere":
        assert "held by B while the volumes are primary at A" in reports[0].message


def test_writes_only_at_a_disconnected_primary_are_named() -> None:
    from dataclasses import replace

    alone = replace(replica("dbdata", "A", "primary", conn="StandAlone"),
                    unshipped_writes=12, unshipped_first="2026-12-04T21:00:00+00:00")  # fmt: skip
    reports = check_health(_with(replicas={("dbdata", "A"): alone}))
    (r,) = [r for r in reports if r.code == "replication-not-connected" and "at A" in r.message]
    assert r.message.endswith(
        "12 write(s) since 2026-12-04T21:00:00+00:00 are only here (lost if this site is lost now)"
    )


def test_writes_discarded_by_a_rejoin_are_a_warning_for_a_day() -> None:
    from dataclasses import replace

    rejoined = replace(replica("dbdata", "A", "secondary"), discarded_writes=7,
                       discarded_at=1000.0, discarded_window="t1 to t2")  # fmt: skip
    for now, expect in ((1000.0 + 3600, 1), (1000.0 + 25 * 3600, 0)):
        snap = _with(replicas={("dbdata", "A"): rejoined}, now=now)
        found = [r for r in check_health(snap) if r.code == "writes-discarded"]
        assert len(found) == expect, found
        if found:
            assert found[0].message == (
                "volume dbdata at A discarded 7 write(s) it had acknowledged (t1 to t2) when"
                " it was resynced from its peer: the failover lost them"
            )
            assert exit_code(tuple(found)) == 1


def test_a_discard_whose_count_may_be_low_is_reported_even_at_zero() -> None:
    from dataclasses import replace

    why = "the primary stopped while shipping asynchronously"
    rejoined = replace(replica("dbdata", "A", "secondary"), discarded_writes=0,
                       discarded_at=1000.0, discarded_window="None to None",
                       discarded_uncounted=why)  # fmt: skip
    snap = _with(replicas={("dbdata", "A"): rejoined}, now=1000.0 + 60)
    found = [r for r in check_health(snap) if r.code == "writes-discarded"]
    assert len(found) == 1, found
    assert found[0].message == (
        "volume dbdata at A discarded at least 0 write(s) it had acknowledged (None to None)"
        " when it was resynced from its peer: the failover lost them (the count may be low:"
        f" {why})"
    )
