"""Metrics: scraped from a real `drorch metrics serve` on loopback and from the
textfile, parsed with prometheus-client's own parser."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from drorch.cli.main import cli
from drorch.drill.history import History
from tests.drill.rows import add_run
from tests.drill.simlab import SimLab
from tests.ports import free_port


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_serve_is_scraped_and_parsed(tmp_path: Path) -> None:
    lab = SimLab(tmp_path)
    with History(lab.state) as h:
        add_run(h, 1000.0, 20.0, 0.25)
        add_run(h, 2000.0, 22.5, 0.3)
    port = free_port()
    env = {**os.environ, "DRORCH_STATE_DIR": str(lab.state)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "drorch", "metrics", "serve", "--listen", f"127.0.0.1:{port}",
         "-c", str(lab.config)], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        text = ""
        for _ in range(100):  # bounded: 10 s
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert text, "the metrics server never answered"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    got = samples(text)
    k = (("cluster", "hq-dr"), ("drill", "weekly-live"), ("kind", "live"))
    assert got[("drorch_drill_rto_seconds", k)] == 22.5
    assert got[("drorch_drill_rto_target_seconds", k)] == 300.0
    assert got[("drorch_drill_last_success", k)] == 1.0
    assert got[("drorch_drill_last_timestamp_seconds", k)] == 2000.0
    vm = (("cluster", "hq-dr"), ("drill", "weekly-live"), ("vm", "web"))
    assert got[("drorch_drill_downtime_seconds", vm)] == 0.3
    rep = (("cluster", "hq-dr"), ("node", "b1"), ("site", "B"), ("volume", "appdata"))
    assert got[("drorch_replication_in_sync", rep)] == 1.0
    assert got[("drorch_replication_out_of_sync_bytes", rep)] == 0.0
    assert got[("drorch_watchdog_slack_seconds", (("cluster", "hq-dr"),))] == 4.0  # 10-5-1
    assert got[("drorch_quorum_epoch", (("cluster", "hq-dr"),))] == 0.0


def test_textfile_is_written_atomically_and_parses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    with History(state) as h:
        add_run(h, 1000.0, 20.0, 0.25, result="rolled-back")
    monkeypatch.setenv("DRORCH_STATE_DIR", str(state))
    target = tmp_path / "textfile" / "drorch.prom"
    out = CliRunner().invoke(cli, ["metrics", "textfile", str(target)])
    assert out.exit_code == 0, out.output
    got = samples(target.read_text())
    k = (("cluster", "hq-dr"), ("drill", "weekly-live"), ("kind", "live"))
    assert got[("drorch_drill_last_success", k)] == 0.0
    assert got[("drorch_drill_last_result", (*k, ("result", "rolled-back")))] == 1.0
    assert ("drorch_drill_rto_seconds", k) not in got  # no successful run: no RTO
    assert [p.name for p in target.parent.iterdir()] == ["drorch.prom"]  # no temp left
