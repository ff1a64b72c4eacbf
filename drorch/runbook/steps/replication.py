"""Replication step types: `replication.wait_in_sync`, `.promote`, `.demote`,
`.allow_two_primaries`, `.forbid_two_primaries`, `.set_mode`, `.reprotect`.

They act through the Environment's replicators (sim, pyrepl, DRBD) and the optional
driver capabilities in `drorch.replication.capabilities`; a driver without one fails the
step with a coded reason. Promotion goes through `_promotion` (witness records, epochs,
--force --accept-data-loss), exactly as the CLI's promote does.
"""

from __future__ import annotations

from collections.abc import Mapping

from drorch.model.states import ConnState, Role
from drorch.replication.base import ReplicationError
from drorch.replication.capabilities import DualPrimary
from drorch.runbook.dryworld import dry_modes
from drorch.runbook.steps import _promotion
from drorch.runbook.steps._sync import (
    WAIT_TIMEOUT,
    status_line,
    synced,
    users_running,
    wait_synced,
)
from drorch.runbook.steps._where import (
    PLAN_ARGS,
    names,
    number,
    peer_status,
    replica,
    site_of,
    status,
    text,
    volume,
)
from drorch.runbook.steps.base import (
    Param,
    ParamKind,
    StepContext,
    StepFailed,
    StepResult,
    StepType,
    register,
)


@register
class WaitInSync(StepType):
    """Wait until the volume's replica at the site is in sync with its peer, with a
    resync progress bar (bytes to go).

    Fails with not-in-sync at once when the replica is StandAlone (it cannot catch up),
    step-timeout when `timeout` (or the step's) runs out. Read only."""

    name = "replication.wait_in_sync"
    params = (
        *PLAN_ARGS,
        Param("mode", ParamKind.STR, "The volume's mode, as planned.", default=""),
        Param("source_site", ParamKind.STR, "Where the data comes from, as planned.", default=""),
        Param("behind_bytes", ParamKind.INT, "How far behind when planned.", default=0),
        Param("timeout", ParamKind.DURATION, "Give up after this long.", default=WAIT_TIMEOUT),
    )
    idempotent = True

    def describe(self, args: Mapping[str, object]) -> str:
        where = text(args, "site") or text(args, "node")
        return f"wait until {text(args, 'target')} is in sync at {where}"

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        node, rep = replica(ctx, text(args, "target"), text(args, "site"), text(args, "node"))
        st = status(rep, f"{text(args, 'target')}@{node}")
        ok, behind = synced(st, peer_status(ctx, text(args, "target"), node))
        line = status_line(text(args, "target"), node, st, behind)
        if st.connection == ConnState.STANDALONE:
            raise StepFailed("not-in-sync", f"{line}: StandAlone, it cannot catch up")
        return StepResult(False, "in sync now" if ok else f"would wait for {behind} B", (line,))

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        return False  # waiting again is harmless

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        node, _ = replica(ctx, text(args, "target"), text(args, "site"), text(args, "node"))
        line, took = wait_synced(
            ctx, text(args, "target"), node, number(args, "timeout", WAIT_TIMEOUT)
        )
        return StepResult(
            False, f"in sync after {took:.1f}s: {line}", (line,), data={"waited_s": took}
        )


def _epoch(args: Mapping[str, object]) -> int | None:
    value = args.get("epoch")
    return value if isinstance(value, int) and value >= 0 else None


