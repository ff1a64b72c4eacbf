"""`drorch vm` end to end on the simulated hypervisor (real YAML loading, real state files)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from drorch.cli.main import cli

CONFIG = """\
cluster: t
primary_site: A
sites:
  A:
    nodes: [{name: a1}]
  B:
    nodes: [{name: b1}]
vms:
  - name: web
    memory: 128MiB
  - name: hot                 # dirties memory faster than the 1000 MiB/s link
    domain: hot-dom
    memory: 4GiB
    dirty_rate_mibps: 3000
  - name: db
    migratable: false
migration:
  deadline: 10m
hypervisor:
  driver: sim
  state_dir: state
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(CONFIG)
    return path


def drorch(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)


def states(config: Path) -> dict[str, dict[str, Any]]:
    result = drorch("vm", "list", "-c", str(config), "--format", "json")
    assert result.exit_code == 0, result.output
    return {row["vm"]: row for row in json.loads(result.stdout)}


def test_virt_cli_list_formats(config: Path) -> None:
    table = drorch("vm", "list", "-c", str(config))
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["VM", "DOMAIN", "A", "B", "RUNNING_AT", "MIGRATABLE", "MEMORY_MIB"]
    assert lines[2].split() == ["hot", "hot-dom", "running", "undefined", "A", "yes", "4096"]
    rows = states(config)
    assert rows["db"]["migratable"] is False and rows["web"]["running_at"] == "A"
    as_yaml = drorch("vm", "list", "-c", str(config), "--format", "yaml")
    assert "domain: hot-dom" in as_yaml.stdout


def test_virt_cli_migrate_with_progress_and_report(config: Path) -> None:
    result = drorch(
        "vm", "migrate", "web", "--to", "B", "-c", str(config), "--format", "json", "--yes"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["result"] == "migrated" and report["converged"] is True
    assert report["from"] == "A" and report["running_at"] == "B"
    assert report["downtime_ms"] <= 300
    assert report["reason"].startswith("converged after 1 iteration")
    assert "migrate web → B [" in result.stderr and "downtime" in result.stderr
    assert states(config)["web"]["running_at"] == "B"


def test_virt_cli_migrate_that_cannot_converge_keeps_vm_at_source(config: Path) -> None:
    args = ["vm", "migrate", "hot", "--to", "B", "-c", str(config), "--format", "json", "--yes"]
    result = drorch(*args, "--deadline", "6s", "--no-adaptive")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["result"] == "failed" and report["running_at"] == "A"
    assert report["reason"].startswith("migration did not converge before the 6s deadline")
    assert "aborted" in result.stderr and "100.0%" not in result.stderr
    row = states(config)["hot"]
    assert (row["A"], row["B"]) == ("running", "undefined")


def test_virt_cli_migrate_postcopy_before_deadline(config: Path) -> None:
    args = ["vm", "migrate", "hot", "--to", "B", "-c", str(config), "--format", "json", "--yes"]
    result = drorch(*args, "--deadline", "6s", "--allow-postcopy")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["postcopy"] is True and report["converged"] is False
    assert "switching to post-copy" in report["reason"]
    assert "post-copy" in result.stderr
    assert states(config)["hot"]["running_at"] == "B"


def test_virt_cli_migrate_dry_run_shows_effective_options(config: Path) -> None:
    result = drorch(
        "vm", "migrate", "web", "--to", "B", "-c", str(config), "--dry-run",
        "--max-downtime", "500ms", "--bandwidth", "200", "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["from"] == "A" and plan["max_downtime_ms"] == 500
    assert plan["bandwidth_mibps"] == 200 and plan["deadline_seconds"] == 600
    assert states(config)["web"]["running_at"] == "A"  # nothing moved


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["real", "dry-run"])
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["db", "--to", "B"], 3, "refused: db is not migratable (pinned to its site)"),
        (["web", "--to", "A"], 3, "refused: web already runs at site A"),
        (["web", "--to", "Q"], 2, "no site 'Q' (sites: A, B)"),
        (["nope", "--to", "B"], 2, "no VM 'nope' in cluster t (web, hot, db)"),
    ],
)
def test_virt_cli_migrate_refusals(
    config: Path, args: list[str], code: int, message: str, dry_run: list[str]
) -> None:
    """A dry run refuses what the real run refuses, with the same exit code."""
    result = drorch("vm", "migrate", *args, "-c", str(config), *dry_run)
    assert result.exit_code == code
    assert result.stderr.startswith(f"drorch: error: {message}"), result.stderr


