"""Plan tables: given a snapshot and a target site, the exact ordered steps and reasons."""

from __future__ import annotations

import dataclasses

from drorch.decide.plan import Plan, plan_failover, plan_migration
from drorch.decide.snapshot import WitnessView
from drorch.decide.steps import messages
from tests.decide.conftest import healthy_at_a, replica

Row = tuple[str, str, str | None, str | None, str]


def rows(plan: Plan) -> list[Row]:
    return [(s.action.value, s.target, s.site, s.node, s.reason) for s in plan.steps]


MIGRATION_A_TO_B: list[Row] = [
    ("stop-service", "frontend", "A", "a1",
     "frontend is not migratable: stop it at A before the volumes switch"),
    ("stop-service", "proxy", "A", "a2",
     "proxy is not migratable: stop it at A before the volumes switch"
     " (after frontend, which depends on it)"),
    ("shutdown-vm", "web", "A", None,
     "web uses webdata, replicated asynchronously; a live hand-over needs sync replication,"
     " so it moves cold: stop it at A before the volumes switch"
     " (after frontend, which depends on it)"),
    ("shutdown-vm", "db", "A", None,
     "db is not migratable: stop it at A before the volumes switch"
     " (after proxy, which depends on it)"),
    ("wait-in-sync", "dbdata", "B", "b1",
     "dbdata (sync) must be UpToDate at B before it switches (in sync now)"),
    ("wait-in-sync", "webdata", "B", "b1",
     "webdata (async) must be UpToDate at B before it switches (now 3.0 MiB behind)"),
    ("demote", "dbdata", "A", "a1", "switch dbdata: demote it at A so only one site can write"),
    ("promote", "dbdata", "B", "b1",
     "switch dbdata: promote it at B with quorum epoch 5; the new epoch fences any late"
     " write from A"),
    ("demote", "webdata", "A", "a2", "switch webdata: demote it at A so only one site can write"),
    ("promote", "webdata", "B", "b1",
     "switch webdata: promote it at B with quorum epoch 5; the new epoch fences any late"
     " write from A"),
    ("define-vm", "db", "B", None, "db is not defined at B: define it from the XML saved from A"),
    ("start-vm", "db", "B", None,
     "db is not migratable: start it at B from its replicated disks (dbdata)"),
    ("define-vm", "web", "B", None,
     "web is not defined at B: define it from the XML saved from A"),
    ("start-vm", "web", "B", None,
     "web uses webdata, replicated asynchronously (moved cold): start it at B from its"
     " replicated disks (webdata)"),
    ("start-service", "proxy", "B", "b1", "start proxy on b1 after db (its dependencies)"),
    ("start-service", "frontend", "B", "b1",
     "start frontend on b1 after web, proxy (its dependencies)"),
    ("verify-monitor", "web/alive", "B", None,
     "confirm web works at B: process check 'qemu' (level 1) must pass within 2s"),
    ("verify-monitor", "proxy/port", "B", "b1",
     "confirm proxy works at B: tcp check '127.0.0.1:6432' (level 2) must pass within 3s"),
]  # fmt: skip

# With webdata replicated synchronously, web is handed over live, the DRBD way: both
# sites have its disk open for the moment of the hand-over, then the source lets go.
LIVE_HANDOVER: list[Row] = [
    ("stop-service", "frontend", "A", "a1",
     "frontend is not migratable: stop it at A before the volumes switch"),
    ("stop-service", "proxy", "A", "a2",
     "proxy is not migratable: stop it at A before the volumes switch"
     " (after frontend, which depends on it)"),
    ("shutdown-vm", "db", "A", None,
     "db is not migratable: stop it at A before the volumes switch"
     " (after proxy, which depends on it)"),
    ("wait-in-sync", "dbdata", "B", "b1",
     "dbdata (sync) must be UpToDate at B before it switches (in sync now)"),
    ("wait-in-sync", "webdata", "B", "b1",
     "webdata (sync) must be UpToDate at B before it switches (in sync now)"),
    ("demote", "dbdata", "A", "a1", "switch dbdata: demote it at A so only one site can write"),
    ("promote", "dbdata", "B", "b1",
     "switch dbdata: promote it at B with quorum epoch 5; the new epoch fences any late"
     " write from A"),
    ("allow-two-primaries", "webdata", None, None,
     "web's live hand-over needs webdata open at both sites for a moment; sync replication"
     " keeps the two copies identical"),
    ("promote", "webdata", "B", "b1",
     "open webdata at B as second primary, so web's disk is writable there when it resumes"),
    ("migrate-live", "web", "B", None,
     "web is migratable: live-migrate it to B (pause budget 300ms); its disks (webdata) are"
     " open at both sites"),
    ("demote", "webdata", "A", "a2", "web runs at B now: demote webdata at A"),
    ("forbid-two-primaries", "webdata", None, None,
     "only B may write webdata again: forbid two primaries, so a late promotion at A is"
     " refused"),
]  # fmt: skip


