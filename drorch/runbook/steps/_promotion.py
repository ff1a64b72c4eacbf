"""Promote one replica through drorch's safety checks, never around them.

1. The witness (`replication.witness_check.check_promotion`, the same check `drorch repl
   promote -c` and `drorch drbd primary` make): an outdate record for this copy, a
   witness that cannot be asked, or a site without the lease refuses. One narrow case
   is not the lease's to refuse: a planned switch, where this replica is Connected and
   both disks are UpToDate (the peer confirms it has nothing newer); the epoch then
   comes from the plan, and the lease follows with `quorum.release`. A simulated
   cluster without witness certificates asks the simulated witness instead.
2. The replica itself: a disk that is not UpToDate, an older epoch, a primary peer.

Only `--force --accept-data-loss` (ctx.force and ctx.accept_data_loss) overrides, and a
promotion forced past the witness's record then claims it (`claim_after_forced_promotion`).
"""

from __future__ import annotations

from dataclasses import dataclass

from drorch.model.states import ConnState, DiskState, Role
from drorch.replication.base import ReplicationError, StaleEpoch, UnsafeOperation
from drorch.runbook.steps import _witness
from drorch.runbook.steps._where import peer_status, replica, status
from drorch.runbook.steps.base import StepContext, StepFailed

LEASE = "does not hold the quorum lease"


@dataclass(frozen=True)
class Verdict:
    node: str
    epoch: int | None
    checked: tuple[str, ...]
    refusals: tuple[str, ...]  # what stops it unless forced
    already: bool  # already primary
    overrode_record: bool = False
    seen: int = 0  # the highest epoch either replica has seen
    peer_primary: bool = False  # a second primary joins the first one's epoch
    rpo_bytes: int | None = None  # data not replicated at switch time (None: unknown)
    rpo_basis: str = ""
    stale_record: bool = False  # the witness's outdate record for this copy no longer holds


def assess(
    ctx: StepContext,
    volume: str,
    site: str,
    node: str,
    epoch: int | None,
    second: bool,
    fresh: bool = False,
) -> Verdict:
    """Everything the promotion depends on, read only. `fresh`: an epoch older than one
    seen is not refused here (the promotion takes a fresh grant first)."""
    where, rep = replica(ctx, volume, site, node)
    st = status(rep, f"{volume}@{where}")
    checked = [
        f"{volume}@{where}: {st.role}, disk {st.disk}, peer {st.peer_role}/"
        f"{st.peer_disk}, {st.connection}, epoch {st.epoch}"
    ]
    if st.role == Role.PRIMARY:
        return Verdict(where, epoch, tuple(checked), (), True)
    refusals: list[str] = []
    planned = (
        st.connection == ConnState.CONNECTED
        and st.disk == DiskState.UP_TO_DATE
        and st.peer_disk == DiskState.UP_TO_DATE
    )
    overrode = stale = False
    if ctx.cluster.witness is not None and _witness.simulated(ctx) is None:
        from drorch.replication.witness_check import check_promotion

        pc = check_promotion(
            ctx.cluster, volume, where, ctx.env.base_dir, force=True, accept_data_loss=True
        )
        in_sync = planned and st.out_of_sync_bytes == 0 and st.lag_bytes == 0
        mine = f"{volume} at {ctx.cluster.node(where)[0].name} is outdated"
        for note in pc.notes:
            if planned and LEASE in note:
                checked.append(f"witness: {note} (planned switch: in sync with the peer)")
            elif in_sync and note.startswith(mine):
                # it resynced from the peer since: the record no longer says anything true
                checked.append(
                    f"witness: {note}: stale, this copy is connected to the peer and in sync"
                    " with it (both UpToDate); the record is cleared before the promotion"
                )
                stale = True
            else:
                refusals.append(note)
        checked.append(f"witness: {len(pc.notes)} objection(s); grant epoch {pc.epoch}")
        epoch = pc.epoch if pc.epoch is not None else epoch
        overrode = pc.overrode_record
    elif (d := _witness.simulated(ctx)) is not None and not planned:
        try:
            view = _witness.sim_holder(ctx, d)
            checked.append(f"simulated witness: holder {view.holder or 'none'}")
        except StepFailed as exc:
            refusals.append(f"cannot ask whether {volume} at {site} is current ({exc.message})")
    if st.disk != DiskState.UP_TO_DATE:
        refusals.append(
            f"{volume}@{where} is {st.disk}, not UpToDate: promoting it would "
            "serve stale or partial data"
        )
    peer = peer_status(ctx, volume, where)
    seen = max(st.epoch, peer.epoch if peer is not None else 0)
    if epoch is not None and epoch < seen and not fresh:
        raise StepFailed(
            "stale-epoch",
            f"{volume}@{where}: epoch {epoch} is older than epoch {seen} already seen"
            f" (a newer primary exists; a promotion needs an epoch greater than {seen}:"
            " the witness's next grant)",
        )
    if st.peer_role == Role.PRIMARY:
        checked.append(
            f"the peer is primary now ({'second primary' if second else 'an earlier'}"
            f" step {'allows it' if second else 'demotes it'})"
        )
    if planned:
        rpo: int | None = max(st.out_of_sync_bytes, st.lag_bytes)
        basis = f"{volume}: connected and in sync with the peer at the switch"
    elif st.mode == "sync" and not refusals:
        rpo, basis = 0, f"{volume}: sync replication, UpToDate, no newer copy on record"
    elif not refusals:
        rpo, basis = (
            None,
            (
                f"{volume}: {st.mode} replication: the writes the old primary acknowledged"
                " after its last shipment here are lost; how many is unknown at promotion"
                " (the old primary counts them: it reports the exact number when it"
                " rejoins, `drorch status` writes-discarded)"
            ),
        )
    else:
        rpo, basis = None, f"{volume}: promoted past {len(refusals)} objection(s): unknown"
    return Verdict(
        where, epoch, tuple(checked), tuple(refusals), False, overrode, seen,
        st.peer_role == Role.PRIMARY, rpo, basis, stale,
    )  # fmt: skip


