"""A dry run of the hurricane plan on REAL pyrepl volumes (two `drorch repl serve`
daemons per volume on loopback, started by the driver's up()) plus the sim hypervisor:
nothing changes (replica status and VM state compared before and after), and every plan
step says what it checked. Also: a real replica that is Inconsistent (mid initial sync)
is not promoted without --force --accept-data-loss."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from drorch.clock import SystemClock
from drorch.replication.pyrepl.control import ControlClient
from drorch.replication.pyrepl.driver import PyreplReplicator
from drorch.runbook.journal import Journal
from drorch.runbook.steps.base import StepFailed
from drorch.wait import wait_until
from tests.pyrepl.nbd_client import NbdClient
from tests.runbook.pyrepl_lab import in_sync, pyrepl_edits, real_time_lab, running_volumes
from tests.runbook.steps_lab import PLAN, RecordingProgress, SimLab


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[SimLab]:
    lab = real_time_lab(tmp_path, pyrepl_edits())
    with running_volumes(lab):
        yield lab


def _status(lab: SimLab) -> dict[str, dict[str, object]]:
    keep = (
        "role",
        "disk",
        "peer_disk",
        "peer_role",
        "connection",
        "mode",
        "epoch",
        "out_of_sync_bytes",
    )
    return {
        f"{v}@{n}": {k: r.status().as_dict()[k] for k in keep}
        for (v, n), r in sorted(lab.env.replicators.items())
    }


def test_dry_run_on_real_pyrepl_volumes_changes_nothing(lab: SimLab) -> None:
    in_sync(lab)
    before = (_status(lab), lab.vms())
    assert before[0]["appdata@a1"]["role"] == "primary"
    summary = lab.runbook(PLAN, {"to": "B"}, dry_run=True)
    assert (_status(lab), lab.vms()) == before
    events = [e for e in Journal(lab.env.state_dir).events(summary.run_id) if e.kind == "end"]
    children = {e.step: e for e in events if e.step.startswith("go/")}
    assert len(children) == 21, "\n".join(lab.output.lines)
    ran = [e for e in children.values() if e.status == "would-run"]
    assert all(e.data.get("checked") for e in ran), [
        e.step for e in ran if not e.data.get("checked")
    ]
    checked = "\n".join(str(c) for e in ran for c in e.data["checked"])  # type: ignore[union-attr]
    assert "appdata@b1: secondary UpToDate/UpToDate Connected sync, 0 B behind" in checked
    assert "dbdata@b1: secondary, disk UpToDate, peer primary/UpToDate, Connected" in checked
    # pyrepl opens a volume at both sites for the live hand-over (pyrepl/dual.py)
    failing = {
        k.split("-", 1)[1]: e.message for k, e in children.items() if e.status == "would-fail"
    }
    assert failing == {}
    allow = next(e for k, e in children.items() if k.endswith("allow-two-primaries-appdata"))
    assert allow.status == "would-run"
    assert "appdata@a1: two primaries forbidden" in allow.data["checked"]  # type: ignore[operator]
    assert summary.status == "dry-run"


def test_an_inconsistent_real_replica_is_not_promoted(lab: SimLab) -> None:
    rep = lab.env.replicators[("dbdata", "b1")]
    assert rep.status().disk.value == "Inconsistent"  # day 0: nothing synced yet
    with pytest.raises(StepFailed) as failed:
        lab.run("replication.promote", target="dbdata", site="B", epoch=1)
    assert failed.value.code == "promote-refused"
    assert "dbdata@b1 is Inconsistent, not UpToDate" in failed.value.message
    assert rep.status().role.value == "secondary"


def test_wait_in_sync_follows_a_real_resync_with_a_progress_bar(lab: SimLab) -> None:
    in_sync(lab)
    a, b = lab.env.replicators[("appdata", "a1")], lab.env.replicators[("appdata", "b1")]
    b.disconnect()
    # fencing resource-only and no witness here: A would freeze; the operator outdates B
    clock = SystemClock()
    lost = wait_until(
        clock, lambda: a.status().connection.value != "Connected", clock.monotonic() + 10
    )
    assert lost and isinstance(a, PyreplReplicator)
    ControlClient(a.control).call("outdate_peer", accept_data_loss=True)
    uri = a.status().nbd
    assert uri is not None
    host, port = uri.removeprefix("nbd://").split("/")[0].rsplit(":", 1)
    with NbdClient(host, int(port), "appdata") as client:
        client.write(0, b"x" * (1024 * 1024))  # 1 MiB the peer does not have
    assert a.status().out_of_sync_bytes > 0
    later = threading.Timer(1.0, b.connect)
    later.start()
    try:
        step, args = lab.bind(
            "replication.wait_in_sync", {"target": "appdata", "site": "A", "timeout": 30.0}
        )
        bar = RecordingProgress()
        result = step.run(lab.ctx(progress=bar), args)
    finally:
        later.join()
    assert result.message.startswith("in sync after ")
    assert bar.updates[0][0] < bar.updates[0][1] == 2 * 1024 * 1024  # bytes still to go
    assert "appdata: " in bar.updates[0][2] and " B to go" in bar.updates[0][2]
    assert bar.updates[-1][:2] == (2 * 1024 * 1024, 2 * 1024 * 1024)


@pytest.fixture
def async_lab(tmp_path: Path) -> Iterator[SimLab]:
    """The same lab with appdata configured async (the hurricane's switch-to-sync case)."""
    edits = pyrepl_edits() | {"mode: sync             #": "mode: async            #"}
    lab = real_time_lab(tmp_path, edits)
    with running_volumes(lab):
        yield lab


def test_set_mode_step_switches_a_real_async_pyrepl_volume_and_undoes(async_lab: SimLab) -> None:
    lab = async_lab
    in_sync(lab)
    a = lab.env.replicators[("appdata", "a1")]
    assert a.status().mode == "async"
    step, args = lab.bind("replication.set_mode", {"mode": "sync"})
    checked = step.check(lab.ctx(), args)  # no mode-change-unsupported any more
    assert checked.changed and "appdata" in checked.message
    result = step.run(lab.ctx(), args)
    assert result.changed and result.data["old_modes"] == {"appdata": "async"}
    for node in ("a1", "b1"):
        st = lab.env.replicators[("appdata", node)].status()
        assert st.mode == "sync" and not st.extra["mode_switch"], node
        assert st.extra["mode_source"]["live"] is True
    assert step.probe(lab.ctx(), args)
    back = step.undo_args(args, result)
    assert back == {"volumes": ("appdata",), "mode": "async"}
    step2, args2 = lab.bind("replication.set_mode", back)
    step2.run(lab.ctx(), args2)
    assert {lab.env.replicators[("appdata", n)].status().mode for n in ("a1", "b1")} == {"async"}