def test_sync_volume_is_handed_over_live_with_two_primaries() -> None:
    from drorch.model.loader import parse_cluster_text
    from tests.decide.conftest import CLUSTER_YAML

    text = CLUSTER_YAML.replace("driver: drbd, mode: async", "driver: drbd, mode: sync")
    synced = parse_cluster_text(text, "shop.yaml")[0]
    base = healthy_at_a()
    snap = dataclasses.replace(base, cluster=synced)
    plan = plan_migration(snap, "B")
    assert plan.runnable, plan.blockers
    assert rows(plan)[: len(LIVE_HANDOVER)] == LIVE_HANDOVER
    # the live-migrated VM is never stopped, defined or started at B by the plan
    assert not [r for r in rows(plan) if r[1] == "web" and r[0] != "migrate-live"]


def test_an_async_volume_switched_to_sync_live_is_handed_over_live() -> None:
    # the hurricane runbook switches async volumes to sync before it plans the move:
    # the plan follows the mode the source replica runs in now, not the config's
    snap = healthy_at_a()
    now = dict(snap.replicas)
    now[("webdata", "A")] = dataclasses.replace(now[("webdata", "A")], mode="sync")
    plan = plan_migration(healthy_at_a(replicas=now), "B")
    assert plan.runnable, plan.blockers
    assert rows(plan)[: len(LIVE_HANDOVER)] == LIVE_HANDOVER
    # still draining (the source says async): cold, as the config says
    now[("webdata", "A")] = dataclasses.replace(now[("webdata", "A")], mode="async")
    cold = rows(plan_migration(healthy_at_a(replicas=now), "B"))
    assert ("shutdown-vm", "web") in [(a, t) for a, t, *_ in cold]


def test_hurricane_migration_a_to_b() -> None:
    snap = healthy_at_a()
    lagging = dict(snap.replicas)
    lagging[("webdata", "A")] = replica("webdata", "A", "primary", behind=3 * 2**20)
    plan = plan_migration(healthy_at_a(replicas=lagging), "B")
    assert plan.runnable, plan.blockers
    assert (plan.from_site, plan.to_site, plan.kind) == ("A", "B", "migration")
    assert rows(plan) == MIGRATION_A_TO_B
    assert not plan.needs_data_loss_ack
    assert messages(plan.notes) == ("the cluster runs at A: 2 volume(s) are primary at A",)


def test_migration_skips_what_is_already_in_place() -> None:
    states = {("db-vm", "A"): "shutoff", ("web", "A"): "running",
              ("db-vm", "B"): "running", ("web", "B"): "undefined"}  # fmt: skip
    plan = plan_migration(healthy_at_a(vm_states=states), "B")
    actions = [(a, t) for a, t, *_ in rows(plan)]
    assert ("shutdown-vm", "db") not in actions  # not running at A
    assert ("define-vm", "db") not in actions and ("start-vm", "db") not in actions
    assert messages(plan.notes) == ("the cluster runs at A: 2 volume(s) are primary at A",)


def test_migration_leaves_a_stopped_vm_stopped() -> None:
    states = {("db-vm", "A"): "shutoff", ("web", "A"): "running",
              ("db-vm", "B"): "undefined", ("web", "B"): "undefined"}  # fmt: skip
    plan = plan_migration(healthy_at_a(vm_states=states), "B")
    assert "db" not in [t for a, t, *_ in rows(plan) if a in ("define-vm", "start-vm")]
    assert messages(plan.notes)[-1] == "db is not running at A: it is left stopped"


