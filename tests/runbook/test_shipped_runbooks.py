"""The shipped runbooks (runbooks/*.yaml) and their shortcuts, on the simulated lab.

`drorch migrate --to B` (hurricane-planned-migration), `drorch failover --to B`
(site-failover) and `drorch failback` (failback) are run through the CLI exactly as an
operator runs them, against a copy of lab/sim.yaml; what they did is checked by
observing the simulated world afterwards, not by reading their output.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from drorch.cli.main import cli
from drorch.envbuild import build_environment
from drorch.environment import Environment
from drorch.model.loader import load_cluster
from drorch.observe import observe

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = REPO / "runbooks"
SHIPPED = sorted(RUNBOOKS.rglob("*.yaml"))


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DRORCH_RUNBOOKS", str(RUNBOOKS))
    config = tmp_path / "sim.yaml"
    config.write_text((REPO / "lab" / "sim.yaml").read_text())
    shutil.copytree(REPO / "lab" / "xml", tmp_path / "xml")  # the VMs' domain XML
    return config


def drorch(*argv: str) -> Result:
    return CliRunner().invoke(cli, list(argv), catch_exceptions=False)


def where(config: Path) -> dict[str, object]:
    """What runs where and which copy is primary, observed afresh."""
    cluster = load_cluster(config)
    env: Environment = build_environment(cluster, base_dir=config.parent)
    try:
        snap = observe(cluster, env).snapshot
    finally:
        env.close()
    vms = {vm.name: sorted(s for s in ("A", "B") if snap.vm_state(vm.domain, s) == "running")
           for vm in cluster.vms}  # fmt: skip
    primary = {
        vol.name: sorted(
            s
            for s in ("A", "B")
            if (r := snap.replica(vol.name, s)) is not None and r.role == "primary"
        )
        for vol in cluster.volumes
    }
    return {"vms": vms, "primary": primary}


def last_report() -> dict[str, object]:
    runs = json.loads(drorch("runbook", "history", "--limit", "1", "--format", "json").stdout)
    shown = drorch("runbook", "show", runs[0]["run_id"], "--format", "json")
    report: dict[str, object] = json.loads(shown.stdout)
    return report


AT_A = {"vms": {"db": ["A"], "web": ["A"]}, "primary": {"appdata": ["A"], "dbdata": ["A"]}}
AT_B = {"vms": {"db": ["B"], "web": ["B"]}, "primary": {"appdata": ["B"], "dbdata": ["B"]}}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_runbook_validates(path: Path) -> None:
    result = drorch("runbook", "validate", str(path))
    assert result.exit_code == 0, result.output


def test_the_three_mission_runbooks_are_shipped() -> None:
    names = {p.name for p in SHIPPED}
    assert {"hurricane-planned-migration.yaml", "site-failover.yaml", "failback.yaml"} <= names


def test_hurricane_dry_run_changes_nothing(lab: Path) -> None:
    where(lab)  # the sim writes its first state on the first look
    state = lab.parent / ".drorch-state"
    before = {p: p.read_bytes() for p in state.rglob("*") if p.is_file()}
    result = drorch("migrate", "--to", "B", "-c", str(lab), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would live-migrate web A -> B" in result.output
    assert "would ask: Move every VM and service from A to B?" in result.output
    after = {p: p.read_bytes() for p in state.rglob("*") if p.is_file()}
    assert after == before
    assert where(lab) == AT_A


def test_hurricane_there_and_back_with_a_report(lab: Path) -> None:
    assert where(lab) == AT_A
    there = drorch("migrate", "--to", "B", "-c", str(lab), "--yes")
    assert there.exit_code == 0, there.output
    assert where(lab) == AT_B
    report = last_report()
    assert report["status"] == "succeeded"
    recovery = report["recovery"]
    assert isinstance(recovery, dict)
    assert isinstance(recovery["rto_s"], float) and recovery["rto_s"] > 0
    downtime = recovery["downtime_s"]
    assert isinstance(downtime, dict) and set(downtime) == {"web", "db"}
    assert downtime["web"] < downtime["db"]  # a live pause is shorter than a cold move

    again = drorch("migrate", "--to", "B", "-c", str(lab), "--yes")
    assert again.exit_code == 0
    assert "nothing to do: the cluster already runs at B" in again.output

    back = drorch("migrate", "--to", "A", "-c", str(lab), "--yes")
    assert back.exit_code == 0, back.output
    assert where(lab) == AT_A


def test_site_failover_needs_quorum_then_takes_over(lab: Path) -> None:
    where(lab)
    assert drorch("sim", "power-off", "A", "-c", str(lab)).exit_code == 0
    # just lost: A's lease is still live at the witness, so B does not hold quorum
    refused = drorch("failover", "--to", "B", "-c", str(lab), "--yes")
    assert refused.exit_code == 3, refused.output  # refused as unsafe
    assert "no-quorum" in refused.output
    assert where(lab)["vms"] == {"db": [], "web": []}
    # a minute later the lease has lapsed and the watchdog wait is over
    marker = lab.parent / ".drorch-state" / "sim-A.down"
    marker.write_text(f"{time.time() - 60}\n")
    done = drorch("failover", "--to", "B", "-c", str(lab), "--yes")
    assert done.exit_code == 0, done.output
    assert where(lab)["vms"] == {"db": ["B"], "web": ["B"]}
    assert last_report()["status"] == "succeeded"


def test_failback_after_a_failover(lab: Path) -> None:
    where(lab)
    assert drorch("sim", "power-off", "A", "-c", str(lab)).exit_code == 0
    (lab.parent / ".drorch-state" / "sim-A.down").write_text(f"{time.time() - 60}\n")
    assert drorch("failover", "--to", "B", "-c", str(lab), "--yes").exit_code == 0
    assert drorch("sim", "power-on", "A", "-c", str(lab)).exit_code == 0
    back = drorch("failback", "-c", str(lab), "--yes")
    assert back.exit_code == 0, back.output
    assert "reprotect" in back.output
    assert where(lab) == AT_A


def test_shortcut_usage_errors(lab: Path) -> None:
    unknown = drorch("migrate", "--to", "Z", "-c", str(lab), "--yes")
    assert unknown.exit_code == 2
    assert "no such site" in unknown.stderr
    lonely = drorch("failover", "--to", "B", "-c", str(lab), "--accept-data-loss")
    assert lonely.exit_code == 2
    assert "--accept-data-loss goes with --force" in lonely.stderr


@pytest.mark.parametrize("after", [2, 9, 17, 26, 34, 43, 52, 61])
def test_hurricane_killed_anywhere_resumes_to_one_consistent_site(lab: Path, after: int) -> None:
    """kill -9 of `drorch migrate` after the N-th journal event (every step boundary and
    the points inside a step's events), then `drorch runbook resume`: the cluster ends at
    B, each VM at exactly one site, each volume primary only at B, status healthy."""
    import subprocess
    import sys

    where(lab)
    killed = subprocess.run(
        [sys.executable, "-m", "tests.runbook.killer", "--after-events", str(after), "--",
         "migrate", "--to", "B", "-c", str(lab), "--yes"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    runs = json.loads(drorch("runbook", "history", "--limit", "1", "--format", "json").stdout)
    run_id = runs[0]["run_id"]
    if killed.returncode == 0:  # the run has fewer events than `after`: nothing to resume
        assert where(lab) == AT_B
        return
    assert killed.returncode == -9, killed.stdout + killed.stderr
    resumed = drorch("runbook", "resume", run_id, "-c", str(lab), "--yes")
    assert resumed.exit_code == 0, resumed.output
    assert where(lab) == AT_B
    health = drorch("status", "-c", str(lab))
    assert health.exit_code == 0, health.output


# vm.migrate_live, replication.promote, vm.shutdown and service.start are covered by
# tests/runbook/test_steps_resume.py; these are the other step kinds the hurricane run uses
CHANGING_ACTIONS = [
    "replication.set_mode", "service.stop", "replication.demote",
    "replication.allow_two_primaries", "replication.forbid_two_primaries", "vm.define",
    "vm.start", "quorum.release",
]  # fmt: skip


@pytest.mark.parametrize("action", CHANGING_ACTIONS)
def test_killed_inside_each_step_kind_resume_does_not_redo_it(lab: Path, action: str) -> None:
    """kill -9 right after the first step of ACTION did its work (its end never
    journaled): resume asks its probe, which must see that it took effect, so the step is
    not run again, and the run still ends with everything at B."""
    import subprocess
    import sys

    where(lab)
    if action == "replication.set_mode":  # in sync mode already: make it have work to do
        text = lab.read_text().replace("mode: sync", "mode: async", 1)
        lab.write_text(text)
    killed = subprocess.run(
        [sys.executable, "-m", "tests.runbook.killer", "--after-run", action, "--",
         "migrate", "--to", "B", "-c", str(lab), "--yes"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stdout + killed.stderr
    run_id = json.loads(drorch("runbook", "history", "--limit", "1", "--format", "json").stdout)[0][
        "run_id"
    ]
    resumed = drorch("runbook", "resume", run_id, "-c", str(lab), "--yes")
    assert resumed.exit_code == 0, resumed.output
    assert "already in effect (interrupted earlier): not run again" in resumed.output
    assert where(lab) == AT_B


def test_forced_failover_while_the_other_site_answers_is_refused_at_once(lab: Path) -> None:
    where(lab)
    started = time.monotonic()
    refused = drorch("failover", "--to", "B", "-c", str(lab), "--yes", "--force",
                     "--accept-data-loss")  # fmt: skip
    assert refused.exit_code == 3, refused.output
    assert "lost-site-answers" in refused.output
    assert "attempt 2 failed" not in refused.output  # not retried: waiting cannot help
    assert time.monotonic() - started < 60
    assert where(lab) == AT_A


def test_hurricane_dry_run_on_an_async_volume_plans_with_the_mode_it_would_set(
    lab: Path,
) -> None:
    """A dry run's switch-to-sync changes nothing, but the move after it must be planned
    as the real run will plan it: with appdata sync (web live-migrated), not with
    today's async (web moved cold). Its steps are still checked against the cluster."""
    text = lab.read_text()
    assert "mode: sync             #" in text
    lab.write_text(text.replace("mode: sync             #", "mode: async            #", 1))
    result = drorch("migrate", "--to", "B", "-c", str(lab), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would set appdata to sync" in result.output
    assert "planned with appdata sync: the mode an earlier step of this dry run would set" in (
        result.output
    )
    assert "would live-migrate web A -> B" in result.output
    assert "not checked: planned from" not in result.output  # checked, only the mode supposed
    assert where(lab) == AT_A


def _run_nowhere(config: Path) -> None:
    """What a self-fence at A leaves when the partition heals before B takes over: both
    copies secondary and in sync, no guest running."""
    cluster = load_cluster(config)
    env = build_environment(cluster, base_dir=config.parent)
    try:
        for vm in cluster.vms:
            env.hypervisor("A").destroy(vm.domain)
        for (_, node), rep in sorted(env.replicators.items()):
            if node.startswith("a"):
                rep.demote()
    finally:
        env.close()


def test_cluster_start_starts_a_cluster_that_runs_nowhere(lab: Path) -> None:
    where(lab)
    _run_nowhere(lab)
    assert where(lab) == {"vms": {"db": [], "web": []}, "primary": {"appdata": [], "dbdata": []}}
    assert drorch("status", "-c", str(lab)).exit_code == 2  # an outage is broken
    shown = drorch("plan", "start", "--to", "A", "-c", str(lab))
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith("start B -> A: ")
    assert "runnable" in shown.output and "db runs nowhere: start it at A" in shown.output
    # both copies are in sync: starting at B is as good (the agents prefer the primary site)
    assert drorch("plan", "start", "--to", "B", "-c", str(lab)).exit_code == 0
    done = drorch("start", "-c", str(lab), "--yes")  # at the configured primary site, A
    assert done.exit_code == 0, done.output
    assert where(lab) == AT_A
    assert drorch("status", "-c", str(lab)).exit_code == 0
    again = drorch("plan", "start", "--to", "B", "-c", str(lab))
    assert again.exit_code == 1
    assert "[volume-primary, not forceable]" in again.output