@register
class Promote(StepType):
    """Make the volume primary at the site, with the plan's quorum epoch (or the
    witness's grant). Refused (promote-refused) when the witness records this copy as
    outdated, cannot be asked, or another site holds the lease outside a planned
    in-sync switch, or when the disk is not UpToDate: unless --force --accept-data-loss.
    stale-epoch for an epoch older than one seen. With `fresh_grant` (the undo of a
    demotion) the site first gets a new grant from the witness when its epoch is not
    above every one seen (a replica refuses an equal one); quorum-held-elsewhere when
    another site holds the lease. Undo: replication.demote."""

    name = "replication.promote"
    params = (
        *PLAN_ARGS,
        Param("epoch", ParamKind.INT, "The quorum epoch (-1: the witness's grant).", default=-1),
        Param(
            "second_primary", ParamKind.BOOL, "Beside a primary (live hand-over).", default=False
        ),
        Param("disk", ParamKind.STR, "The disk state when planned (informational).", default=""),
        Param(
            "fresh_grant",
            ParamKind.BOOL,
            "Re-promoting a demoted site (rollback): renew its witness grant first when its"
            " epoch is not above every one seen.",
            default=False,
        ),
    )
    undo = "replication.demote"
    undo_restores = True

    def describe(self, args: Mapping[str, object]) -> str:
        e = _epoch(args)
        return f"promote {text(args, 'target')} at {text(args, 'site') or text(args, 'node')}" + (
            f" (epoch {e})" if e is not None else ""
        )

    def _verdict(self, ctx: StepContext, args: Mapping[str, object]) -> _promotion.Verdict:
        return _promotion.assess(
            ctx,
            text(args, "target"),
            text(args, "site"),
            text(args, "node"),
            _epoch(args),
            bool(args.get("second_primary")),
            bool(args.get("fresh_grant")),
        )

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        v = self._verdict(ctx, args)
        if v.already:
            return StepResult(
                False, f"{text(args, 'target')} is already primary on {v.node}", v.checked
            )
        if v.refusals and not _promotion.forced(ctx):
            raise _promotion.refuse(text(args, "target"), v.node, v.refusals)
        how = " (forced)" if v.refusals else ""
        if args.get("fresh_grant") and _promotion.needs_fresh_grant(v):
            how += f" with a fresh witness grant (epoch {v.epoch} is already seen)"
        return StepResult(True, f"would promote {text(args, 'target')} on {v.node}{how}", v.checked)

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        node, rep = replica(ctx, text(args, "target"), text(args, "site"), text(args, "node"))
        return status(rep, f"{text(args, 'target')}@{node}").role == Role.PRIMARY

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        changed, message, v = _promotion.promote(
            ctx,
            text(args, "target"),
            text(args, "site"),
            text(args, "node"),
            _epoch(args),
            bool(args.get("second_primary")),
            bool(args.get("fresh_grant")),
        )
        return StepResult(
            changed,
            message,
            v.checked,
            data={
                "volume": text(args, "target"),
                "node": v.node,
                "epoch": v.epoch,
                **({"rpo_bytes": v.rpo_bytes} if v.rpo_bytes is not None else {}),
                **({"rpo_basis": v.rpo_basis} if changed else {}),
            },
        )


@register
class Demote(StepType):
    """Make the volume secondary at the site, so only one site can write.

    Refused (volume-in-use) while a VM using it runs at that site; demote-failed when
    the driver refuses. Undo: replication.promote with a fresh witness grant (the site's
    old epoch is already seen: a replica refuses a new primary at it)."""

    name = "replication.demote"
    params = PLAN_ARGS
    undo = "replication.promote"
    undo_restores = True

    def undo_args(self, args: Mapping[str, object], result: StepResult) -> dict[str, object]:
        return {**super().undo_args(args, result), "fresh_grant": True}

    def describe(self, args: Mapping[str, object]) -> str:
        return f"demote {text(args, 'target')} at {text(args, 'site') or text(args, 'node')}"

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        node, rep = replica(ctx, text(args, "target"), text(args, "site"), text(args, "node"))
        st = status(rep, f"{text(args, 'target')}@{node}")
        users = users_running(ctx, text(args, "target"), node)
        checked = (
            f"{text(args, 'target')}@{node}: {st.role}",
            f"VMs using it running there now: {', '.join(users) or 'none'}",
        )
        if st.role != Role.PRIMARY:
            return StepResult(
                False, f"{text(args, 'target')} is already secondary on {node}", checked
            )
        return StepResult(True, f"would demote {text(args, 'target')} on {node}", checked)

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        node, rep = replica(ctx, text(args, "target"), text(args, "site"), text(args, "node"))
        return status(rep, f"{text(args, 'target')}@{node}").role != Role.PRIMARY

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        name = text(args, "target")
        node, rep = replica(ctx, name, text(args, "site"), text(args, "node"))
        if status(rep, f"{name}@{node}").role != Role.PRIMARY:
            return StepResult(False, f"{name} is already secondary on {node}")
        users = users_running(ctx, name, node)
        if users:
            raise StepFailed(
                "volume-in-use",
                f"{name} is in use by {', '.join(users)} running at"
                f" {site_of(ctx, node)}: stop or move it first",
            )
        try:
            rep.demote()
        except ReplicationError as exc:
            raise StepFailed("demote-failed", f"demote {name} on {node}: {exc}") from exc
        return StepResult(True, f"demoted {name} on {node}", data={"volume": name, "node": node})


