"""Per-operation classification of drbdadm results: success, benign, or a typed error."""

from __future__ import annotations

import pytest

from drorch.remote.base import CommandResult
from drorch.replication.base import UnsafeOperation
from drorch.replication.drbd.ops import (
    DrbdConfigError,
    DrbdDeviceInUse,
    DrbdDiskless,
    DrbdDiskNotUpToDate,
    DrbdError,
    DrbdMetadataExists,
    DrbdModuleMissing,
    DrbdNoQuorum,
    DrbdNotConnected,
    DrbdPeerNotOutdated,
    DrbdPeerPrimary,
    Op,
    classify,
    drbd_message,
)
from tests.drbd.conftest import fixture_text


def result(rc: int, stderr: str) -> CommandResult:
    return CommandResult(("drbdadm", "x", "r0"), rc, "", stderr)


BENIGN = [
    (Op.UP, 10, fixture_text("drbdadm-up-exists.stderr"), "already up"),
    (Op.DOWN, 10, "r0: No such resource\n", "already down"),
    (Op.DISCONNECT, 11, "r0: State change failed: (-15) Can not disconnect a StandAlone device\n",
     "already StandAlone"),
    (Op.CONNECT, 10, "r0: Failure: (125) Device has a net-config (use disconnect first)\n",
     "already connected or connecting"),
    (Op.VERIFY, 11, "r0: State change failed: (-17) Can not start OV/resync since it is "
     "already active\n", "a verify or resync is already running"),
]  # fmt: skip


@pytest.mark.parametrize(("op", "rc", "stderr", "reason"), BENIGN)
def test_benign_results(op: Op, rc: int, stderr: str, reason: str) -> None:
    outcome = classify(op, result(rc, stderr))
    assert (outcome.changed, outcome.reason) == (False, reason)


ERRORS = [
    (Op.UP, 20, fixture_text("drbdadm-up-no-module.stderr"), DrbdModuleMissing),
    (Op.UP, 20, fixture_text("drbdadm-up-no-module-kmod.stderr"), DrbdModuleMissing),
    (Op.STATUS, 20, fixture_text("drbdsetup-status-no-module.stderr"), DrbdModuleMissing),
    (Op.PRIMARY, 11, fixture_text("drbdadm-primary-peer-primary.stderr"), DrbdPeerPrimary),
    (Op.PRIMARY, 17, fixture_text("drbdadm-primary-not-uptodate.stderr"), DrbdDiskNotUpToDate),
    (Op.PRIMARY, 11, fixture_text("drbdadm-primary-peer-not-outdated.stderr"),
     DrbdPeerNotOutdated),
    (Op.PRIMARY, 11, "r0: State change failed: (-23) No quorum\n", DrbdNoQuorum),
    (Op.SECONDARY, 11, fixture_text("drbdadm-secondary-in-use.stderr"), DrbdDeviceInUse),
    (Op.DOWN, 11, "r0: State change failed: (-12) Device is held open by someone\n",
     DrbdDeviceInUse),
    (Op.VERIFY, 11, fixture_text("drbdadm-verify-not-connected.stderr"), DrbdNotConnected),
    (Op.INVALIDATE, 11, "r0: State change failed: (-18) Device is diskless, the requested "
     "operation requires a disk\n", DrbdDiskless),
    (Op.UP, 10, fixture_text("drbdadm-not-defined.stderr"), DrbdConfigError),
    (Op.UP, 10, "/etc/drbd.d/r0.res:3: Parse error: 'TK_IPADDR' expected\n", DrbdConfigError),
    (Op.CREATE_MD, 20, fixture_text("drbdadm-create-md-exists.stderr"), DrbdMetadataExists),
    (Op.CREATE_MD, 40, fixture_text("drbdadm-create-md-refused.stderr"), DrbdMetadataExists),
    (Op.PRIMARY, 17, "something new\n", DrbdDiskNotUpToDate),  # by exit code alone
    (Op.CONNECT, 5, "something unheard of\n", DrbdError),
]  # fmt: skip


@pytest.mark.parametrize(("op", "rc", "stderr", "error"), ERRORS)
def test_typed_errors_carry_drbdadm_message(
    op: Op, rc: int, stderr: str, error: type[DrbdError]
) -> None:
    with pytest.raises(error) as err:
        classify(op, result(rc, stderr))
    assert type(err.value) is error
    assert err.value.returncode == rc
    assert err.value.message == "\n".join(ln for ln in stderr.splitlines() if ln.strip())
    assert err.value.op == op.value


def test_unsafe_errors_are_unsafe_operations() -> None:
    assert issubclass(DrbdDiskNotUpToDate, UnsafeOperation)
    assert issubclass(DrbdMetadataExists, UnsafeOperation)
    assert not issubclass(DrbdPeerPrimary, UnsafeOperation)


def test_message_drops_missing_helper_noise() -> None:
    noisy = "sh: 1: modinfo: not found\nr0: No such resource\nsh: 1: modinfo: not found\n"
    assert drbd_message(result(10, noisy)) == "r0: No such resource"
    assert drbd_message(result(1, "")) == "(no output)"
