"""Domain XML for the other site, end to end on the simulated lab: saved per site by
`vm sync-xml` and by migrations, shown by `vm dumpxml`, judged by `status`, used by the
failover plan's define-vm step and by `vm failover-start`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner, Result

from drorch.cli.main import cli
from drorch.virt.sim_store import SimStateStore

from .conftest import open_handover


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def codes(config: Path) -> tuple[int, set[str]]:
    r = run("status", "-c", str(config), "--format", "json")
    return r.exit_code, {p["code"] for p in json.loads(r.stdout)["problems"]}


def test_sync_dumpxml_and_stale_status(lab_config: Path, tmp_path: Path) -> None:
    c = str(lab_config)
    unsaved = run("vm", "dumpxml", "web", "--site", "B", "-c", c)
    assert unsaved.exit_code == 1
    assert "no XML of web is saved for B: `drorch vm sync-xml web`" in unsaved.stderr
    assert codes(lab_config) == (0, set())  # the config's `xml:` covers both sites
    synced = run("vm", "sync-xml", "-c", c, "--format", "json")
    assert synced.exit_code == 0, synced.output
    rows = json.loads(synced.stdout)
    assert {(r["vm"], r["site"], r["from"]) for r in rows} == {
        ("db", "A", "A"), ("db", "B", "A"), ("web", "A", "A"), ("web", "B", "A"),
    }  # fmt: skip
    at_b = run("vm", "dumpxml", "web", "--site", "B", "-c", c)
    assert at_b.exit_code == 0
    assert "appdata-b1.img" in at_b.stdout and "br-lan-b" in at_b.stdout
    assert "appdata-a1.img" not in at_b.stdout and re.search(r'<drorch:site name="B"', at_b.stdout)
    meta = json.loads(
        run("vm", "dumpxml", "web", "--site", "B", "-c", c, "--format", "json").stdout
    )
    assert meta["from_site"] == "A" and meta["path"].endswith("/xml/hq-dr/web/B.xml")
    assert (
        "vda: .drorch-state/disks/appdata-a1.img -> .drorch-state/disks/appdata-b1.img"
        in (meta["changes"])
    )
    live = run("vm", "dumpxml", "web", "--site", "A", "-c", c, "--live")
    assert "appdata-a1.img" in live.stdout
    # the definition at A changes after the save: status says the copy is older
    with SimStateStore(tmp_path / ".drorch-state", "A").update() as records:
        records["drorch-web"]["xml"] = records["drorch-web"]["xml"].replace("128", "256")
    code, found = codes(lab_config)
    assert (code, found) == (1, {"saved-xml-stale"})
    text = run("status", "-c", c)
    assert "the domain XML saved for web (from A) is older than the definition running now" in (
        text.stdout
    )
    assert "the definition at A differs from the copy saved" in text.stdout
    assert run("vm", "sync-xml", "web", "-c", c).exit_code == 0
    assert codes(lab_config) == (0, set())


def test_migration_saves_the_xml_where_it_lands(lab_config: Path) -> None:
    c = str(lab_config)
    open_handover(lab_config, "appdata")
    moved = run("vm", "migrate", "web", "--to", "B", "-c", c, "--yes")
    assert moved.exit_code == 0, moved.output
    meta = json.loads(
        run("vm", "dumpxml", "web", "--site", "A", "-c", c, "--format", "json").stdout
    )
    assert meta["from_site"] == "B"  # saved from B, mapped back for A
    assert "appdata-a1.img" in meta["xml"] and "br-lan-a" in meta["xml"]


def test_the_simulator_never_misses_xml(lab_config: Path) -> None:
    """The sim makes a definition from the model (a disk per volume on the site's replica,
    the site's network), so a lab without `xml:` is healthy without saved copies, and a
    cold start at B without one is defined from the model."""
    lab_config.write_text(
        "".join(ln for ln in lab_config.read_text().splitlines(True) if "xml: xml/" not in ln)
    )
    assert codes(lab_config) == (0, set())
    c = str(lab_config)
    assert run("sim", "power-off", "A", "-c", c).exit_code == 0
    dry = run("vm", "failover-start", "db", "--to", "B", "-c", c, "--dry-run", "--format", "json")
    assert json.loads(dry.stdout)["xml_from"] == "the model (simulated)"


def test_failover_uses_the_copy_saved_for_the_site(lab_config: Path) -> None:
    c = str(lab_config)
    assert run("vm", "sync-xml", "-c", c).exit_code == 0
    assert run("sim", "power-off", "A", "-c", c).exit_code == 0
    plan = json.loads(run("plan", "failover", "--to", "B", "-c", c, "--format", "json").stdout)
    define = {s["target"]: s for s in plan["steps"] if s["action"] == "define-vm"}
    assert define["db"]["params"]["xml_source"] == "saved"
    assert define["db"]["params"]["xml_path"].endswith("/xml/hq-dr/db/B.xml")
    assert "define it from the XML saved for B from A's definition" in define["db"]["reason"]
    dry = run("vm", "failover-start", "db", "--to", "B", "-c", c, "--dry-run", "--format", "json")
    assert json.loads(dry.stdout)["xml_from"].endswith("/xml/hq-dr/db/B.xml (saved from A)")