def test_virt_cli_bad_config_is_reported_with_position(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.replace("memory: 128MiB", "memory: [oops"))
    result = drorch("vm", "list", "-c", str(bad))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{bad}:")
    assert not (tmp_path / "state").exists()


def test_virt_cli_bad_duration(config: Path) -> None:
    result = drorch("vm", "migrate", "web", "--to", "B", "-c", str(config), "--deadline", "soon")
    assert result.exit_code == 2
    assert "Invalid value for '--deadline'" in result.stderr


def test_virt_cli_cold_failover(config: Path, tmp_path: Path) -> None:
    c = str(config)
    busy = drorch("vm", "failover-start", "db", "--to", "B", "-c", c)
    assert busy.exit_code == 3
    assert "refused: vm-running-elsewhere: db is running at site A" in busy.stderr
    down = drorch("vm", "shutdown", "db", "--site", "A", "-c", c, "--yes")
    assert down.stdout.strip() == "db: shut down gracefully at site A (1.0 s)"
    result = drorch("vm", "failover-start", "db", "--to", "B", "-c", c, "--format", "json", "--yes")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["checked_sites"] == ["A"] and report["unreachable_sites"] == []
    assert report["xml_from"] == "site A"
    row = states(config)["db"]
    assert (row["A"], row["B"]) == ("shutoff", "running")
    again = drorch("vm", "start", "db", "--site", "A", "-c", c, "--yes")
    assert again.exit_code == 3 and "db is running at site B" in again.stderr
    dry = drorch("vm", "start", "db", "--site", "A", "-c", c, "--dry-run")
    assert (dry.exit_code, dry.stderr) == (again.exit_code, again.stderr)


def test_virt_cli_cold_failover_with_site_a_unreadable(config: Path, tmp_path: Path) -> None:
    c = str(config)
    xml = tmp_path / "db.xml"
    xml.write_text("<domain type='qemu'><name>db</name><memory unit='MiB'>64</memory></domain>")
    assert drorch("vm", "list", "-c", c).exit_code == 0
    (tmp_path / "state" / "sim-A.json").write_text("{torn")  # site A cannot be asked
    refused = drorch("vm", "failover-start", "db", "--to", "B", "-c", c, "--xml", str(xml))
    assert refused.exit_code == 3
    assert "refused: site-unconfirmed: cannot confirm db is stopped at site A" in refused.stderr
    forced = drorch(
        "vm", "failover-start", "db", "--to", "B", "-c", c, "--xml", str(xml), "--force",
        "--accept-data-loss", "--format", "json", "--yes",
    )  # fmt: skip
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["xml_from"] == str(xml)
    listing = json.loads(drorch("vm", "list", "-c", c, "--format", "json").stdout)
    db = next(r for r in listing if r["vm"] == "db")
    assert db["A"].startswith("unreachable:") and db["B"] == "running"


def test_virt_cli_destroy_asks_first(config: Path) -> None:
    c = str(config)
    declined = drorch("vm", "destroy", "web", "--site", "A", "-c", c, stdin="n\n")
    assert declined.exit_code == 1
    assert states(config)["web"]["A"] == "running"
    done = drorch("vm", "destroy", "web", "--site", "A", "-c", c, "--yes")
    assert done.exit_code == 0 and done.stdout.strip() == "web: powered off at site A"
    assert states(config)["web"]["A"] == "shutoff"
    asked = drorch("vm", "start", "web", "--site", "A", "-c", c, stdin="")
    assert asked.exit_code == 1 and "not confirmed (no terminal to ask on)" in asked.stderr
    assert states(config)["web"]["A"] == "shutoff"
    dry = drorch("vm", "start", "web", "--site", "A", "-c", c, "--dry-run")
    assert dry.stdout.strip() == "would start web at site A (now shutoff)"
    assert states(config)["web"]["A"] == "shutoff"
    started = drorch("vm", "start", "web", "--site", "A", "-c", c, "--yes")
    assert started.stdout.strip() == "web: running at site A"


