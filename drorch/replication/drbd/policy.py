"""Pure decisions of the DRBD driver: given an observed status, may an operation run,
and with which drbdadm options? Every decision carries a reason an operator can read.
No I/O here; `driver.py` observes, asks these functions, then acts."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from drorch.replication.base import ConnState, DiskState, ReplicationStatus, Role


class Verdict(StrEnum):
    RUN = "run"  # run the operation
    SKIP = "skip"  # the requested state already holds
    REFUSE = "refuse"  # refused: could lose data or break the cluster
    UNSAFE = "unsafe"  # refused unless forced with data loss accepted


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str
    options: tuple[str, ...] = field(default=())


def is_up(st: ReplicationStatus) -> bool:
    return st.extra.get("up", True) is not False


def decide_up(st: ReplicationStatus) -> Decision:
    if is_up(st):
        return Decision(Verdict.SKIP, f"{st.name} is already up")
    return Decision(Verdict.RUN, f"{st.name} is down: attach the disk and start connecting")


def decide_down(st: ReplicationStatus) -> Decision:
    if not is_up(st):
        return Decision(Verdict.SKIP, f"{st.name} is already down")
    if st.role is Role.PRIMARY:
        return Decision(Verdict.REFUSE, f"{st.name} is Primary here: demote it before down")
    return Decision(Verdict.RUN, f"{st.name} is Secondary: disconnect and detach")


def decide_promote(
    st: ReplicationStatus, *, force: bool, accept_data_loss: bool, two_primaries: bool = False
) -> Decision:
    """`two_primaries`: a second primary was allowed (net_options.py), for a live
    hand-over; only then may this side be promoted while the peer is Primary."""
    name = st.name
    if not is_up(st):
        return Decision(Verdict.REFUSE, f"{name} is not up on this node")
    if st.role is Role.PRIMARY:
        return Decision(Verdict.SKIP, f"{name} is already Primary here")
    if st.peer_role is Role.PRIMARY and not two_primaries:
        return Decision(
            Verdict.REFUSE, f"the peer is Primary for {name}; demote it first (no dual-primary)"
        )
    if st.disk is DiskState.UP_TO_DATE:
        return Decision(Verdict.RUN, f"local disk of {name} is UpToDate")
    if force and accept_data_loss:
        return Decision(
            Verdict.RUN,
            f"local disk of {name} is {st.disk.value}; forced with data loss accepted",
            ("--force",),
        )
    if force:
        return Decision(
            Verdict.UNSAFE,
            f"local disk of {name} is {st.disk.value}: --force also needs --accept-data-loss",
        )
    return Decision(
        Verdict.UNSAFE,
        f"local disk of {name} is {st.disk.value}, not UpToDate: promoting would serve "
        "stale or inconsistent data (use --force --accept-data-loss to override)",
    )


def decide_demote(st: ReplicationStatus) -> Decision:
    if not is_up(st) or st.role is not Role.PRIMARY:
        return Decision(Verdict.SKIP, f"{st.name} is not Primary here")
    return Decision(Verdict.RUN, f"{st.name} is Primary: become Secondary")


def decide_connect(st: ReplicationStatus) -> Decision:
    if not is_up(st):
        return Decision(Verdict.REFUSE, f"{st.name} is not up on this node: run up first")
    if st.connection is not ConnState.STANDALONE:
        return Decision(Verdict.SKIP, f"{st.name} is already {st.connection.value}")
    return Decision(Verdict.RUN, f"{st.name} is StandAlone: connect to the peer")


def decide_disconnect(st: ReplicationStatus) -> Decision:
    if not is_up(st) or st.connection is ConnState.STANDALONE:
        return Decision(Verdict.SKIP, f"{st.name} is already StandAlone")
    return Decision(Verdict.RUN, f"{st.name} is {st.connection.value}: go StandAlone")


def decide_verify(st: ReplicationStatus) -> Decision:
    if st.connection is ConnState.CONNECTED and st.extra.get("drbd", {}).get("replication") in (
        "VerifyS",
        "VerifyT",
    ):
        return Decision(Verdict.SKIP, f"a verify of {st.name} is already running")
    if st.connection is not ConnState.CONNECTED:
        return Decision(
            Verdict.REFUSE,
            f"{st.name} is {st.connection.value}: online verify needs an established connection",
        )
    return Decision(Verdict.RUN, f"{st.name} is connected and in sync: compare checksums")


def decide_discard_local(st: ReplicationStatus) -> Decision:
    if not is_up(st):
        return Decision(Verdict.REFUSE, f"{st.name} is not up on this node")
    if st.role is Role.PRIMARY:
        return Decision(
            Verdict.REFUSE, f"{st.name} is Primary here: demote it before discarding its data"
        )
    return Decision(
        Verdict.RUN,
        f"discard this node's changes to {st.name}; it becomes SyncTarget of the peer",
        ("--discard-my-data",),
    )


def decide_invalidate(st: ReplicationStatus) -> Decision:
    if not is_up(st):
        return Decision(Verdict.REFUSE, f"{st.name} is not up on this node")
    if st.role is Role.PRIMARY:
        return Decision(Verdict.REFUSE, f"{st.name} is Primary here: demote it first")
    if st.connection is ConnState.STANDALONE:
        return Decision(
            Verdict.RUN,
            f"{st.name} is StandAlone (after a split brain): discard this node's changes and "
            "reconnect as SyncTarget of the peer",
            ("--discard-my-data",),
        )
    if st.connection is not ConnState.CONNECTED:
        return Decision(
            Verdict.REFUSE,
            f"{st.name} is {st.connection.value}: invalidate needs the peer connected (to "
            "resync from) or this node StandAlone (to discard its split-brain changes)",
        )
    if st.peer_disk is not DiskState.UP_TO_DATE:
        return Decision(
            Verdict.REFUSE,
            f"the peer's disk is {st.peer_disk.value}: nothing UpToDate to resync from",
        )
    return Decision(Verdict.RUN, f"discard {st.name} here and resync it fully from the peer")
