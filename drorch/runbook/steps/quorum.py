"""Quorum step types: `quorum.release`, `quorum.acquire`, `quorum.wait_takeover`.

With a real witness (client certificates in the cluster file) they talk to it over
mutual TLS as the site: `release` sends the holder's Release, `acquire` a heartbeat that
asks for the lease. A grant lasts `lease_timeout` unless renewed, which is the site's
agent's job: these steps hand the lease over, the agents keep it. In a simulated cluster
without certificates the simulated witness's record (`sim-witness.json`) changes instead,
with a new epoch for each new holder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from drorch.runbook.steps import _witness
from drorch.runbook.steps._where import PLAN_ARGS, number, other_site, site_name, text
from drorch.runbook.steps.base import (
    Param,
    ParamKind,
    StepContext,
    StepFailed,
    StepResult,
    StepType,
    register,
)

GRANT_POLL = 0.5


def acquire(ctx: StepContext, site: str) -> _witness.Holder:
    """Take the lease at `site`; StepFailed quorum-held-elsewhere while another site's
    lease is live."""
    d = _witness.simulated(ctx)
    if d is not None:
        view = _witness.sim_holder(ctx, d)
        if view.holder not in (None, site):
            raise StepFailed(
                "quorum-held-elsewhere",
                f"site {view.holder} holds quorum (epoch {view.epoch}); release it there first",
            )
        if view.holder == site:
            return view
        _witness.write_sim(d, site, view.epoch + 1)
        return _witness.Holder(site, view.epoch + 1, view.how)
    q = ctx.cluster.quorum
    limit = q.lease_timeout + q.switch_delay + 1.0
    left = ctx.remaining()
    limit = limit if left is None else min(limit, left)
    start = ctx.clock.monotonic()
    view = _witness.ask(ctx, site, want=True)
    for _ in range(math.ceil(limit / GRANT_POLL) + 1):  # bounded: the witness's own wait
        if view.holder == site or ctx.clock.monotonic() - start >= limit:
            break
        ctx.sleep(GRANT_POLL)
        view = _witness.ask(ctx, site, want=True)
    if view.holder != site:
        raise StepFailed(
            "quorum-held-elsewhere",
            f"the witness did not grant {site} the lease "
            f"(holder {view.holder or 'none'}, epoch {view.epoch})",
        )
    return view


def _await_holder(ctx: StepContext, site: str) -> _witness.Holder:
    """Watch (bounded by lease_timeout + switch_delay) until the witness names `site`."""
    q = ctx.cluster.quorum
    limit = q.lease_timeout + q.switch_delay + 1.0
    left = ctx.remaining()
    limit = limit if left is None else min(limit, left)
    start = ctx.clock.monotonic()
    view = _witness.ask(ctx, site)
    for _ in range(math.ceil(limit / GRANT_POLL) + 1):
        if view.holder == site or ctx.clock.monotonic() - start >= limit:
            break
        ctx.sleep(GRANT_POLL)
        view = _witness.ask(ctx, site)
    return view


@register
class Acquire(StepType):
    """Take quorum (the witness's lease) at `site`.

    quorum-held-elsewhere while another site holds a live lease; witness-unreachable
    when it cannot be asked. Undo: none (release it with quorum.release)."""

    name = "quorum.acquire"
    params = (Param("site", ParamKind.STR, "The site that takes quorum."),)

    def describe(self, args: Mapping[str, object]) -> str:
        return f"acquire quorum at {text(args, 'site')}"

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        site = site_name(ctx, text(args, "site"))
        view = _witness.ask(ctx, site)
        seen = (f"{view.how}: holder {view.holder or 'none'}, epoch {view.epoch}",)
        if view.holder == site:
            return StepResult(False, f"{site} already holds quorum", seen)
        if view.holder is not None and _witness.simulated(ctx) is not None:
            raise StepFailed("quorum-held-elsewhere", f"site {view.holder} holds quorum")
        return StepResult(True, f"would ask the witness for the lease at {site}", seen)

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        return _witness.ask(ctx, site_name(ctx, text(args, "site"))).holder == text(args, "site")

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        site = site_name(ctx, text(args, "site"))
        view = acquire(ctx, site)
        return StepResult(
            True,
            f"{site} holds quorum (epoch {view.epoch})",
            data={"site": site, "epoch": view.epoch},
        )


@register
class Release(StepType):
    """Hand quorum over to site `to` (a planned switch): the holder releases the lease,
    then `to` takes it: asked here when this node can speak for `to`, else watched for
    (bounded) while `to`'s agent asks. not-holder-here when the holder is another site
    than this node's. Undo: quorum.release back to the site that held it."""

    name = "quorum.release"
    params = (Param("to", ParamKind.STR, "The site that gets quorum."),)
    undo = "quorum.release"
    undo_restores = True

    def describe(self, args: Mapping[str, object]) -> str:
        return f"release quorum to {text(args, 'to')}"

    def _holder(self, ctx: StepContext, to: str) -> _witness.Holder:
        return _witness.ask(ctx, to)

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        to = site_name(ctx, text(args, "to"))
        view = self._holder(ctx, to)
        seen = (f"{view.how}: holder {view.holder or 'none'}, epoch {view.epoch}",)
        if view.holder == to:
            return StepResult(False, f"{to} already holds quorum", seen)
        return StepResult(
            True, f"would release quorum at {view.holder or '(nobody)'} to {to}", seen
        )

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        to = site_name(ctx, text(args, "to"))
        return self._holder(ctx, to).holder == to

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        to = site_name(ctx, text(args, "to"))
        view = self._holder(ctx, to)
        if view.holder == to:
            return StepResult(
                False,
                f"{to} already holds quorum (epoch {view.epoch})",
                data={"from": to, "epoch": view.epoch},
            )
        held = view.holder or other_site(ctx, to)
        try:
            got = self._hand_over(ctx, view, to)
        except StepFailed as exc:  # its undo hands quorum back to `held`
            raise StepFailed(exc.code, exc.message, data={**exc.data, "from": held}) from exc
        if got.holder != to:
            return StepResult(
                True,
                f"quorum released by {held}; nobody holds it yet: {to}"
                " gets it when a node of it asks (its agent)",
                data={"from": held, "epoch": got.epoch, "holder": got.holder},
            )
        return StepResult(
            True,
            f"quorum released by {held}, now held by {to} (epoch {got.epoch})",
            data={"from": held, "epoch": got.epoch},
        )

    def _hand_over(self, ctx: StepContext, view: _witness.Holder, to: str) -> _witness.Holder:
        d = _witness.simulated(ctx)
        if d is not None:
            _witness.write_sim(d, None, view.epoch)
        elif view.holder is not None:
            _witness.release(ctx, view.holder)
        try:
            return acquire(ctx, to)
        except StepFailed as exc:
            if exc.code != "not-this-site":
                raise
            return _await_holder(ctx, to)  # `to`'s own agent asks for it

    def undo_args(self, args: Mapping[str, object], result: StepResult) -> dict[str, object]:
        back = result.data.get("from")
        return {"to": str(back)} if back else {}  # {}: failed before it knew the holder


@register
class WaitTakeover(StepType):
    """Wait `takeover_wait` (lease_timeout + switch_delay) before a survivor takes over,
    so the lost site's watchdog has surely fenced it. Progress bar; no lasting effect."""

    name = "quorum.wait_takeover"
    params = (
        *PLAN_ARGS,
        Param(
            "seconds",
            ParamKind.DURATION,
            "How long (default: the cluster's takeover_wait).",
            default=-1.0,
        ),
        Param("lease_timeout", ParamKind.FLOAT, "The witness lease (informational).", default=0.0),
        Param("switch_delay", ParamKind.FLOAT, "The watchdog margin (informational).", default=0.0),
    )
    idempotent = True

    def _seconds(self, ctx: StepContext, args: Mapping[str, object]) -> float:
        given = number(args, "seconds", -1.0)
        q = ctx.cluster.quorum
        return given if given >= 0 else q.lease_timeout + q.switch_delay

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        secs = self._seconds(ctx, args)
        return StepResult(
            False,
            f"would wait {secs:g}s for {text(args, 'target')} to fence itself",
            (f"takeover_wait {secs:g}s",),
        )

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        return False  # waiting again is safe (and what a cautious resume should do)

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        total = self._seconds(ctx, args)
        start = ctx.clock.monotonic()
        for _ in range(math.ceil(total) + 1):  # one-second sleeps on a clock that advances
            left = total - (ctx.clock.monotonic() - start)
            if left <= 0:
                break
            ctx.progress.update(total - left, total, f"{left:.0f}s until takeover")
            ctx.sleep(min(1.0, left))
        ctx.progress.update(total, total, "done")
        return StepResult(False, f"waited takeover_wait {total:g}s", data={"waited_s": total})
