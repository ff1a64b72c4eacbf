"""The quorum witness as the step families see it: the real one over mutual TLS (the
site's client certificate from the cluster file), or, in a simulated cluster without
client certificates, the simulated witness kept in `<sim dir>/sim-witness.json`
(`{"holder": site, "epoch": n}`; absent: the configured primary site holds epoch 0;
`sim-witness.down` makes it answer nobody; a powered-off holder's lease lapses
`lease_timeout` after the power-off)."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from drorch.runbook.steps._where import sim_dir
from drorch.runbook.steps.base import StepContext, StepFailed

TIMEOUT = 3.0


@dataclass(frozen=True)
class Holder:
    holder: str | None
    epoch: int
    how: str  # "witness ADDRESS" or "simulated witness"


def real_witness(ctx: StepContext) -> bool:
    w = ctx.cluster.witness
    return w is not None and bool(w.cert) and bool(w.key)


def simulated(ctx: StepContext) -> Path | None:
    """The sim folder when the simulated witness answers for this cluster."""
    d = sim_dir(ctx)
    return d if d is not None and not real_witness(ctx) else None


def _sim_file(d: Path) -> Path:
    return d / "sim-witness.json"


def _read_sim(ctx: StepContext, d: Path) -> tuple[str | None, int]:
    try:
        raw = json.loads(_sim_file(d).read_text())
        holder = raw.get("holder")
        return (str(holder) if holder else None), int(raw.get("epoch", 0))
    except FileNotFoundError:
        return ctx.cluster.primary_site, 0
    except (OSError, ValueError, AttributeError) as exc:
        raise StepFailed(
            "witness-unreachable", f"simulated witness state unreadable: {exc}"
        ) from exc


def write_sim(d: Path, holder: str | None, epoch: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    tmp = _sim_file(d).with_suffix(".tmp")
    tmp.write_text(json.dumps({"holder": holder, "epoch": epoch}) + "\n")
    os.replace(tmp, _sim_file(d))


def _lapsed(ctx: StepContext, d: Path, site: str) -> bool:
    marker = d / f"sim-{site}.down"
    if not marker.exists():
        return False
    since = marker.stat().st_mtime
    with contextlib.suppress(ValueError, OSError):
        since = float(marker.read_text().strip())
    return ctx.clock.now() - since >= ctx.cluster.quorum.lease_timeout


def sim_holder(ctx: StepContext, d: Path) -> Holder:
    if (d / "sim-witness.down").exists():
        raise StepFailed("witness-unreachable", "the simulated witness is down (sim-witness.down)")
    holder, epoch = _read_sim(ctx, d)
    if holder is not None and _lapsed(ctx, d, holder):
        holder = None
    return Holder(holder, epoch, "simulated witness")


def _vote(ctx: StepContext, site: str, want: bool) -> Holder:
    """One heartbeat as `site` (QuorumError / OSError / ValueError pass through)."""
    from drorch.quorum.fence import connection

    w = ctx.cluster.witness
    assert w is not None
    node = ctx.cluster.site(site).nodes[0].name
    with connection(w, ctx.cluster.name, site, node, ctx.env.base_dir, TIMEOUT) as conn:
        vote = conn.heartbeat(1, want=want, nodes=1 if want else 0)
    return Holder(vote.holder, vote.epoch, f"witness {w.address}")


def _unauthorized(exc: BaseException) -> bool:
    return getattr(exc, "code", None) == "unauthorized"


def ask(ctx: StepContext, site: str, want: bool = False) -> Holder:
    """The witness's view (want: also ask for the lease as `site`). The witness pins each
    client certificate to one site, so a node speaks only for its own: a look
    (want=False) as another site is asked as this node's site instead (the holder is the
    same for everyone); asking for another site's lease fails with not-this-site.
    witness-unreachable when it cannot be asked; no-witness when none is configured."""
    d = simulated(ctx)
    if d is not None:
        return sim_holder(ctx, d)
    w = ctx.cluster.witness
    if w is None:
        raise StepFailed("no-witness", f"cluster {ctx.cluster.name} has no witness configured")
    if not real_witness(ctx):
        raise StepFailed("witness-unreachable", "the witness has no client cert/key configured")
    from drorch.quorum.client import QuorumError

    try:
        return _vote(ctx, site, want)
    except (QuorumError, OSError, ValueError) as exc:
        first = exc
    if _unauthorized(first) and want:
        raise StepFailed(
            "not-this-site",
            f"this node's witness certificate does not speak for"
            f" site {site}: its lease is asked for by a node of {site}",
        )
    if _unauthorized(first):
        for other in (s.name for s in ctx.cluster.sites if s.name != site):
            try:
                return _vote(ctx, other, False)
            except (QuorumError, OSError, ValueError):
                continue
    raise StepFailed("witness-unreachable", f"witness {w.address} as {site}: {first}") from first


def release(ctx: StepContext, site: str) -> None:
    """Give the lease up on purpose as `site` (the real witness answers with a vote)."""
    w = ctx.cluster.witness
    assert w is not None
    from drorch.quorum.client import QuorumError
    from drorch.quorum.fence import connection

    node = ctx.cluster.site(site).nodes[0].name
    try:
        with connection(w, ctx.cluster.name, site, node, ctx.env.base_dir, TIMEOUT) as conn:
            conn.release()
    except (QuorumError, OSError, ValueError) as exc:
        if _unauthorized(exc):
            raise StepFailed(
                "not-holder-here",
                f"site {site} holds the lease: release it from a node of {site} ({exc})",
            ) from exc
        raise StepFailed("witness-unreachable", f"release at {w.address} as {site}: {exc}") from exc


def has_witness(ctx: StepContext) -> bool:
    """A witness answers for this cluster (the simulated one, or a real one with certs)."""
    return simulated(ctx) is not None or real_witness(ctx)


MAX_REGRANTS = 8  # more epochs to skip than this: the witness's state is suspect


def fresh_grant(ctx: StepContext, site: str, above: int) -> Holder:
    """A new grant at `site` with an epoch above `above` (every epoch the replicas have
    seen): how a site that still holds the lease gets an epoch no primary has used, for
    the undo of its demotion. The witness adds exactly 1 per grant, and a planned switch
    has already promoted the target at the witness's epoch + 1 (the grant it was to get),
    so this may take two grants or more: the holder releases and asks again at once (a
    release on purpose frees the lease without the switch delay) until the epoch is
    above. quorum-held-elsewhere when another site holds the lease (then this site is not
    the one to write); stale-epoch when more than MAX_REGRANTS would be needed."""
    d = simulated(ctx)
    view = sim_holder(ctx, d) if d is not None else ask(ctx, site)
    if view.holder not in (None, site):
        raise StepFailed(
            "quorum-held-elsewhere",
            f"site {view.holder} holds quorum (epoch {view.epoch}): {site} gets no fresh"
            " grant, so it is not promoted",
        )
    if above - view.epoch >= MAX_REGRANTS:
        raise StepFailed(
            "stale-epoch",
            f"the witness's epoch {view.epoch} is {above - view.epoch} behind the replicas'"
            f" {above}: not re-granting that often; check the witness's state",
        )
    from drorch.runbook.steps.quorum import acquire

    for _ in range(MAX_REGRANTS):
        if view.holder is not None and view.epoch > above:
            break
        if d is not None:
            write_sim(d, site, view.epoch + 1)
            view = Holder(site, view.epoch + 1, view.how)
            continue
        if view.holder == site:
            release(ctx, site)
        view = acquire(ctx, site)
    return view
