"""DrbdReplicator over a ScriptedRunner replaying recorded-format drbdadm/drbdsetup output."""

from __future__ import annotations

import pytest

from drorch.environment import Environment
from drorch.model.types import Node
from drorch.remote.base import CommandTimeout, RunnerConnectionError
from drorch.replication.base import (
    ConnState,
    ReplicationError,
    Role,
    SplitBrain,
    StaleEpoch,
    UnsafeOperation,
)
from drorch.replication.drbd import epoch_store
from drorch.replication.drbd.driver import DrbdReplicator, DrbdUnreachable
from drorch.replication.drbd.ops import (
    DrbdDeviceInUse,
    DrbdDiskNotUpToDate,
    DrbdMetadataExists,
    DrbdModuleMissing,
    DrbdPeerNotOutdated,
    DrbdPeerPrimary,
)
from drorch.testing.clock import FakeClock
from drorch.testing.runner import Expect, ScriptedRunner
from tests.drbd.clusters import two_site_cluster
from tests.drbd.conftest import fixture_text
from tests.drbd.runners import NodeScriptedRunner

STATUS = ["drbdsetup", "status", "r0", "--json"]
EVENTS = ["drbdsetup", "events2", "--statistics", "r0"]
STATE = "/var/lib/drorch/drbd"
EPOCH = f"{STATE}/r0.epoch"
PD = "change peer-device name:r0 peer-node-id:1 conn-name:b1 volume:0 "
CONN = "change connection name:r0 peer-node-id:1 conn-name:b1 "


def status(case: str) -> Expect:
    return Expect(STATUS, stdout=fixture_text(f"status-{case}.json"))


def drbdadm(*args: str, fixture: str | None = None, rc: int = 0, stdout: str = "") -> Expect:
    stderr = fixture_text(fixture) if fixture else ""
    return Expect(["drbdadm", *args], stdout=stdout, stderr=stderr, returncode=rc)


def make(*script: Expect) -> tuple[DrbdReplicator, NodeScriptedRunner]:
    runner = NodeScriptedRunner(script)
    cluster = two_site_cluster()
    env = Environment(clock=FakeClock(), runners={"a1": runner})
    drv = DrbdReplicator(cluster.volumes[0], Node("a1"), env, state_dir=STATE, connect_wait=5.0)
    return drv, runner


def test_status_maps_json() -> None:
    drv, runner = make(status("primary-connected"))
    st = drv.status()
    assert (st.role, st.connection, st.mode) == (Role.PRIMARY, ConnState.CONNECTED, "sync")
    runner.assert_done()


def test_status_of_a_resource_that_is_not_up() -> None:
    drv, _ = make(
        Expect(STATUS, stderr=fixture_text("drbdsetup-status-no-resource.stderr"), returncode=10)
    )
    st = drv.status()
    assert st.extra["up"] is False and st.connection is ConnState.STANDALONE


def test_status_missing_module_raises_typed_error_with_drbd_message() -> None:
    drv, _ = make(
        Expect(STATUS, stderr=fixture_text("drbdsetup-status-no-module.stderr"), returncode=20)
    )
    with pytest.raises(DrbdModuleMissing) as err:
        drv.status()
    assert err.value.returncode == 20
    assert err.value.message == "Could not connect to 'drbd' generic netlink family"
    assert "the drbd kernel module is not loaded" in str(err.value)


def test_status_unreachable_node() -> None:
    drv, _ = make(Expect(STATUS, timeout=True))
    with pytest.raises(DrbdUnreachable, match="cannot ask DRBD"):
        drv.status()


@pytest.mark.parametrize(
    "fixture", ["drbdadm-up-no-module.stderr", "drbdadm-up-no-module-kmod.stderr"]
)
def test_up_without_kernel_module(fixture: str) -> None:
    drv, runner = make(
        Expect(STATUS, stderr=fixture_text("drbdsetup-status-no-resource.stderr"), returncode=10),
        drbdadm("up", "r0", fixture=fixture, rc=20),
    )
    with pytest.raises(DrbdModuleMissing) as err:
        drv.up()
    assert "terminated with exit code 20" in err.value.message
    assert err.value.op == "up"
    runner.assert_done()


def test_up_is_idempotent_and_benign_when_racing() -> None:
    drv, runner = make(status("connected-secondary"))
    drv.up()  # already up: no drbdadm call at all
    runner.assert_done()
    assert drv.log == ["skip: r0 is already up"]
    drv, runner = make(
        Expect(STATUS, stderr=fixture_text("drbdsetup-status-no-resource.stderr"), returncode=10),
        drbdadm("up", "r0", fixture="drbdadm-up-exists.stderr", rc=10),
    )
    drv.up()  # someone else brought it up in between: benign
    runner.assert_done()
    assert drv.log[-1] == "drbdadm up: already up"


