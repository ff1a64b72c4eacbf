"""`drorch repl resolve -c CONFIG --volume VOL --discard SITE`: split-brain resolution by
site, for any driver.

The pyrepl cases drive a real split brain: two `drorch repl serve` daemons started from a
cluster config by the config-driven driver, both promoted and written to (over their NBD
exports) while disconnected, then reconnected until both refuse. The resolution runs
through the CLI and is checked on the backing files. The same command on the simulated
lab (sim replicator) and the decision over the emulated DRBD show the driver
independence; a table checks the pure decision and its reasons.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from drorch.cli.main import cli
from drorch.model.loader import load_cluster
from drorch.replication.base import (
    ConnState,
    DiskState,
    Replicator,
    Role,
    SplitBrain,
)
from drorch.replication.node_status import volume_environment, volume_replicator
from drorch.testing.contract_replicator import synced
from tests.ports import free_port_block
from tests.pyrepl.conftest import wait_until
from tests.pyrepl.nbd_client import NbdClient

REGION = 64 * 1024
IMAGES = {"a1": "a.img", "b1": "b.img"}  # the backing files, relative to the config
COMMON, A_ONLY, B_ONLY = b"common-data!" * 8, b"written-at-A" * 8, b"written-at-B" * 8

CONFIG = """\
cluster: resolve-test
primary_site: A
sites:
  A:
    nodes:
      - name: a1
        address: local
  B:
    nodes:
      - name: b1
        address: local
volumes:
  - name: vol
    driver: pyrepl
    mode: sync
    fencing: dont-care  # these tests make a split brain on purpose
    size: 4MiB
    port: {port}
    paths:
      a1: a.img
      b1: b.img
    pyrepl:
      region_size: 64KiB
      nbd_port: {nbd_port}
hypervisor:
  driver: libvirt          # not sim: the volume's own driver, pyrepl
"""


def resolve(config: Path, *args: str, yes: bool = True) -> Result:
    argv = ["repl", "resolve", "-c", str(config), *args, *(["--yes"] if yes else [])]
    return CliRunner().invoke(cli, argv, catch_exceptions=False)


# ---------------------------------------------------------------------- the real pyrepl lab
@dataclass
class Lab:
    """Two config-driven pyrepl daemons of volume `vol`: a1 at site A, b1 at site B."""

    config: Path
    a: Replicator
    b: Replicator

    def write(self, rep: Replicator, offset: int, data: bytes) -> None:
        uri = rep.status().nbd
        assert uri is not None
        host, port = uri.removeprefix("nbd://").split("/")[0].rsplit(":", 1)
        with NbdClient(host, int(port), "vol") as client:
            client.write(offset, data, fua=True)

    def image(self, node: str) -> bytes:
        return (self.config.parent / IMAGES[node]).read_bytes()

    def snapshot(self) -> dict[str, Any]:
        """Everything a refused resolve must leave alone."""
        out: dict[str, Any] = {}
        for node, rep in (("a1", self.a), ("b1", self.b)):
            st = rep.status()
            out[node] = (
                st.role,
                st.disk,
                st.connection,
                dict(st.generation),
                st.out_of_sync_bytes,
                st.extra.get("split_brain"),
                hashlib.sha256(self.image(node)).hexdigest(),
            )
        return out

    def split_brain(self) -> None:
        """From a connected pair (a1 primary): both sides change while apart, then
        reconnecting is refused on both sides (StandAlone, split brain)."""
        self.a.disconnect()
        self.b.disconnect()
        self.write(self.a, REGION, A_ONLY)
        self.b.promote()  # by hand, no quorum epoch: nothing fences a1
        self.write(self.b, REGION, B_ONLY)  # the same region, other data
        self.write(self.b, 2 * REGION, B_ONLY)  # a region a1 never wrote
        self.b.demote()  # (two primaries are refused before their histories are compared)
        self.a.connect()
        with pytest.raises(SplitBrain):
            self.b.connect()
        wait_until(
            "both sides StandAlone in split brain",
            lambda: all(
                st.connection is ConnState.STANDALONE and st.extra.get("split_brain")
                for st in (self.a.status(), self.b.status())
            ),
        )


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def start_lab(root: Path) -> Iterator[Lab]:
    config = root / "cluster.yaml"
    config.write_text(CONFIG.format(port=free_port_block(2), nbd_port=free_port_block(2)))
    cluster = load_cluster(config)
    volume = cluster.volume("vol")
    env = volume_environment(cluster, volume, root)
    a = volume_replicator(cluster, volume, cluster.node("a1")[1], env)
    b = volume_replicator(cluster, volume, cluster.node("b1")[1], env)
    pids: list[int] = []
    try:
        for rep in (a, b):
            rep.up()
            pids.append(int(rep.status().extra["pid"]))
        wait_until("connected", lambda: a.status().connection is ConnState.CONNECTED)
        a.promote(force=True, accept_data_loss=True)  # day 0: a1's disk is the source
        wait_until("initial sync", lambda: synced(a) and synced(b))
        lab = Lab(config, a, b)
        lab.write(a, 0, COMMON)
        yield lab
    finally:
        _kill(pids)
        env.close()


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A split brain shared by the refusal tests (none of them changes anything)."""
    for lab in start_lab(tmp_path_factory.mktemp("split")):
        lab.split_brain()
        yield lab


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield from start_lab(tmp_path)


