"""An agent's run interrupted with its site (kill -9, power loss) does not refuse every
later automatic run: the next run an agent starts abandons it, once nothing holds the
run lock (drorch.cli.agent_runbooks.supersede_agent_runs). An operator's interrupted run
is never abandoned by an agent."""

from __future__ import annotations

from pathlib import Path

from drorch.cli.agent_runbooks import supersede_agent_runs
from drorch.model.loader import parse_cluster_text
from drorch.runbook.journal import Journal, RunRecord
from drorch.runbook.lock import RunLock

REPO = Path(__file__).resolve().parents[2]


def _record(run_id: str, user: str, status: str = "running") -> RunRecord:
    return RunRecord(
        run_id=run_id, cluster="hq-dr", runbook="site-failover", runbook_file="x.yaml",
        runbook_text="", config="c.yaml", params={}, dry_run=False, user=user, host="h",
        pid=1, started_at=1.0, ended_at=None, status=status, message="",
    )  # fmt: skip


def test_an_agents_interrupted_run_is_abandoned_an_operators_is_not(tmp_path: Path) -> None:
    cluster, _ = parse_cluster_text((REPO / "lab" / "sim.yaml").read_text(), "sim.yaml")
    journal = Journal(tmp_path)
    journal.create_run(_record("r-agent", "agent a1"))
    journal.create_run(_record("r-ops", "ops"))
    journal.create_run(_record("r-done", "agent b1", status="succeeded"))
    journal.close()
    assert supersede_agent_runs(tmp_path, cluster, "agent b1") == ["r-agent"]
    journal = Journal(tmp_path)
    status = {r.run_id: (r.status, r.message) for r in journal.runs("hq-dr")}
    journal.close()
    assert status["r-agent"][0] == "abandoned"
    assert "superseded by agent b1" in status["r-agent"][1]
    assert status["r-ops"] == ("running", "")
    assert status["r-done"][0] == "succeeded"


def test_nothing_is_abandoned_while_the_run_lock_is_held(tmp_path: Path) -> None:
    cluster, _ = parse_cluster_text((REPO / "lab" / "sim.yaml").read_text(), "sim.yaml")
    journal = Journal(tmp_path)
    journal.create_run(_record("r-agent", "agent a1"))
    journal.close()
    lock = RunLock(tmp_path, "hq-dr")
    lock.acquire("r-live")  # another agent's run is under way
    try:
        assert lock.holder() == "r-live"
        assert supersede_agent_runs(tmp_path, cluster, "agent b1") == []
    finally:
        lock.release()