def test_promote_refused_while_peer_is_primary_before_running_drbdadm() -> None:
    drv, runner = make(status("secondary-peer-primary"))
    with pytest.raises(ReplicationError, match="the peer is Primary for r0; demote it first"):
        drv.promote(3)
    runner.assert_done()


def test_promote_peer_still_primary_reported_by_drbdadm() -> None:
    drv, runner = make(
        status("connected-secondary"),
        drbdadm("primary", "r0", fixture="drbdadm-primary-peer-primary.stderr", rc=11),
    )
    with pytest.raises(DrbdPeerPrimary) as err:
        drv.promote(3)
    assert err.value.returncode == 11
    assert "Multiple primaries not allowed by config" in err.value.message
    assert drv.epoch == 0  # a failed promotion records nothing
    runner.assert_done()


def test_promote_outdated_disk_is_unsafe_without_force() -> None:
    drv, runner = make(status("outdated-local"), status("outdated-local"))
    with pytest.raises(UnsafeOperation, match="local disk of r0 is Outdated, not UpToDate"):
        drv.promote(4)
    with pytest.raises(UnsafeOperation, match="--force also needs --accept-data-loss"):
        drv.promote(4, force=True)
    runner.assert_done()


def test_promote_forced_with_data_loss_accepted() -> None:
    drv, runner = make(status("outdated-local"), drbdadm("primary", "--force", "r0"))
    drv.promote(4, force=True, accept_data_loss=True)
    runner.assert_done()
    assert drv.epoch == 4
    assert "forced with data loss accepted" in drv.log[0]


def test_promote_disk_not_uptodate_reported_by_drbdadm_is_unsafe() -> None:
    drv, _ = make(
        status("connected-secondary"),
        drbdadm("primary", "r0", fixture="drbdadm-primary-not-uptodate.stderr", rc=17),
    )
    with pytest.raises(DrbdDiskNotUpToDate) as err:
        drv.promote(1)
    assert isinstance(err.value, UnsafeOperation)
    assert err.value.returncode == 17
    assert "Need access to UpToDate data" in err.value.message


def test_promote_refused_by_fencing() -> None:
    drv, _ = make(
        status("connected-secondary"),
        drbdadm("primary", "r0", fixture="drbdadm-primary-peer-not-outdated.stderr", rc=11),
    )
    with pytest.raises(DrbdPeerNotOutdated, match="peer is not known to be Outdated"):
        drv.promote(1)


def test_promote_records_epoch_and_refuses_stale_epoch() -> None:
    drv, runner = make(status("connected-secondary"), drbdadm("primary", "r0"))
    drv.promote(7)
    assert drv.epoch == 7
    with pytest.raises(StaleEpoch, match="epoch 5 is older than epoch 7 already seen on a1"):
        drv.promote(5)
    runner.expect(status("primary-connected"))
    assert drv.status().epoch == 7
    runner.assert_done()


def test_demote_device_in_use() -> None:
    drv, _ = make(
        status("primary-connected"),
        drbdadm("secondary", "r0", fixture="drbdadm-secondary-in-use.stderr", rc=11),
    )
    with pytest.raises(DrbdDeviceInUse) as err:
        drv.demote()
    assert "opened by qemu-system-x86 (pid 4242)" in err.value.message


def test_down_refused_while_primary_and_idempotent_when_down() -> None:
    drv, runner = make(status("primary-connected"))
    with pytest.raises(ReplicationError, match="Primary here: demote it before down"):
        drv.down()
    runner.expect(
        Expect(STATUS, stderr=fixture_text("drbdsetup-status-no-resource.stderr"), returncode=10)
    )
    drv.down()
    runner.assert_done()


def test_disconnect_and_connect_idempotent() -> None:
    drv, runner = make(status("standalone"), status("connecting"))
    drv.disconnect()
    drv.connect()
    runner.assert_done()


def test_connect_waits_on_events2_until_connected() -> None:
    stream = fixture_text("events2-connecting.txt") + (
        CONN
        + "connection:Connected role:Secondary\n"
        + PD
        + "replication:Established peer-disk:UpToDate\n"
    )
    drv, runner = make(
        status("standalone"), drbdadm("connect", "r0"), Expect(EVENTS, stdout=stream)
    )
    drv.connect()
    runner.assert_done()


