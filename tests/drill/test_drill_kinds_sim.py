"""The shipped drill runbooks (runbooks/drills/) on the simulated lab: each kind
succeeds and leaves the cluster where it started, a drill is skipped when replication is
not in sync, and a drill that fails midway rolls back to its start state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import drorch.testing.ledger_steps  # noqa: F401  (registers ledger.*)
from drorch.decide.snapshot import active_site
from drorch.drill.history import History
from drorch.drill.preflight import health_reasons
from drorch.drill.runner import drill_runbook, run_drill
from drorch.observe import observe
from drorch.runbook.gates import YesConfirmer
from drorch.runbook.load import parse_runbook_text
from drorch.runbook.setup import RecordingOutput, RunOptions
from drorch.virt.sim_world import break_replication
from tests.drill.simlab import REPO, SimLab


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimLab:
    monkeypatch.setenv("DRORCH_STATE_DIR", str(tmp_path / "state"))
    return SimLab(tmp_path)


def options() -> RunOptions:
    return RunOptions(confirmer=YesConfirmer("drill-test"), output=RecordingOutput(),
                      user="drill-test")  # fmt: skip


def where(lab: SimLab) -> dict[str, object]:
    env = lab.env()
    snap = observe(lab.cluster, env).snapshot
    return {
        "active": active_site(snap)[0],
        "vms": sorted((vm, site) for (vm, site), st in snap.vm_states.items() if st == "running"),
        "primaries": sorted((v, s) for (v, s), r in snap.replicas.items() if r.role == "primary"),
        "healthy": health_reasons(lab.cluster, env, []) == [],
    }


START = {
    "active": "A",
    "vms": [("drorch-db", "A"), ("drorch-web", "A")],
    "primaries": [("appdata", "A"), ("dbdata", "A")],
    "healthy": True,
}


@pytest.mark.parametrize("kind", ["live", "cold"])
def test_each_kind_succeeds_and_comes_home(lab: SimLab, kind: str) -> None:
    assert where(lab) == START
    out = run_drill(lab.cluster, lab.drill(kind), lab.env(), options())
    assert out.result == "succeeded", (out.message, out.reasons)
    assert where(lab) == START
    (row,) = History(lab.state).rows()
    assert row.result == "succeeded" and row.kind == kind and row.run_id == out.run_id
    assert row.rpo_bytes == 0
    assert row.rto_s is not None and row.total_s is not None and 0 < row.rto_s < row.total_s
    assert set(row.downtime_s) == {"db", "web"}
    assert "at-target" in row.data["rto_basis"]  # type: ignore[operator]
    steps = [s["step"] for s in row.data["steps"]]  # type: ignore[union-attr]
    actions = {s["action"] for s in row.data["steps"]}  # type: ignore[union-attr]
    assert steps.index("over") < steps.index("at-target") < steps.index("back")
    if kind == "live":
        assert "vm.migrate_live" in actions  # web moved live, both ways
        assert row.downtime_s["web"] < 0.3  # a live pause, under max_downtime
        migrate = next(s for s in row.data["steps"] if s["action"] == "vm.migrate_live")  # type: ignore[union-attr]
        assert migrate["progress"] and migrate["progress"][-1][1] == 1.0  # a progress curve
    else:
        assert "vm.migrate_live" not in actions  # everything moved cold
        assert {"vm.shutdown", "vm.start"} <= actions


def test_live_drill_skipped_when_replication_is_not_in_sync(lab: SimLab) -> None:
    break_replication(lab.cluster, lab.env(), "dbdata")
    out = run_drill(lab.cluster, lab.drill("live"), lab.env(), options())
    assert out.result == "skipped" and out.run_id == ""
    (row,) = History(lab.state).rows()
    assert row.result == "skipped"
    assert any(r.code == "not-in-sync" and "dbdata" in r.message for r in row.reasons)


def test_a_live_drill_failing_midway_rolls_back_to_where_it_started(
    lab: SimLab, tmp_path: Path
) -> None:
    text = (REPO / "runbooks" / "drills" / "live.yaml").read_text()
    broken = text.replace(
        "  - id: back\n",
        f"  - id: boom\n    action: ledger.flaky\n"
        f"    with: {{ledger: {tmp_path / 'ledger'}, token: t, failures: 9}}\n"
        "    on_failure: rollback\n  - id: back\n",
    )
    assert broken != text
    rb = parse_runbook_text(broken, "live-broken.yaml")
    out = run_drill(lab.cluster, lab.drill("live"), lab.env(), options(), runbook=rb)
    assert out.result == "rolled-back", out.message
    assert where(lab) == START  # everything came back to A through the rollback
    (row,) = History(lab.state).rows()
    assert row.result == "rolled-back" and row.reasons[0].code == "flaky"
    phases = {s["phase"] for s in row.data["steps"]}  # type: ignore[union-attr]
    assert "rollback" in phases


def test_the_shipped_drill_runbooks_validate() -> None:
    from drorch.model.types import Drill, DrillKind

    for kind in DrillKind:
        rb = drill_runbook(Drill("d", kind, "@weekly", "B"))
        assert {p.name for p in rb.params} <= {"to", "home", "drill"}


Planned = tuple[str, str, list[tuple[str, str, str]]]


def _plans(lab: SimLab, run_id: str) -> dict[str, Planned]:
    """Each plan.execute step's journaled plan: (from, planned_from, [(action, key,
    args as JSON)])."""
    from drorch.runbook.journal import Journal

    j = Journal(lab.state)
    try:
        events = [e for e in j.events(run_id) if e.kind == "expand"]
    finally:
        j.close()
    out: dict[str, Planned] = {}
    for e in events:
        children = e.data["children"]
        assert isinstance(children, list)
        steps = [(str(c["action"]), str(c["key"]), json.dumps(c["args"], sort_keys=True))
                 for c in children]  # fmt: skip
        out[e.step] = (str(e.data["from"]), str(e.data.get("planned_from")), steps)
    return out


@pytest.mark.parametrize("kind", ["live", "cold"])
def test_dry_run_plans_the_way_back_from_the_simulated_way_over(lab: SimLab, kind: str) -> None:
    """A dry run moves nothing, so it plans leg two from the simulated effect of leg one
    (drorch.decide.effect): the same plan the real run then makes from the real world."""
    dry_out = RecordingOutput()
    dry = run_drill(lab.cluster, lab.drill(kind), lab.env(),
                    RunOptions(dry_run=True, output=dry_out, user="t"))  # fmt: skip
    assert dry.result == "dry-run", (dry.message, dry_out.lines)
    assert where(lab) == START and History(lab.state).rows() == []  # nothing moved, no row
    planned = _plans(lab, dry.run_id)
    assert planned["over"][:2] == ("A", "what was observed now")
    assert planned["back"][:2] == ("B", "the simulated effect of over (a dry run moves nothing)")
    assert "  planned from the simulated effect of over (a dry run moves nothing)" in dry_out.lines
    assert not any("already-at-target" in line for line in dry_out.lines)
    # leg two's steps are shown, not checked against a world that does not exist yet
    shown = [ln for ln in dry_out.lines if ln.startswith("  would change: not checked")]
    assert len(shown) == len(planned["back"][2])
    real = run_drill(lab.cluster, lab.drill(kind), lab.env(), options())
    assert real.result == "succeeded", real.message
    done = _plans(lab, real.run_id)
    assert done["back"][1] == "what was observed now"
    assert planned["over"][2] == done["over"][2]
    # the dry run's way back is the real one, arguments (epochs, sources) and all
    assert planned["back"][2] == done["back"][2]
