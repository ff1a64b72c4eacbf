"""Replication step types that change a volume's relationship rather than its role:
`replication.set_mode` (sync <-> async) and `replication.reprotect` (after a failover,
the old site becomes the secondary of the new primary and resyncs). Part of the
replication family (`replication.py`), kept apart to keep each module short."""

from __future__ import annotations

from collections.abc import Mapping

from drorch.model.states import ConnState, Role
from drorch.replication.base import ReplicationError, ReplicationStatus, Replicator, SplitBrain
from drorch.replication.capabilities import ModeSwitch
from drorch.runbook.dryworld import DRY_MODES
from drorch.runbook.steps import _drain, _promotion
from drorch.runbook.steps._sync import WAIT_TIMEOUT, status_line, synced, users_running, wait_synced
from drorch.runbook.steps._where import (
    names,
    number,
    peer_status,
    replica,
    site_name,
    status,
    text,
    volume,
    volume_names,
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


def _modes(ctx: StepContext, args: Mapping[str, object]) -> list[tuple[str, str, list[str]]]:
    """(volume, current mode, nodes) for each named volume (with `configured`: only those
    whose mode in the cluster file is the step's `mode`)."""
    out: list[tuple[str, str, list[str]]] = []
    for name in volume_names(ctx, names(args, "volumes")):
        if args.get("configured") and str(volume(ctx, name).mode) != text(args, "mode"):
            continue
        nodes = list(volume(ctx, name).paths)
        modes = {status(replica(ctx, name, node=n)[1], f"{name}@{n}").mode for n in nodes}
        out.append((name, modes.pop() if len(modes) == 1 else "mixed", nodes))
    return out


@register
class SetMode(StepType):
    """Switch volumes (default: all) to `mode` sync or async, e.g. async -> sync before a
    hurricane move. Volumes already in that mode are left alone.

    async -> sync drains first: the primary acknowledges async until its peer holds
    every write it lacked, and the step waits for that (the step's `timeout:`, else
    10 min) with a progress line: bytes left, the rate, what the switch waits for. It
    then asks the other replica too (its own fencing options for the day it is
    promoted). The result records what each drain took (bytes, seconds).

    mode-change-unsupported when the driver cannot switch while running; drain-timeout
    when the drain did not finish in time (the switch goes on in the replicator).
    With `configured: true` only the volumes whose mode in the cluster file is `mode`:
    after a hurricane move, `{mode: async, configured: true}` gives the async volumes
    back their configured mode (sync volumes stay sync).

    Undo: replication.set_mode back to the old mode of the volumes it changed."""

    name = "replication.set_mode"
    params = (
        Param("volumes", ParamKind.STR_LIST, "The volumes (default: every volume).", default=()),
        Param("mode", ParamKind.STR, "The new mode.", choices=("sync", "async")),
        Param(
            "configured",
            ParamKind.BOOL,
            "Only the volumes whose configured mode is `mode`.",
            default=False,
        ),
    )
    undo = "replication.set_mode"
    undo_restores = True

    def describe(self, args: Mapping[str, object]) -> str:
        return f"set {', '.join(names(args, 'volumes')) or 'every volume'} to {text(args, 'mode')}"

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        want = text(args, "mode")
        rows = _modes(ctx, args)
        todo = [n for n, m, _ in rows if m != want]
        for name in todo:
            _switchers(ctx, name)
        checked = [f"{n}: {m}" for n, m, _ in rows]
        if want == "sync":
            for name in todo:
                left = max(_drain.left_bytes(st) for st in _statuses(ctx, name))
                checked.append(f"{name}: {_drain.mib(left)} to drain before sync")
        if not rows and args.get("configured"):
            return StepResult(False, f"no volume is configured {want}")
        if not todo:
            return StepResult(False, f"already {want}", tuple(checked))
        return StepResult(
            True,
            f"would set {', '.join(todo)} to {want}",
            tuple(checked),
            data={DRY_MODES: dict.fromkeys(todo, want)},  # later dry-run plans use them
        )

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        return all(m == text(args, "mode") for _, m, _ in _modes(ctx, args))

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        want = text(args, "mode")
        todo = [(name, mode) for name, mode, _ in _modes(ctx, args) if mode != want]
        reps = {name: _switchers(ctx, name) for name, _ in todo}  # all refused, or none
        # the primaries first: an async -> sync switch drains there, and only then are
        # the other replicas asked (they follow their primary over the link meanwhile)
        firsts = {name: [n for n, r in reps[name] if _role(r, name, n) == Role.PRIMARY]
                  for name, _ in todo}  # fmt: skip
        drains: list[_drain.Drain] = []
        asked: dict[str, str] = {}  # volume -> its old mode, once any replica was asked
        try:
            for name, mode in todo:
                for node, rep in reps[name]:
                    if node in firsts[name]:
                        asked[name] = mode
                        _ask(rep, want, f"{name}@{node}", wait=False)
                if want == "sync" and firsts[name]:
                    drains.append(_drain.Drain(name, reps[name], want, ctx.clock.monotonic()))
            _drain.follow(ctx, drains)
            for name, mode in todo:
                for node, rep in reps[name]:
                    if node not in firsts[name]:
                        asked[name] = mode
                        _ask(rep, want, f"{name}@{node}", wait=True)
        except StepFailed as exc:  # its undo puts back what was switched so far
            exc.data = {**dict(exc.data), "old_modes": dict(asked)}
            raise
        old = dict(todo)
        message = f"set {', '.join(old)} to {want}" if old else f"already {want}"
        if not old and args.get("configured") and not _modes(ctx, args):
            message = f"no volume is configured {want}"
        shown = [d for d in drains if d.first_left > 0]  # a drain that had work to do
        if shown:
            message += " (" + ", ".join(
                f"{d.name} drained {_drain.mib(d.first_left)} in {d.seconds:.1f} s" for d in shown
            ) + ")"  # fmt: skip
        figures = {d.name: d.figures() for d in drains}
        return StepResult(bool(old), message, data={"old_modes": old, "drained": figures})

    def undo_args(self, args: Mapping[str, object], result: StepResult) -> dict[str, object]:
        old = result.data.get("old_modes")
        changed = sorted(old) if isinstance(old, dict) else []
        back = "async" if text(args, "mode") == "sync" else "sync"
        if not changed and result.data.get("failed"):
            return {}  # a failed run that switched nothing: nothing to undo
        return (
            {"volumes": tuple(changed), "mode": back}
            if changed
            else {"volumes": (), "mode": text(args, "mode")}
        )


def _switchers(ctx: StepContext, name: str) -> list[tuple[str, Replicator]]:
    """Every replica of `name`, each able to switch mode, or mode-change-unsupported."""
    out: list[tuple[str, Replicator]] = []
    for node in volume(ctx, name).paths:
        rep = replica(ctx, name, node=node)[1]
        if not isinstance(rep, ModeSwitch):
            raise StepFailed(
                "mode-change-unsupported",
                f"{name}@{node}: the driver cannot change mode while running",
            )
        out.append((node, rep))
    return out


def _statuses(ctx: StepContext, name: str) -> list[ReplicationStatus]:
    return [status(rep, f"{name}@{node}") for node, rep in _switchers(ctx, name)]


def _role(rep: Replicator, name: str, node: str) -> Role:
    return status(rep, f"{name}@{node}").role


def _ask(rep: Replicator, want: str, what: str, *, wait: bool) -> None:
    if not isinstance(rep, ModeSwitch):  # _switchers checked it
        raise StepFailed("mode-change-unsupported", f"{what}: cannot change mode")
    try:
        rep.set_mode(want, wait=wait)
    except (ReplicationError, ValueError) as exc:
        raise StepFailed("mode-change-failed", f"{what}: {exc}") from exc


def _connect_peer(ctx: StepContext, name: str, node: str) -> None:
    """The new primary's side may have been disconnected on purpose: ask it too."""
    peer = next((n for n in volume(ctx, name).paths if n != node), None)
    rep = ctx.env.replicators.get((name, peer)) if peer else None
    if rep is not None and status(rep, f"{name}@{peer}").connection == ConnState.STANDALONE:
        rep.connect()


@register
class Reprotect(StepType):
    """After a failover: make the old site (`site`) the secondary of the new primary and
    resync it there (demote, connect both sides, wait in sync with a progress bar).

    A split brain (the old site wrote alone too) fails with split-brain unless
    --force --accept-data-loss, which discards the old site's changes. volume-in-use
    while a VM using the volume still runs at the old site."""

    name = "replication.reprotect"
    params = (
        Param("site", ParamKind.STR, "The old site that becomes secondary."),
        Param("volumes", ParamKind.STR_LIST, "The volumes (default: every volume).", default=()),
        Param("timeout", ParamKind.DURATION, "Resync deadline per volume.", default=WAIT_TIMEOUT),
    )

    def _each(
        self, ctx: StepContext, args: Mapping[str, object]
    ) -> list[tuple[str, str, ReplicationStatus]]:
        site = site_name(ctx, text(args, "site"))
        out = []
        for name in volume_names(ctx, names(args, "volumes")):
            node, rep = replica(ctx, name, site)
            out.append((name, node, status(rep, f"{name}@{node}")))
        return out

    def describe(self, args: Mapping[str, object]) -> str:
        which = ", ".join(names(args, "volumes")) or "every volume"
        return f"reprotect {which} at {text(args, 'site')}"

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        rows = self._each(ctx, args)
        checked = tuple(status_line(n, node, st, st.out_of_sync_bytes) for n, node, st in rows)
        for name, node, _ in rows:
            if users := users_running(ctx, name, node):
                raise StepFailed(
                    "volume-in-use", f"{name}: {', '.join(users)} still run at {text(args, 'site')}"
                )
        if self.probe(ctx, args):
            return StepResult(False, "already secondary and in sync", checked)
        return StepResult(
            True, f"would demote and resync {len(rows)} volume(s) at {text(args, 'site')}", checked
        )

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        return all(
            st.role != Role.PRIMARY and synced(st, peer_status(ctx, n, node))[0]
            for n, node, st in self._each(ctx, args)
        )

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        done: list[str] = []
        for name, node, st in self._each(ctx, args):
            rep = replica(ctx, name, node=node)[1]
            if users := users_running(ctx, name, node):
                raise StepFailed("volume-in-use", f"{name}: {', '.join(users)} still run there")
            try:
                if st.role == Role.PRIMARY:
                    rep.demote()
                try:
                    rep.connect()
                    _connect_peer(ctx, name, node)
                except SplitBrain as exc:
                    if not _promotion.forced(ctx):
                        raise StepFailed(
                            "split-brain",
                            f"{name}@{node}: {exc}; --force "
                            "--accept-data-loss discards this site's changes",
                        ) from exc
                    rep.resolve_discard_local()
                    _connect_peer(ctx, name, node)  # the survivor reconnects to its victim
            except ReplicationError as exc:
                raise StepFailed("reprotect-failed", f"{name}@{node}: {exc}") from exc
            line, _ = wait_synced(ctx, name, node, number(args, "timeout", WAIT_TIMEOUT))
            done.append(line)
        return StepResult(True, f"reprotected {len(done)} volume(s)", tuple(done))