def test_connect_detects_split_brain_from_the_helper_call() -> None:
    stream = fixture_text("events2-connecting.txt") + (
        CONN
        + "connection:Connected role:Primary\n"
        + "call helper name:r0 peer-node-id:1 conn-name:b1 volume:0 helper:initial-split-brain\n"
        + CONN
        + "connection:StandAlone role:Unknown\n"
    )
    drv, _ = make(status("split-brain-a"), drbdadm("connect", "r0"), Expect(EVENTS, stdout=stream))
    with pytest.raises(SplitBrain, match="split brain detected") as err:
        drv.connect()
    assert err.value.local["node"] == "a1"


def test_connect_still_connecting_when_the_wait_ends_is_fine() -> None:
    drv, runner = make(status("standalone"), drbdadm("connect", "r0"), Expect(EVENTS, timeout=True))
    drv.connect()
    runner.assert_done()


def test_connect_to_a_silent_peer_says_so() -> None:
    stream = fixture_text("events2-connecting.txt")
    drv, runner = make(
        status("standalone"), drbdadm("connect", "r0"), Expect(EVENTS, stdout=stream)
    )
    drv.connect()
    runner.assert_done()
    assert drv.log[-1].startswith("still Connecting after 5s: the peer does not answer yet")


def test_resolve_discard_local_on_a_split_brain_victim() -> None:
    stream = fixture_text("events2-standalone.txt") + (
        CONN
        + "connection:Connecting\n"
        + CONN
        + "connection:Connected role:Primary\n"
        + PD
        + "replication:SyncTarget peer-disk:UpToDate out-of-sync:8192 done:0.00\n"
    )
    sb_secondary = fixture_text("status-split-brain-b.json").replace('"Primary"', '"Secondary"')
    drv, runner = make(
        Expect(STATUS, stdout=sb_secondary),
        drbdadm("secondary", "r0"),
        drbdadm("connect", "--discard-my-data", "r0"),
        Expect(EVENTS, stdout=stream),
    )
    drv.resolve_discard_local()
    runner.assert_done()


def test_resolve_refused_while_primary() -> None:
    drv, runner = make(status("split-brain-a"))
    with pytest.raises(ReplicationError, match="demote it before discarding its data"):
        drv.resolve_discard_local()
    runner.assert_done()


def verifying(side: str) -> str:
    """The events2 dump right after `drbdadm verify` returned (it is Verify{S,T} by then)."""
    dump = fixture_text("events2-connected-secondary.txt")
    return dump.replace("replication:Established", f"replication:Verify{side} done:0.00")


def test_verify_that_ended_before_events2_started() -> None:
    drv, runner = make(
        status("connected-secondary"),
        drbdadm("verify", "r0"),
        Expect(EVENTS, stdout=fixture_text("events2-connected-secondary.txt")),
    )
    assert drv.verify().out_of_sync == ()
    runner.assert_done()


def test_verify_interrupted_by_a_lost_connection() -> None:
    stream = verifying("S") + CONN + "connection:NetworkFailure role:Unknown\n"
    stream += PD + "replication:Off peer-disk:DUnknown\n"
    drv, _ = make(
        status("connected-secondary"), drbdadm("verify", "r0"), Expect(EVENTS, stdout=stream)
    )
    with pytest.raises(ReplicationError, match="online verify stopped: replication is Off"):
        drv.verify()


def test_verify_reports_out_of_sync_blocks_from_the_kernel_log() -> None:
    stream = verifying("S") + PD + "done:50.00\n" + PD + "replication:Established out-of-sync:16\n"
    drv, runner = make(
        status("connected-secondary"),
        drbdadm("verify", "r0"),
        Expect(EVENTS, stdout=stream),
        Expect(["dmesg"], stdout=fixture_text("dmesg-verify.txt")),
    )
    result = drv.verify()
    runner.assert_done()
    assert result.region_size == 4096
    assert result.regions_checked == 1048508 * 1024 // 4096
    # start=2048 size=8 sectors -> one block; start=4100 size=16 -> three 4 KiB blocks
    mib = 1024 * 1024
    assert result.out_of_sync == (mib, 2 * mib, 2 * mib + 4096, 2 * mib + 8192)


def test_verify_in_sync() -> None:
    stream = verifying("T") + PD + "replication:Established\n"
    drv, runner = make(
        status("connected-secondary"), drbdadm("verify", "r0"), Expect(EVENTS, stdout=stream)
    )
    assert drv.verify().out_of_sync == ()
    runner.assert_done()


def test_verify_needs_a_connection() -> None:
    drv, _ = make(status("standalone"))
    with pytest.raises(ReplicationError, match="online verify needs an established connection"):
        drv.verify()