def forced(ctx: StepContext) -> bool:
    return ctx.force and ctx.accept_data_loss


def refuse(volume: str, node: str, refusals: tuple[str, ...]) -> StepFailed:
    return StepFailed(
        "promote-refused",
        f"promote {volume} at {node}: "
        + "; ".join(refusals)
        + " (--force --accept-data-loss to promote anyway)",
        data={"refusals": list(refusals)},
    )


def needs_fresh_grant(v: Verdict) -> bool:
    """A new primary needs an epoch above every one seen (replicas refuse an equal one:
    two primaries would share the fencing token). True when the epoch it would take is not,
    e.g. re-promoting the site that was demoted, at its own unchanged grant."""
    return not v.already and not v.peer_primary and v.epoch is not None and v.epoch <= v.seen


def promote(
    ctx: StepContext,
    volume: str,
    site: str,
    node: str,
    epoch: int | None,
    second: bool,
    fresh: bool = False,
) -> tuple[bool, str, Verdict]:
    """Promote (or find it already primary): (changed, message, verdict). `fresh`: when
    the epoch is not above every one seen (the undo of a demotion: the site still holds
    its old grant), first ask the witness for a fresh grant at this site
    (`_witness.fresh_grant`) and promote with that."""
    v = assess(ctx, volume, site, node, epoch, second, fresh)
    if v.already:
        return False, f"{volume} is already primary on {v.node}", v
    regranted = ""
    unset = v.epoch is None and not v.peer_primary and _witness.has_witness(ctx)
    if fresh and (needs_fresh_grant(v) or unset):
        blocking = tuple(r for r in v.refusals if LEASE not in r)  # the grant cures only that
        if blocking and not forced(ctx):
            raise refuse(volume, v.node, blocking)  # before touching the witness
        where = ctx.cluster.node(v.node)[0].name
        got = _witness.fresh_grant(ctx, where, v.seen)
        if got.epoch <= v.seen:
            raise StepFailed(
                "stale-epoch",
                f"{volume}@{v.node}: the witness's fresh grant to {where} (epoch {got.epoch})"
                f" is not above epoch {v.seen} already seen; promote it by hand once the"
                " witness's epoch has moved past the replicas'",
            )
        regranted = f"; {where}'s witness grant renewed for a fresh epoch {got.epoch}"
        v = assess(ctx, volume, site, v.node, got.epoch, second)
    if v.refusals and not forced(ctx):
        raise refuse(volume, v.node, v.refusals)
    if v.stale_record and not v.refusals:
        regranted += _clear_stale_record(ctx, volume, v.node)
    _, rep = replica(ctx, volume, node=v.node)
    force = forced(ctx) and bool(v.refusals)
    try:
        rep.promote(v.epoch, force=force, accept_data_loss=force)
    except StaleEpoch as exc:
        raise StepFailed("stale-epoch", str(exc)) from exc
    except UnsafeOperation as exc:
        raise refuse(volume, v.node, (str(exc),)) from exc
    except ReplicationError as exc:
        raise StepFailed("promote-failed", f"promote {volume} at {v.node}: {exc}") from exc
    message = f"promoted {volume} on {v.node}" + (f" at epoch {v.epoch}" if v.epoch else "")
    message += regranted
    if force:
        message += f" (FORCED past: {'; '.join(v.refusals)})"
    if v.overrode_record:
        from drorch.replication.witness_check import claim_after_forced_promotion

        message += "; " + claim_after_forced_promotion(
            ctx.cluster, volume, v.node, ctx.env.base_dir
        )
    return True, message, v


def _clear_stale_record(ctx: StepContext, volume: str, node: str) -> str:
    """Clear the witness's record that this copy is outdated, before promoting it: it is
    connected to the peer and in sync (checked in assess). Only the lease holder may; a
    refusal stops the promotion (the record still says the copy is outdated)."""
    from drorch.quorum.fence import QuorumError, WitnessSetupError, record_current

    witness = ctx.cluster.witness
    assert witness is not None
    site = ctx.cluster.node(node)[0].name
    try:
        record_current(witness, ctx.cluster.name, site, node, volume, ctx.env.base_dir)
    except (QuorumError, WitnessSetupError, OSError) as exc:
        raise StepFailed(
            "promote-refused",
            f"promote {volume} at {node}: the witness's stale outdate record for it could not"
            f" be cleared ({exc}); this site must hold the lease (`drorch quorum acquire`)",
        ) from exc
    return f"; the witness's stale outdate record for {volume} at {site} cleared"
