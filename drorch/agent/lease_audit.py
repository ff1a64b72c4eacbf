"""Whether what runs here may run under the witness's current lease (the agent's
self-audit), pure: a site running primary resources while the witness names the other
site as the holder is a problem, unless a planned hand-over covers every one of them."""

from __future__ import annotations

from collections.abc import Mapping

from drorch.agent.view import LeaseState


def lease_audit(primary: tuple[str, ...], lease: LeaseState | None, site: str) -> tuple[str, ...]:
    """Problems: primary resources here while the witness says another site holds it."""
    if primary and lease is not None and lease.holder not in (None, site) and lease.reachable:
        return (
            f"{', '.join(primary)} run here at {site} but the witness says site"
            f" {lease.holder} holds quorum",
        )
    return ()


def covered_by_hand_over(
    primary: tuple[str, ...],
    peer_seen: bool,
    lease: LeaseState | None,
    peer: str,
    handover: Mapping[str, str],
) -> str | None:
    """Why every primary resource here may run under the peer's lease (a planned
    hand-over: the link says only one copy takes writes), or None. Only while the
    peer's agent is seen and the witness answers with the peer (or nobody) holding."""
    if (
        not primary
        or not peer_seen
        or lease is None
        or not lease.reachable
        or lease.holder not in (None, peer)
        or any(p not in handover for p in primary)
    ):
        return None
    return "; ".join(dict.fromkeys(handover[p] for p in primary))
