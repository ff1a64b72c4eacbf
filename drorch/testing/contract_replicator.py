"""The contract every `Replicator` passes: pyrepl (real daemons), DRBD (scripted
replay) and the simulated replicator.

Use it by subclassing in a test module and providing the `pair` fixture::

    class TestSimContract(ReplicatorContract):
        @pytest.fixture
        def pair(self, tmp_path) -> Iterator[ReplicatorPair]:
            yield ReplicatorPair(primary=..., secondary=..., diverge=...)

The pair is one volume seen from its two nodes: connected, both disks UpToDate,
`primary` primary and `secondary` secondary, epoch 0 or any value below 100.

`diverge(replicator)` changes data on that side while it is disconnected (a write for a
block replicator; a no-op for a driver whose promote alone starts a new generation).
Drivers whose state settles asynchronously after a call (a resync running in a daemon)
are polled through `settle_timeout`; the contract never sleeps a fixed time.

Epochs are fencing tokens and strict: a new primary must take an epoch greater than any
the replica has seen; equal or lower is StaleEpoch and changes nothing. Promoting a
primary again at its own epoch is not a new promotion (idempotent).

Capabilities are explicit:
- `supports_split_brain_cycle` (class attribute): False for a scripted driver that
  cannot replay the whole disconnect / diverge / reconnect / resolve cycle; the tests
  that need it are then skipped with that reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import pytest

from drorch.clock import SystemClock
from drorch.model.states import in_sync
from drorch.replication.base import (
    ConnState,
    DiskState,
    ReplicationError,
    ReplicationStatus,
    Replicator,
    Role,
    SplitBrain,
    StaleEpoch,
)
from drorch.wait import wait_until

STATUS_KEYS = {
    "name",
    "role",
    "disk",
    "connection",
    "mode",
    "out_of_sync_bytes",
    "lag_bytes",
    "generation",
    "epoch",
    "nbd",
}
CONNECTED = (ConnState.CONNECTED,)


@dataclass
class ReplicatorPair:
    primary: Replicator
    secondary: Replicator
    diverge: Callable[[Replicator], None] = lambda _r: None
    settle_timeout: float = 20.0


def wait_for(
    pair: ReplicatorPair, what: str, check: Callable[[], bool], poll: float = 0.05
) -> None:
    """Poll `check` until true or `settle_timeout` passes (then fail naming `what`)."""
    clock = SystemClock()
    if not wait_until(clock, check, clock.monotonic() + pair.settle_timeout, interval=poll):
        raise AssertionError(f"timed out after {pair.settle_timeout}s waiting for {what}")


def synced(rep: Replicator) -> bool:
    """This replica is Connected and UpToDate (`drorch.model.states.in_sync`)."""
    st = rep.status()
    return in_sync(st.disk, st.connection)


class ReplicatorContract:
    """Contract tests; see the module docstring."""

    supports_split_brain_cycle: ClassVar[bool] = True

    # ------------------------------------------------------------------ observing
    def test_pair_starts_connected_and_up_to_date(self, pair: ReplicatorPair) -> None:
        p, s = pair.primary.status(), pair.secondary.status()
        assert (p.role, s.role) == (Role.PRIMARY, Role.SECONDARY)
        assert p.disk == s.disk == DiskState.UP_TO_DATE
        assert p.connection in CONNECTED and s.connection in CONNECTED
        assert p.name == s.name == pair.primary.name

    def test_status_dict_has_the_documented_keys(self, pair: ReplicatorPair) -> None:
        data = pair.primary.status().as_dict()
        assert set(data) >= STATUS_KEYS
        assert isinstance(data["generation"], dict)

    def test_status_does_not_change_state(self, pair: ReplicatorPair) -> None:
        before: ReplicationStatus = pair.secondary.status()
        after = pair.secondary.status()
        assert (before.role, before.disk, before.connection, before.epoch) == (
            after.role,
            after.disk,
            after.connection,
            after.epoch,
        )

    # ------------------------------------------------------------------ roles
    def test_promote_while_peer_is_primary_is_refused(self, pair: ReplicatorPair) -> None:
        with pytest.raises(ReplicationError):
            pair.secondary.promote(epoch=100)
        assert pair.secondary.status().role == Role.SECONDARY

    def test_demote_then_promote_the_other_side(self, pair: ReplicatorPair) -> None:
        pair.primary.demote()
        pair.primary.demote()  # idempotent
        assert pair.primary.status().role == Role.SECONDARY
        pair.secondary.promote(epoch=100)
        st = pair.secondary.status()
        assert st.role == Role.PRIMARY
        assert st.epoch == 100

    def test_promote_with_an_older_epoch_is_stale(self, pair: ReplicatorPair) -> None:
        pair.primary.demote()
        pair.secondary.promote(epoch=100)
        pair.secondary.demote()
        with pytest.raises(StaleEpoch):
            pair.secondary.promote(epoch=99)
        assert pair.secondary.status().role == Role.SECONDARY

    def test_promote_with_an_equal_epoch_is_stale(self, pair: ReplicatorPair) -> None:
        """Epochs are strict: a new primary takes an epoch above every one this replica
        has seen; an equal one is refused (two primaries would share the fencing token),
        changes nothing, and a greater one is then accepted."""
        pair.primary.demote()
        pair.secondary.promote(epoch=100)
        pair.secondary.demote()
        with pytest.raises(StaleEpoch):
            pair.secondary.promote(epoch=100)
        st = pair.secondary.status()
        assert (st.role, st.epoch) == (Role.SECONDARY, 100)
        pair.secondary.promote(epoch=101)
        st = pair.secondary.status()
        assert (st.role, st.epoch) == (Role.PRIMARY, 101)

    def test_promote_with_a_lower_epoch_is_stale_and_records_nothing(
        self, pair: ReplicatorPair
    ) -> None:
        """A lower epoch is refused without changing the role or the recorded epoch,
        also on a primary (its fencing token never goes back)."""
        pair.primary.demote()
        pair.secondary.promote(epoch=100)
        with pytest.raises(StaleEpoch):
            pair.secondary.promote(epoch=50)  # already primary: still never lowered
        assert pair.secondary.status().epoch == 100
        pair.secondary.demote()
        with pytest.raises(StaleEpoch):
            pair.secondary.promote(epoch=50, force=True, accept_data_loss=True)
        st = pair.secondary.status()
        assert (st.role, st.epoch) == (Role.SECONDARY, 100)

    def test_promote_without_an_epoch_takes_one_above_any_seen(self, pair: ReplicatorPair) -> None:
        """`promote()` with no epoch (an operator by hand, no witness) must not reuse the
        last primary's fencing token: the new primary's epoch is above every one seen."""
        pair.primary.demote()
        pair.secondary.promote(epoch=100)
        pair.secondary.demote()
        pair.secondary.promote()
        st = pair.secondary.status()
        assert st.role == Role.PRIMARY and st.epoch > 100, st.epoch

    def test_promote_of_a_primary_at_its_own_epoch_changes_nothing(
        self, pair: ReplicatorPair
    ) -> None:
        """Asking a primary again at the epoch it was promoted with is not a new
        promotion: it stays primary at that epoch (idempotent, not refused)."""
        pair.primary.demote()
        pair.secondary.promote(epoch=100)
        pair.secondary.promote(epoch=100)
        st = pair.secondary.status()
        assert (st.role, st.epoch) == (Role.PRIMARY, 100)

    def test_down_is_refused_while_primary(self, pair: ReplicatorPair) -> None:
        with pytest.raises(ReplicationError):
            pair.primary.down()
        assert pair.primary.status().role == Role.PRIMARY

    def test_resolve_is_refused_while_primary(self, pair: ReplicatorPair) -> None:
        with pytest.raises(ReplicationError):
            pair.primary.resolve_discard_local()

    # ------------------------------------------------------------------ connection
    def test_disconnect_goes_standalone_and_is_idempotent(self, pair: ReplicatorPair) -> None:
        pair.secondary.disconnect()
        pair.secondary.disconnect()
        assert pair.secondary.status().connection == ConnState.STANDALONE
        pair.secondary.connect()
        wait_for(pair, "reconnect", lambda: synced(pair.secondary) and synced(pair.primary))

    def test_verify_of_a_synced_pair_finds_nothing(self, pair: ReplicatorPair) -> None:
        result = pair.primary.verify()
        assert result.regions_checked > 0
        assert result.out_of_sync == ()

    def test_forced_promote_of_an_up_to_date_disk_is_plain(self, pair: ReplicatorPair) -> None:
        """force + accept_data_loss on a disk that is UpToDate changes nothing but the role."""
        pair.primary.demote()
        pair.secondary.promote(epoch=100, force=True, accept_data_loss=True)
        assert pair.secondary.status().role == Role.PRIMARY

    # ------------------------------------------------------------------ split brain
    def _split_brain(self, pair: ReplicatorPair) -> None:
        if not self.supports_split_brain_cycle:
            pytest.skip("this driver's fixture cannot replay a split-brain cycle")
        pair.primary.disconnect()
        pair.secondary.disconnect()
        pair.diverge(pair.primary)
        pair.secondary.promote()  # by hand, no quorum epoch: nothing fences the primary
        pair.diverge(pair.secondary)
        pair.secondary.demote()
        pair.primary.connect()
        with pytest.raises(SplitBrain) as info:
            pair.secondary.connect()
        assert info.value.local and info.value.peer
        assert info.value.local != info.value.peer

    def test_split_brain_is_detected_and_stays_standalone(self, pair: ReplicatorPair) -> None:
        self._split_brain(pair)
        wait_for(
            pair,
            "both sides StandAlone",
            lambda: (
                pair.primary.status().connection == ConnState.STANDALONE
                and pair.secondary.status().connection == ConnState.STANDALONE
            ),
        )

    def test_resolve_discards_one_side_and_resyncs(self, pair: ReplicatorPair) -> None:
        self._split_brain(pair)
        pair.secondary.resolve_discard_local()
        pair.primary.connect()
        wait_for(pair, "resync after resolve", lambda: synced(pair.secondary))
        wait_for(pair, "primary connected", lambda: synced(pair.primary))
        assert pair.secondary.status().generation.get("current") == (
            pair.primary.status().generation.get("current")
        )
        assert pair.primary.verify().out_of_sync == ()
