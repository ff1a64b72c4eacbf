"""A short `drorch lab torture` (2 schedules) on its own lab: no split brain (role logs,
replica samples, hypervisor samples), no acknowledged counter value lost (sync), and
the lab healthy again after each schedule. Seed 504 plays: site A killed, B's disk slowed
3 s later, everything healed and restored 23 s after the kill (B's agent has taken over
by then); then a partition A-B for 11 s. `--down` brings the lab down after. About 2-3
minutes, one 128 MiB TCG guest."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from click.testing import CliRunner

from drorch.cli.main import cli
from drorch.lab.faults import namespace_pids
from drorch.lab.torture_plan import make_schedules

pytestmark = pytest.mark.lab

OPTS = ["--name", "pytest-torture", "--prefix", "tt", "--subnet", "10.77.72"]
SEED = 504


def test_two_schedules_no_split_brain_no_acknowledged_loss_and_recovered() -> None:
    kinds = {f.kind for s in make_schedules(SEED, 2) for f in s.faults}
    assert {"kill-site", "partition", "slow-disk"} <= kinds  # what the test is about
    try:
        args = ["lab", "torture", "--runs", "2", "--seed", str(SEED), "--format", "json"]
        result = CliRunner().invoke(cli, [*args, "--down", "--recovery-bound", "120", *OPTS])
        report = json.loads(result.stdout)
        totals = report["totals"]
        assert result.exit_code == 0, result.output
        assert totals["runs"] == 2 and totals["recovered"] == 2, result.output
        assert totals["split_brains"] == 0 and totals["acked_values_lost"] == 0, totals
        injected = [i for r in report["runs"] for i in r["injected"]]
        assert totals["faults_injected"] == len(injected) == 3
        assert all(i["ok"] for i in injected), injected
        for run in report["runs"]:
            assert run["verdict"] == "ok" and run["split_brain_findings"] == [], run
        print(json.dumps(totals, indent=1))
    finally:
        CliRunner().invoke(cli, ["lab", "down", *OPTS])
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not re.search(r"^tt", names, re.M), names
    for ns in ("ttsiteA", "ttsiteB", "ttwitness", "ttwan"):
        assert namespace_pids(ns) == []