def test_resolve_by_site_discards_the_victims_changes(lab: Lab) -> None:
    lab.split_brain()
    before_b = lab.b.status()
    assert before_b.extra["split_brain"]["local"] != before_b.extra["split_brain"]["peer"]

    result = resolve(lab.config, "--volume", "vol", "--discard", "B", "--accept-data-loss")

    assert result.exit_code == 0, result.output + result.stderr
    assert "warning: data-loss: resolving discards vol's changes at site B on b1" in result.stderr
    assert "resolving: vol: split brain between b1 (site B) and a1 (site A)" in result.stderr
    assert "resync vol on b1" in result.stderr  # the progress line
    assert "result: resolved: both sides Connected and UpToDate" in result.stdout
    a, b = lab.a.status(), lab.b.status()
    assert (a.role, b.role) == (Role.PRIMARY, Role.SECONDARY)  # the survivor stays primary
    assert a.connection is b.connection is ConnState.CONNECTED
    assert a.disk is b.disk is DiskState.UP_TO_DATE
    assert a.generation["current"] == b.generation["current"]
    assert not b.extra["split_brain"] and not a.extra["split_brain"]
    image_a, image_b = lab.image("a1"), lab.image("b1")
    assert image_a == image_b  # data identical, byte for byte
    assert image_b[: len(COMMON)] == COMMON  # written while connected: kept
    assert image_b[REGION : REGION + len(A_ONLY)] == A_ONLY  # the survivor's change: kept
    assert image_b[2 * REGION : 2 * REGION + len(B_ONLY)] == bytes(len(B_ONLY))  # gone
    assert B_ONLY not in image_b

    # resolving again is refused: nothing is in split brain any more
    again = resolve(lab.config, "--volume", "vol", "--discard", "B", "--accept-data-loss")
    assert again.exit_code == 1
    assert (
        "error: not-split-brain: vol is Connected on b1 (site B), not StandAlone after a split "
        "brain: the sides are connected; there is nothing to resolve"
    ) in again.stderr

    # a plain disconnect is not a split brain either: connect fixes it
    lab.b.disconnect()
    # a1 notices the disconnect on its own time: take the snapshot once it has
    wait_until("a1 sees b1 go", lambda: lab.a.status().connection is not ConnState.CONNECTED)
    before = lab.snapshot()
    plain = resolve(lab.config, "--volume", "vol", "--discard", "B", "--accept-data-loss")
    assert plain.exit_code == 1
    assert "error: not-split-brain: vol is StandAlone on b1 (site B) but not in split brain" in (
        plain.stderr
    )
    assert "a plain disconnect is fixed by connect, not resolve" in plain.stderr
    assert lab.snapshot() == before


def test_victim_primary_is_refused(lab: Lab) -> None:
    lab.split_brain()
    lab.b.promote()  # e.g. to look at its data: its VM may be running on it again
    before = lab.snapshot()
    result = resolve(lab.config, "--volume", "vol", "--discard", "B", "--accept-data-loss")
    assert result.exit_code == 1
    assert (
        "error: victim-primary: vol is primary on b1 (site B): stop whatever uses it there "
        "(VM, filesystem) and demote it first; resolve never demotes a primary"
    ) in result.stderr
    assert lab.snapshot() == before
    assert lab.b.status().role is Role.PRIMARY


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(
            ["--volume", "vol", "--discard", "B"],
            3,
            "error: data-loss: resolving discards vol's changes at site B on b1 (current=",
            id="data-loss-not-accepted",
        ),
        pytest.param(
            ["--volume", "vol", "--discard", "C", "--accept-data-loss"],
            2,
            "error: no site 'C' in cluster resolve-test (sites: A, B)",
            id="unknown-site",
        ),
        pytest.param(
            ["--volume", "vol", "--discard", "b1", "--accept-data-loss"],
            2,
            "error: no site 'b1' in cluster resolve-test (sites: A, B); b1 is a node: "
            "--discard takes its site, B",
            id="node-for-site",
        ),
        pytest.param(
            ["--volume", "vl", "--discard", "B", "--accept-data-loss"],
            2,
            "error: no volume 'vl' in cluster resolve-test (volumes: vol); did you mean 'vol'?",
            id="unknown-volume",
        ),
        pytest.param(
            ["--volume", "vol", "--discard", "B", "--accept-data-loss", "--dry-run"],
            0,
            "warning: data-loss: resolving discards vol's changes at site B on b1",
            id="dry-run",
        ),
    ],
)
def test_refusals_change_nothing(split: Lab, args: list[str], code: int, message: str) -> None:
    before = split.snapshot()
    result = resolve(split.config, *args)
    assert result.exit_code == code, result.output + result.stderr
    assert message in result.stderr
    assert split.snapshot() == before