@pytest.mark.parametrize("command", ["start", "shutdown", "destroy"])
def test_virt_cli_power_dry_runs_change_nothing(config: Path, command: str) -> None:
    c = str(config)
    before = states(config)["web"]
    dry = drorch("vm", command, "web", "--site", "A", "-c", c, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert states(config)["web"] == before
    unknown = drorch("vm", command, "web", "--site", "Z", "-c", c, "--dry-run")
    assert unknown.exit_code == 2
    assert unknown.stderr.startswith("drorch: error: no site 'Z' (sites: A, B)")


HEARTBEAT_CONFIG = CONFIG.replace(
    "  - name: web\n    memory: 128MiB\n",
    "  - name: web\n    memory: 128MiB\n    monitors:\n"
    "      - {name: web-beat, type: heartbeat, target: web-serial.log, interval: 5s,"
    " timeout: 2s, level: 3}\n",
)


class BeatingGuest:
    """Appends `HEARTBEAT n` to a log every 50 ms from a thread, like a console would."""

    def __init__(self, log: Path, first: int) -> None:
        import threading

        self.log, self.n = log, first
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for _ in range(400):  # at most 20 s
            if self.stop.wait(0.05):
                return
            with open(self.log, "a") as out:
                out.write(f"HEARTBEAT {self.n} uptime={self.n}.00\n")
            self.n += 1

    def __enter__(self) -> BeatingGuest:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


@pytest.mark.parametrize(
    ("first", "after", "code", "status", "reason"),
    [
        (1, None, 0, "healthy", "beats in the last 10 s, n "),
        (101, 100, 0, "healthy", "heartbeat rising"),
        (1, 100, 1, "failed", "heartbeat went back from 100 to 1"),
    ],
)
def test_virt_cli_heartbeat(
    tmp_path: Path, first: int, after: int | None, code: int, status: str, reason: str
) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text(HEARTBEAT_CONFIG)
    args = ["vm", "heartbeat", "web", "-c", str(config), "--timeout", "5s", "--format", "json"]
    if after is not None:
        args += ["--after", str(after)]
    with BeatingGuest(tmp_path / "web-serial.log", first):
        result = drorch(*args)
    assert result.exit_code == code, result.output
    verdict = json.loads(result.stdout)
    assert verdict["status"] == status and reason in verdict["reason"]
    assert verdict["monitor"] == "web-beat"


def test_virt_cli_heartbeat_silent_guest_and_missing_monitor(tmp_path: Path) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text(HEARTBEAT_CONFIG)
    silent = drorch("vm", "heartbeat", "web", "-c", str(config), "--timeout", "1s")
    assert silent.exit_code == 1
    assert "waiting for heartbeats: 0 of 3" in silent.stdout
    none = drorch("vm", "heartbeat", "hot", "-c", str(config))
    assert none.exit_code == 2 and "hot has no heartbeat monitor" in none.stderr


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_virt_cli_progress_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from drorch.cli.vm_migrate_cmd import MigrationBar
    from drorch.virt.base import MigrationProgress

    screen = Terminal()
    bar = MigrationBar("migrate hot → B")

    def sample(remaining: int, max_ms: int, auto: bool = False) -> MigrationProgress:
        return MigrationProgress(1.0, 100, remaining, 400, 30 * 2**20, 2, 900, max_ms, auto)

    monkeypatch.setattr("sys.stderr", screen)
    bar(sample(300, 300))
    bar(sample(200, 725))
    bar(sample(200, 725, auto=True))
    bar.finish(False, "did not converge after 60.0 s")
    frames = screen.getvalue().split("\r")[1:]
    assert len(frames) == 4  # every sample redraws the one line on a terminal
    assert "25.0%" in frames[0] and "downtime 900/300 ms" in frames[0]
    assert "auto-converge" in frames[2] and "dirty 30 MiB/s" in frames[2]
    assert frames[3] == (
        "migrate hot → B [###############---------------]  50.0% aborted: did not converge "
        "after 60.0 s\n"
    )