def test_create_md_keeps_existing_metadata_unless_forced() -> None:
    drv, runner = make(
        Expect(
            ["drbdadm", "create-md", "r0"],
            stderr=fixture_text("drbdadm-create-md-exists.stderr"),
            returncode=20,
            input="no\n",
        ),
        Expect(
            ["drbdadm", "create-md", "r0"],
            stderr=fixture_text("drbdadm-create-md-refused.stderr"),
            returncode=40,
            input="no\n",
        ),
        drbdadm("create-md", "--force", "r0", stdout=fixture_text("drbdadm-create-md-ok.stdout")),
    )
    with pytest.raises(DrbdMetadataExists, match="valid DRBD metadata already exists"):
        drv.create_md()
    with pytest.raises(DrbdMetadataExists, match="internal metadata would truncate"):
        drv.create_md()
    with pytest.raises(UnsafeOperation, match="needs --accept-data-loss"):
        drv.create_md(force=True)
    drv.create_md(force=True, accept_data_loss=True)
    runner.assert_done()


def test_invalidate_connected_resyncs_fully_and_refuses_while_connecting() -> None:
    drv, runner = make(
        status("connecting"), status("connected-secondary"), drbdadm("invalidate", "r0")
    )
    with pytest.raises(ReplicationError, match="invalidate needs the peer connected"):
        drv.invalidate()
    drv.invalidate()
    runner.assert_done()


def test_invalidate_resolves_a_split_brain_on_the_victim() -> None:
    victim = fixture_text("status-split-brain-b.json").replace('"Primary"', '"Secondary"')
    stream = fixture_text("events2-standalone.txt") + CONN + "connection:Connecting\n"
    stream += CONN + "connection:Connected role:Primary\n"
    stream += PD + "replication:SyncTarget peer-disk:UpToDate out-of-sync:4096 done:0.00\n"
    drv, runner = make(
        Expect(STATUS, stdout=victim),
        drbdadm("secondary", "r0"),
        drbdadm("connect", "--discard-my-data", "r0"),
        Expect(EVENTS, stdout=stream),
    )
    drv.invalidate()
    runner.assert_done()
    assert "after a split brain" in drv.log[0]


def test_ssh_failure_during_an_operation_is_a_replication_error() -> None:
    class Down(NodeScriptedRunner):
        def run(self, argv, *, timeout=30.0, input=None, check=False):  # type: ignore[no-untyped-def]
            if argv[0] == "drbdadm":
                raise RunnerConnectionError("ssh: connect to host b1 port 22: Connection refused")
            return super().run(argv, timeout=timeout, input=input, check=check)

    runner = Down([status("connected-secondary")])
    cluster = two_site_cluster()
    drv = DrbdReplicator(cluster.volumes[0], Node("a1"), Environment(runners={"a1": runner}))
    with pytest.raises(DrbdUnreachable, match="Connection refused"):
        drv.promote(1)
    assert not isinstance(CommandTimeout("x"), ReplicationError)


def test_status_reads_drbd_generation_identifiers() -> None:
    runner = ScriptedRunner(
        [
            status("primary-connected"),
            Expect(["cat", EPOCH], stdout="3\n"),
            Expect(["drbdsetup", "get-gi", "r0", "1", "0"], stdout=fixture_text("get-gi.txt")),
            status("primary-connected"),
            Expect(["cat", EPOCH], stdout="3\n"),
            Expect(
                ["drbdsetup", "get-gi", "r0", "1", "0"], stderr="r0: No such peer", returncode=10
            ),
        ]
    )
    cluster = two_site_cluster()
    env = Environment(runners={"a1": runner})
    drv = DrbdReplicator(cluster.volumes[0], Node("a1"), env, state_dir=STATE)
    st = drv.status()
    assert st.epoch == 3
    assert st.generation == {
        "current": "F3A1D1F7F5ECF34A",
        "bitmap": "0000000000000000",
        "history": ["E15E4A8B0A0F2D3C", "0000000000000004"],
        "flags": "11010000000000",
    }
    st = drv.status()
    assert st.generation == {}
    assert st.extra["generation_error"].endswith("exited 10: r0: No such peer")
    runner.assert_done()


def test_split_brain_carries_the_local_generation() -> None:
    stream = fixture_text("events2-connecting.txt") + (
        "call helper name:r0 peer-node-id:1 conn-name:b1 volume:0 helper:initial-split-brain\n"
    )
    drv, _ = make(status("split-brain-a"), drbdadm("connect", "r0"), Expect(EVENTS, stdout=stream))
    with pytest.raises(SplitBrain) as err:
        drv.connect()
    assert err.value.local["generation"]["current"] == "F3A1D1F7F5ECF34A"