BLOCKED_MIGRATIONS = [
    ("to the site it already runs at", {}, "A",
     "nothing to do: the cluster already runs at A"),
    ("to an unknown site", {}, "C", "'C' is not a site (A, B)"),
    ("with the target unreachable", {"reachable": {"A": True, "B": False}}, "B",
     "site B is unreachable: a planned migration needs both sites"),
    ("with the source unreachable", {"reachable": {"A": False, "B": True}}, "B",
     "site A is unreachable: a planned migration needs both sites (use `plan failover` for"
     " a lost source)"),
]  # fmt: skip


def test_blocked_migrations_say_why() -> None:
    for why, overrides, to, blocker in BLOCKED_MIGRATIONS:
        plan = plan_migration(healthy_at_a(**overrides), to)
        assert not plan.runnable, why
        assert blocker in messages(plan.blockers), (why, plan.blockers)


def test_migration_refused_when_replica_cannot_catch_up() -> None:
    snap = healthy_at_a()
    broken = dict(snap.replicas)
    broken[("dbdata", "A")] = replica("dbdata", "A", "primary", conn="StandAlone", behind=4096)
    broken[("dbdata", "B")] = replica(
        "dbdata", "B", "secondary", disk="Outdated", conn="StandAlone"
    )
    plan = plan_migration(healthy_at_a(replicas=broken), "B")
    assert messages(plan.blockers) == (
        "dbdata: the replica at B is Outdated and the link is StandAlone; it cannot catch"
        " up, so a planned migration would lose data (reconnect it first, or use `plan"
        " failover` if the source is lost)",
    )


def site_a_lost(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "reachable": {"A": False, "B": True},
        "replicas": {
            ("dbdata", "B"): replica("dbdata", "B", "secondary"),
            ("webdata", "B"): replica("webdata", "B", "secondary", disk="Outdated"),
        },
        "vm_states": {("db-vm", "B"): "undefined", ("web", "B"): "shutoff"},
    }
    fields.update(overrides)
    return fields


FAILOVER_TO_B: list[Row] = [
    ("confirm-fenced", "A", "A", None,
     "A is not confirmed fenced: check that its lease at the witness has expired"),
    ("wait-takeover", "A", "A", None,
     "wait takeover_wait 15s (lease_timeout 10s + switch_delay 5s) so A's watchdog has"
     " surely fired before anything is promoted"),
    ("promote", "dbdata", "B", "b1",
     "promote dbdata at B with quorum epoch 5: its disk is UpToDate, so no acknowledged"
     " write is lost"),
    ("promote", "webdata", "B", "b1",
     "promote webdata at B with quorum epoch 5: DATA-LOSS RISK: its disk is Outdated, so"
     " writes made at A after replication stopped are lost; needs force with a data-loss"
     " acknowledgement"),
    ("define-vm", "db", "B", None, "db is not defined at B: define it from the XML saved from A"),
    ("start-vm", "db", "B", None,
     "db was lost with A: start it at B from its replicated disks (dbdata)"),
    ("start-vm", "web", "B", None,
     "web was lost with A: start it at B from its replicated disks (webdata)"),
    ("start-service", "proxy", "B", "b1", "start proxy on b1 after db (its dependencies)"),
    ("start-service", "frontend", "B", "b1",
     "start frontend on b1 after web, proxy (its dependencies)"),
    ("verify-monitor", "web/alive", "B", None,
     "confirm web works at B: process check 'qemu' (level 1) must pass within 2s"),
    ("verify-monitor", "proxy/port", "B", "b1",
     "confirm proxy works at B: tcp check '127.0.0.1:6432' (level 2) must pass within 3s"),
]  # fmt: skip


def test_failover_to_b_after_losing_a() -> None:
    plan = plan_failover(healthy_at_a(**site_a_lost()), "B")
    assert plan.runnable, plan.blockers
    assert (plan.from_site, plan.to_site, plan.kind) == ("A", "B", "failover")
    assert rows(plan) == FAILOVER_TO_B
    assert plan.needs_data_loss_ack
    assert [s.target for s in plan.steps if s.data_loss] == ["webdata"]


