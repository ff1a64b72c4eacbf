"""The shared Replicator contract with each node's commands replayed by a ScriptedRunner
from the recorded-format fixtures: every drbdadm/drbdsetup call the contract causes is
scripted per test, and the script must be used up exactly (no extra, no missing call).

The split-brain cycle is not replayed here (it needs both nodes' state to evolve
together); `test_drbd_contract.py` runs it over the DRBD emulation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from drorch.environment import Environment
from drorch.model.types import Node
from drorch.replication.drbd.driver import DrbdReplicator
from drorch.testing.clock import FakeClock
from drorch.testing.contract_replicator import ReplicatorContract, ReplicatorPair
from drorch.testing.runner import Expect
from tests.drbd.clusters import two_site_cluster
from tests.drbd.conftest import fixture_text
from tests.drbd.runners import NodeScriptedRunner

STATUS = ["drbdsetup", "status", "r0", "--json"]
EVENTS = ["drbdsetup", "events2", "--statistics", "r0"]
PD = "change peer-device name:r0 peer-node-id:1 conn-name:b1 volume:0 "
CONN = "change connection name:r0 peer-node-id:1 conn-name:b1 "


def st(case: str, repeat: bool = False) -> Expect:
    return Expect(STATUS, stdout=fixture_text(f"status-{case}.json"), repeat=repeat)


def adm(*args: str) -> Expect:
    return Expect(["drbdadm", *args, "r0"])


PRIMARY, SECONDARY, BOTH_SECONDARY = (
    "primary-connected",
    "secondary-peer-primary",
    ("connected-secondary"),
)
RECONNECT = (
    fixture_text("events2-connecting.txt")
    + CONN
    + "connection:Connected role:Primary\n"
    + PD
    + "replication:Established peer-disk:UpToDate\n"
)
VERIFY = (
    fixture_text("events2-primary-connected.txt").replace(
        "replication:Established", "replication:VerifyS done:0.00"
    )
    + PD
    + "replication:Established out-of-sync:0\n"
)

# contract test -> (primary's script, secondary's script)
SCRIPTS: dict[str, tuple[list[Expect], list[Expect]]] = {
    "test_pair_starts_connected_and_up_to_date": ([st(PRIMARY)], [st(SECONDARY)]),
    "test_status_dict_has_the_documented_keys": ([st(PRIMARY)], []),
    "test_status_does_not_change_state": ([], [st(SECONDARY), st(SECONDARY)]),
    "test_promote_while_peer_is_primary_is_refused": ([], [st(SECONDARY), st(SECONDARY)]),
    "test_demote_then_promote_the_other_side": (
        [st(PRIMARY), adm("secondary"), st(BOTH_SECONDARY), st(BOTH_SECONDARY)],
        [st(BOTH_SECONDARY), adm("primary"), st(PRIMARY)],
    ),
    "test_promote_with_an_older_epoch_is_stale": (
        [st(PRIMARY), adm("secondary")],
        [
            st(BOTH_SECONDARY),
            adm("primary"),
            st(PRIMARY),
            adm("secondary"),
            st(BOTH_SECONDARY),
        ],
    ),
    "test_promote_with_an_equal_epoch_is_stale": (
        [st(PRIMARY), adm("secondary")],
        [
            st(BOTH_SECONDARY),
            adm("primary"),
            st(PRIMARY),
            adm("secondary"),
            st(BOTH_SECONDARY),  # promote at the recorded epoch: refused before drbdadm
            st(BOTH_SECONDARY),
            st(BOTH_SECONDARY),
            adm("primary"),
            st(PRIMARY),
        ],
    ),
    "test_promote_with_a_lower_epoch_is_stale_and_records_nothing": (
        [st(PRIMARY), adm("secondary")],
        [
            st(BOTH_SECONDARY),
            adm("primary"),
            st(PRIMARY),  # the lower promotions are refused before asking DRBD
            st(PRIMARY),
            adm("secondary"),
            st(BOTH_SECONDARY),
        ],
    ),
    "test_promote_without_an_epoch_takes_one_above_any_seen": (
        [st(PRIMARY), adm("secondary")],
        [
            st(BOTH_SECONDARY),
            adm("primary"),
            st(PRIMARY),
            adm("secondary"),
            st(BOTH_SECONDARY),  # no epoch given: the driver takes 101
            adm("primary"),
            st(PRIMARY),
        ],
    ),
    "test_promote_of_a_primary_at_its_own_epoch_changes_nothing": (
        [st(PRIMARY), adm("secondary")],
        [st(BOTH_SECONDARY), adm("primary"), st(PRIMARY), st(PRIMARY)],
    ),
    "test_down_is_refused_while_primary": ([st(PRIMARY), st(PRIMARY)], []),
    "test_resolve_is_refused_while_primary": ([st(PRIMARY)], []),
    "test_disconnect_goes_standalone_and_is_idempotent": (
        [st(PRIMARY, repeat=True)],
        [
            st(SECONDARY),
            adm("disconnect"),
            st("standalone"),
            st("standalone"),
            st("standalone"),
            adm("connect"),
            Expect(EVENTS, stdout=RECONNECT),
            st(SECONDARY, repeat=True),
        ],
    ),
    "test_verify_of_a_synced_pair_finds_nothing": (
        [st(PRIMARY), adm("verify"), Expect(EVENTS, stdout=VERIFY)],
        [],
    ),
    "test_forced_promote_of_an_up_to_date_disk_is_plain": (
        [st(PRIMARY), adm("secondary")],
        [st(BOTH_SECONDARY), adm("primary"), st(PRIMARY)],
    ),
    # skipped by the contract (supports_split_brain_cycle = False) before any command
    "test_split_brain_is_detected_and_stays_standalone": ([], []),
    "test_resolve_discards_one_side_and_resyncs": ([], []),
}


class TestDrbdContractScripted(ReplicatorContract):
    supports_split_brain_cycle = False

    @pytest.fixture
    def pair(self, request: pytest.FixtureRequest) -> Iterator[ReplicatorPair]:
        name = request.node.originalname
        assert name in SCRIPTS, f"no scripted replay for contract test {name}"
        primary_script, secondary_script = SCRIPTS[name]
        runners = {
            "a1": NodeScriptedRunner(primary_script),
            "b1": NodeScriptedRunner(secondary_script),
        }
        volume = two_site_cluster().volumes[0]
        env = Environment(clock=FakeClock(), runners=dict(runners))
        a = DrbdReplicator(volume, Node("a1"), env, state_dir="/var/lib/drorch/drbd")
        b = DrbdReplicator(volume, Node("b1"), env, state_dir="/var/lib/drorch/drbd")
        runners["a1"].files["/var/lib/drorch/drbd/r0.epoch"] = "1\n"  # promoted with epoch 1
        yield ReplicatorPair(primary=a, secondary=b, settle_timeout=1.0)
        for runner in runners.values():
            runner.assert_done()