def test_status_garbage_from_drbdsetup_is_a_replication_error() -> None:
    drv, _ = make(Expect(STATUS, stdout="Segmentation fault"))
    with pytest.raises(ReplicationError, match="not JSON"):
        drv.status()


def test_operation_timeout_is_unreachable() -> None:
    drv, _ = make(status("connected-secondary"), Expect(["drbdadm", "primary", "r0"], timeout=True))
    with pytest.raises(DrbdUnreachable, match="drbdadm primary"):
        drv.promote(1)


def test_status_from_proc_drbd_84() -> None:
    from drorch.replication.drbd.status_sources import read_status

    runner = ScriptedRunner(
        [Expect(["cat", "/proc/drbd"], stdout=fixture_text("proc-drbd-84.txt"))]
    )
    st = read_status(runner, two_site_cluster().volumes[0], "proc")
    assert (st.name, st.role, st.connection) == ("r0", Role.PRIMARY, ConnState.CONNECTED)
    assert st.extra["protocol"] == "C"


def test_promote_records_the_epoch_on_the_node_and_refuses_older_ones_later() -> None:
    write = Expect(["sh", "-c", epoch_store._WRITE, "sh", STATE, EPOCH, "9"])
    runner = ScriptedRunner(
        [
            status("connected-secondary"),
            Expect(["cat", EPOCH], stderr=f"cat: {EPOCH}: No such file or directory", returncode=1),
            Expect(["drbdsetup", "get-gi", "r0", "1", "0"], stdout=fixture_text("get-gi.txt")),
            drbdadm("primary", "r0"),
            write,
            # a later process (new driver instance) with a stale epoch
            status("connected-secondary"),
            Expect(["cat", EPOCH], stdout="9\n"),
            Expect(["drbdsetup", "get-gi", "r0", "1", "0"], stdout=fixture_text("get-gi.txt")),
        ]
    )
    cluster = two_site_cluster()
    env = Environment(runners={"a1": runner})
    DrbdReplicator(cluster.volumes[0], Node("a1"), env, state_dir=STATE).promote(9)
    later = DrbdReplicator(cluster.volumes[0], Node("a1"), env, state_dir=STATE)
    with pytest.raises(StaleEpoch, match="epoch 8 is older than epoch 9 already seen on a1"):
        later.promote(8)
    runner.assert_done()


def test_a_later_process_refuses_the_recorded_epoch_itself() -> None:
    """Epochs are strict: a new driver instance (another process: agent, runbook, CLI)
    reads the node's epoch file and refuses a new primary at that very epoch, before any
    drbdadm call and without rewriting the file; a greater one runs and is recorded."""
    write = Expect(["sh", "-c", epoch_store._WRITE, "sh", STATE, EPOCH, "10"])
    gi = Expect(["drbdsetup", "get-gi", "r0", "1", "0"], stdout=fixture_text("get-gi.txt"))
    runner = ScriptedRunner(
        [
            status("connected-secondary"),
            Expect(["cat", EPOCH], stdout="9\n"),
            gi,
            status("connected-secondary"),
            Expect(["cat", EPOCH], stdout="9\n"),
            gi,
            drbdadm("primary", "r0"),
            write,
        ]
    )
    env = Environment(runners={"a1": runner})
    later = DrbdReplicator(two_site_cluster().volumes[0], Node("a1"), env, state_dir=STATE)
    with pytest.raises(StaleEpoch, match="epoch 9 is equal to epoch 9 already seen") as info:
        later.promote(9)
    assert "a promotion needs an epoch greater than 9" in str(info.value)
    later.promote(10)
    assert later.epoch == 10
    runner.assert_done()


def test_corrupt_epoch_file_is_reported() -> None:
    drv, runner = make(status("connected-secondary"))
    runner.files[EPOCH] = "banana\n"
    with pytest.raises(ReplicationError, match="holds 'banana', not an epoch"):
        drv.status()


def test_watch_yields_a_status_per_change_without_polling() -> None:
    drv, runner = make(Expect(EVENTS, stdout=fixture_text("events2-stream.txt")))
    drv.epoch = 4
    seen = list(drv.watch())
    runner.assert_done()  # one events2 process, no status polling
    assert [s.connection for s in seen][:2] == [ConnState.CONNECTED, ConnState.CONNECTED]
    assert seen[1].role is Role.PRIMARY
    assert {s.epoch for s in seen} == {4}
    assert seen[-1].connection is ConnState.CONNECTED and seen[-1].out_of_sync_bytes == 0
    assert any(s.connection is ConnState.SYNC_SOURCE for s in seen)