def test_failover_with_confirmed_fencing_does_not_wait() -> None:
    fenced = site_a_lost(fenced={"A": True}, fenced_reason={"A": "lease expired at the witness"})
    snap = healthy_at_a(**fenced)
    plan = plan_failover(snap, "B")
    assert rows(plan)[0] == (
        "confirm-fenced", "A", "A", None,
        "A is confirmed fenced (lease expired at the witness): it can no longer write",
    )  # fmt: skip
    assert "wait-takeover" not in [a for a, *_ in rows(plan)]


def test_failover_blocked_while_the_witness_cannot_be_asked() -> None:
    """No witness: no grant, so no epoch that fences A, and nothing confirms A fenced.
    Blocked (forceable: the operator may know A is off), never "runnable"."""
    down = site_a_lost(witness_errors={"B": "ConnectionRefusedError: refused"})
    plan = plan_failover(healthy_at_a(**down), "B")
    assert not plan.runnable
    [b] = plan.blockers
    assert (b.code, b.forceable) == ("witness-unreachable", True)
    assert b.message.startswith(
        "the witness cannot be asked as B (ConnectionRefusedError: refused): B would get no"
        " grant (no epoch that fences A), no outdate records, and nothing confirms A fenced;"
        " check the witness ("
    )
    assert b.message.endswith(
        "only if A is surely powered off, run the failover with --force --accept-data-loss"
    )
    assert plan.blocking(force=True) == ()
    fence = plan.steps[0]
    assert (fence.action.value, fence.data_loss) == ("confirm-fenced", True)
    assert fence.reason == (
        "A is not confirmed fenced, and cannot be: the witness does not answer"
        " (ConnectionRefusedError: refused); DATA-LOSS RISK if A still writes"
    )
    # a fence confirmed otherwise (e.g. before the witness died) needs no witness now
    fenced = site_a_lost(
        witness_errors={"B": "refused"}, fenced={"A": True}, fenced_reason={"A": "expired"}
    )
    assert plan_failover(healthy_at_a(**fenced), "B").runnable
    # the witness unreachable only as the lost site says nothing about the survivor
    assert plan_failover(healthy_at_a(**site_a_lost(witness_errors={"A": "x"})), "B").runnable


def test_migration_blocked_only_when_nobody_can_ask_the_witness() -> None:
    """A node asks the witness with its own site's cert only: the other site's error is
    normal. Blocked (forceable) only when the witness answered no one."""
    snap = healthy_at_a(witness_errors={"A": "ConnectionRefusedError", "B": "refused"})
    plan = plan_migration(snap, "B")
    [b] = plan.blockers
    assert (b.code, b.forceable) == ("witness-unreachable", True)
    assert b.message.startswith("the witness cannot be asked (ConnectionRefusedError):")
    view = WitnessView("A", "A", 3, True, 10000)
    one = healthy_at_a(witness={"A": view}, witness_errors={"B": "no cert for B here"})
    assert "witness-unreachable" not in {b.code for b in plan_migration(one, "B").blockers}


def test_failover_refused_while_the_source_is_reachable() -> None:
    plan = plan_failover(healthy_at_a(), "B")
    assert messages(plan.blockers) == (
        "A is still reachable and not fenced: taking over now risks split brain; use"
        " `plan migrate --to B` while both sites are up",
    )


def test_failover_refused_from_an_inconsistent_replica() -> None:
    lost = site_a_lost()
    lost["replicas"] = {
        ("dbdata", "B"): replica("dbdata", "B", "secondary", disk="Inconsistent"),
        ("webdata", "B"): replica("webdata", "B", "secondary"),
    }
    plan = plan_failover(healthy_at_a(**lost), "B")
    assert messages(plan.blockers) == (
        "dbdata: the replica at B is Inconsistent; it holds no usable copy, so nothing can"
        " start from it",
    )
    promote = next(s for s in plan.steps if s.target == "dbdata")
    assert promote.data_loss
    assert promote.reason.endswith("impossible, disk is Inconsistent")