def _dual(
    ctx: StepContext, args: Mapping[str, object], need: bool = True
) -> list[tuple[str, DualPrimary | None]]:
    """The replicas with the capability (None: a driver without it, which never lets a
    second primary in). `need`: a missing capability fails the step."""
    name = text(args, "target")
    vol = volume(ctx, name)
    out: list[tuple[str, DualPrimary | None]] = []
    for node in names(args, "nodes") or tuple(vol.paths):
        where, rep = replica(ctx, name, node=node)
        if not isinstance(rep, DualPrimary) and need:
            raise StepFailed(
                "two-primaries-unsupported",
                f"{name}@{where}: the {type(rep).__name__} driver cannot allow two primaries",
            )
        out.append((where, rep if isinstance(rep, DualPrimary) else None))
    return out


class _TwoPrimaries(StepType):
    allow = True
    undo_restores = True
    past = "allowed"

    def describe(self, args: Mapping[str, object]) -> str:
        return f"{'allow' if self.allow else 'forbid'} two primaries on {text(args, 'target')}"

    def _state(self, ctx: StepContext, args: Mapping[str, object]) -> tuple[bool, tuple[str, ...]]:
        reps = _dual(ctx, args, need=self.allow)
        try:
            seen = [(n, r is not None and r.two_primaries_allowed()) for n, r in reps]
        except ReplicationError as exc:
            raise StepFailed("replica-unreachable", str(exc)) from exc
        done = all(a == self.allow for _, a in seen)
        return done, tuple(
            f"{text(args, 'target')}@{n}: two primaries {'allowed' if a else 'forbidden'}"
            for n, a in seen
        )

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        done, checked = self._state(ctx, args)
        if done:
            return StepResult(False, f"two primaries already {self.past}", checked)
        if self.allow:
            node, _ = _dual(ctx, args)[0]
            st = status(replica(ctx, text(args, "target"), node=node)[1], text(args, "target"))
            supposed = dry_modes(ctx.facts).get(text(args, "target")) if ctx.dry_run else None
            if (supposed or st.mode) != "sync":
                raise StepFailed(
                    "not-sync",
                    f"{text(args, 'target')} replicates {st.mode}: two primaries need sync",
                )
            if supposed and st.mode != supposed:
                checked += (f"{text(args, 'target')}: {st.mode} now, sync once an earlier "
                            "step of this dry run switched it",)  # fmt: skip
        return StepResult(True, f"would {self.describe(args)}", checked)

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        return self._state(ctx, args)[0]

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        if self.probe(ctx, args):
            return StepResult(False, f"two primaries already {self.past}")
        for node, rep in _dual(ctx, args, need=self.allow):
            if rep is None:
                continue  # this driver never allows a second primary
            try:
                rep.allow_two_primaries() if self.allow else rep.forbid_two_primaries()
            except ReplicationError as exc:
                code = "two-primaries-refused" if self.allow else "both-primary"
                raise StepFailed(code, f"{text(args, 'target')}@{node}: {exc}") from exc
        message = f"two primaries {self.past} on {text(args, 'target')}"
        return StepResult(True, message, data={"volume": text(args, "target")})


@register
class AllowTwoPrimaries(_TwoPrimaries):
    """Let both sites be primary for the volume, for a VM's live hand-over (sync only).

    two-primaries-unsupported when the driver cannot; not-sync for an async volume.
    Undo: replication.forbid_two_primaries."""

    name = "replication.allow_two_primaries"
    params = (
        *PLAN_ARGS,
        Param("vm", ParamKind.STR, "The VM whose hand-over needs it.", default=""),
        Param("nodes", ParamKind.STR_LIST, "The two nodes (default: both replicas).", default=()),
    )
    undo = "replication.forbid_two_primaries"


@register
class ForbidTwoPrimaries(_TwoPrimaries):
    """Forbid a second primary again once the hand-over is over.

    both-primary while both sites still are (demote one first).
    Undo: replication.allow_two_primaries."""

    name = "replication.forbid_two_primaries"
    params = (
        *PLAN_ARGS,
        Param("vm", ParamKind.STR, "The VM whose hand-over is over.", default=""),
        Param("nodes", ParamKind.STR_LIST, "The two nodes (default: both replicas).", default=()),
        Param("primary_site", ParamKind.STR, "The one site that writes afterwards.", default=""),
    )
    undo = "replication.allow_two_primaries"
    allow = False
    past = "forbidden"