def test_refusal_shows_what_would_be_discarded_as_json(split: Lab) -> None:
    before = split.snapshot()
    result = resolve(split.config, "--volume", "vol", "--discard", "B", "--format", "json")
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    b, a = split.b.status(), split.a.status()
    assert doc["would_run"] is False
    assert [p["code"] for p in doc["problems"]] == ["data-loss"]
    assert doc["would_discard"]["discarded"] == {
        "site": "B",
        "node": "b1",
        "generation": dict(b.generation),
        "out_of_sync_bytes": b.out_of_sync_bytes,
    }
    assert doc["would_discard"]["kept"]["generation"] == dict(a.generation)
    assert b.out_of_sync_bytes >= 2 * REGION  # the two regions b1 wrote while apart
    assert split.snapshot() == before


def test_config_errors_keep_file_line_col(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.format(port=7700, nbd_port=7710).replace("mode: sync", "mode: sideways"))
    result = resolve(bad, "--volume", "vol", "--discard", "B", "--accept-data-loss")
    assert result.exit_code == 2
    line = next(i for i, ln in enumerate(bad.read_text().splitlines(), 1) if "sideways" in ln)
    assert result.stderr.startswith(f"{bad}:{line}:11: ")


def test_the_two_forms_do_not_mix(tmp_path: Path) -> None:
    runner = CliRunner()
    mixed = ["repl", "resolve", "--control", "x.ctl", "--discard-local", "-c", "c.yaml"]
    result = runner.invoke(cli, mixed)
    assert result.exit_code == 2
    assert "are two forms of resolve; give one" in result.stderr
    result = runner.invoke(cli, ["repl", "resolve", "-c", "c.yaml", "--volume", "vol"])
    assert result.exit_code == 2
    assert "give -c CONFIG --volume VOL --discard SITE" in result.stderr


# ---------------------------------------------------------------------- other drivers
def test_sim_lab_resolves_by_site(tmp_path: Path, repo_root: Path) -> None:
    """The simulated lab (`hypervisor.driver: sim`): the same command, the sim replicator."""
    from drorch.envbuild import build_environment

    lab_config = tmp_path / "sim.yaml"  # a private copy: its sim state lands in tmp_path
    shutil.copy(repo_root / "lab" / "sim.yaml", lab_config)
    cluster = load_cluster(lab_config)
    env = build_environment(cluster, lab_config.parent)
    a1, b1 = env.replicators[("appdata", "a1")], env.replicators[("appdata", "b1")]
    a1.disconnect()
    b1.disconnect()
    a1.write(4096)  # type: ignore[attr-defined]
    b1.promote()
    b1.write(8192)  # type: ignore[attr-defined]
    b1.demote()
    a1.connect()
    with pytest.raises(SplitBrain):
        b1.connect()

    refused = resolve(lab_config, "--volume", "appdata", "--discard", "A", "--accept-data-loss")
    assert refused.exit_code == 1
    assert "error: victim-primary: appdata is primary on a1 (site A)" in refused.stderr

    args = ("--volume", "appdata", "--discard", "B", "--accept-data-loss")
    unasked = resolve(lab_config, *args, yes=False)  # no terminal, no --yes: nothing done
    assert unasked.exit_code == 1, unasked.output
    assert "not confirmed (no terminal to ask on): Discard the changes to appdata at B" in (
        unasked.stderr
    )
    assert b1.status().connection is not ConnState.CONNECTED
    result = resolve(lab_config, *args)
    assert result.exit_code == 0, result.output + result.stderr
    assert "the driver detected split brain at the last handshake" in result.stderr
    a, b = a1.status(), b1.status()
    assert a.connection is b.connection is ConnState.CONNECTED
    assert a.generation == b.generation
    assert (a.role, b.role) == (Role.PRIMARY, Role.SECONDARY)
    env.close()
