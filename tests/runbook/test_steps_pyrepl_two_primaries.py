"""The live hand-over steps on REAL pyrepl volumes (daemons on loopback, started by the
driver) with the sim hypervisor: allow two primaries, promote the target as second
primary, demote the source, forbid again; and the whole hurricane plan run for real."""

from __future__ import annotations

import pytest

from drorch.runbook.journal import Journal
from drorch.runbook.steps.base import StepFailed
from tests.runbook.pyrepl_lab import in_sync
from tests.runbook.steps_lab import PLAN, SimLab
from tests.runbook.test_steps_pyrepl_dry_run import lab

__all__ = ["lab"]  # the fixture, shared with the dry-run tests


def test_hand_over_steps_on_real_pyrepl(lab: SimLab) -> None:
    in_sync(lab)
    a, b = (lab.env.replicators[("appdata", n)] for n in ("a1", "b1"))
    before = a.status().epoch
    result = lab.run("replication.allow_two_primaries", target="appdata")
    assert result.changed and "two primaries allowed on appdata" in result.message
    assert a.two_primaries_allowed() and b.two_primaries_allowed()  # type: ignore[attr-defined]
    assert lab.probe("replication.allow_two_primaries", target="appdata")
    epoch = before + 1
    result = lab.run(
        "replication.promote", target="appdata", site="B", epoch=epoch, second_primary=True
    )
    assert result.changed, result.message
    assert b.status().role.value == "primary" and a.status().role.value == "primary"
    assert b.status().extra["two_primaries"]["state"] == "second-primary"
    assert b.status().epoch == before  # joined, not raised: a is still writing
    with pytest.raises(StepFailed) as failed:
        lab.run("replication.forbid_two_primaries", target="appdata")
    assert failed.value.code == "both-primary"
    a.demote()  # (the demote step waits for the VM to leave A: the whole plan does that)
    assert a.status().role.value == "secondary"
    assert b.status().epoch == epoch  # the hand-over took the plan's epoch
    result = lab.run("replication.forbid_two_primaries", target="appdata")
    assert result.changed and not a.two_primaries_allowed()  # type: ignore[attr-defined]


def test_the_hurricane_plan_runs_on_real_pyrepl(lab: SimLab) -> None:
    in_sync(lab)
    summary = lab.runbook(PLAN, {"to": "B"})
    events = [e for e in Journal(lab.env.state_dir).events(summary.run_id) if e.kind == "end"]
    bad = [(e.step, e.status, e.message) for e in events if e.status not in ("ok", "skipped")]
    assert summary.status == "succeeded", (bad, "\n".join(lab.output.lines[-30:]))
    for vol in lab.cluster.volumes:
        roles = {n: lab.env.replicators[(vol.name, n)].status().role.value for n in vol.paths}
        assert roles == {"a1": "secondary", "b1": "primary"}, vol.name
