"""Re-promoting the demoted site in a rollback, on REAL pyrepl volumes (`drorch repl
serve` daemons on loopback) and a REAL witness (QuorumServer, mutual TLS): the hurricane
migration demotes dbdata at A, then its promotion at B fails. The rollback's promotion of
A must not reuse A's epoch: pyrepl refuses a new primary at an epoch it has seen (equal
too: epochs are fencing tokens). It takes a fresh grant from the witness at A (release and
ask again, A stays the holder) and promotes with that, so dbdata ends primary at A again,
db runs there, and the witness's epoch and the replicas' agree."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from drorch.replication.pyrepl.driver import PyreplReplicator
from tests.quorum.conftest import InProcessWitness, Pki, make_config, pki
from tests.runbook.faults import HURRICANE, Injector, run
from tests.runbook.pyrepl_lab import in_sync, pyrepl_edits, real_time_lab, running_volumes
from tests.runbook.steps_lab import SimLab

__all__ = ["make_config", "pki"]  # fixtures


@pytest.fixture
def witness(pki: Pki, make_config) -> Iterator[InProcessWitness]:  # type: ignore[no-untyped-def]
    path, port = make_config(lease_ms=120_000)  # outlasts the test without an agent renewing
    w = InProcessWitness(pki, port, path, init=True)
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture
def lab(tmp_path: Path, pki: Pki, witness: InProcessWitness) -> Iterator[SimLab]:
    certs = tmp_path / "certs"
    certs.mkdir()
    for site in ("A", "B"):
        shutil.copy(pki.cert(f"c1-{site.lower()}"), certs / f"c1-{site}.crt")
        shutil.copy(pki.key(f"c1-{site.lower()}"), certs / f"c1-{site}.key")
    text = (Path(__file__).resolve().parents[2] / "lab" / "sim.yaml").read_text()
    address = next(ln for ln in text.splitlines() if ln.startswith("  address: "))
    finger = next(ln for ln in text.splitlines() if ln.startswith("  fingerprint: "))
    edits = {
        **pyrepl_edits(),
        "cluster: hq-dr": "cluster: c1",
        address: f"  address: {witness.server}",
        finger: f'  fingerprint: "{pki.fingerprints["server"]}"\n'
        f"  cert: {certs}/c1-{{site}}.crt\n  key: {certs}/c1-{{site}}.key",
    }
    lab = real_time_lab(tmp_path, edits)
    with running_volumes(lab):
        yield lab


def _epochs(lab: SimLab, volume: str) -> dict[str, tuple[str, int]]:
    out = {}
    for node in ("a1", "b1"):
        st = lab.env.replicators[(volume, node)].status()
        out[node] = (st.role.value, st.epoch)
    return out


@pytest.mark.parametrize(
    ("fail", "regrants"),
    [
        ("move/07-promote-dbdata", 1),  # B never promoted: A's next grant is fresh
        ("move/10-migrate-live-web", 2),  # B took the witness's next epoch already
    ],
)
def test_rollback_re_promotes_a_with_a_fresh_witness_grant(
    lab: SimLab, fail: str, regrants: int
) -> None:
    granted = lab.run("quorum.acquire", site="A")  # A holds quorum, as its agent would
    in_sync(lab)  # day 0: A primary at the next epoch, B synced
    a_epoch = _epochs(lab, "dbdata")["a1"][1]
    assert granted.data["epoch"] == a_epoch == 1  # the grant and the replicas agree
    injector = Injector(0, key=fail)
    summary = run(lab, *HURRICANE, injector)
    log = "\n".join(lab.output.lines)
    assert injector.failed == fail, log
    assert summary.status == "rolled-back", log
    for volume in ("dbdata", "appdata"):
        roles = _epochs(lab, volume)
        assert roles["a1"][0] == "primary" and roles["b1"][0] == "secondary", (volume, log)
        rep = lab.env.replicators[(volume, "a1")]
        assert isinstance(rep, PyreplReplicator)
        assert not rep.two_primaries_allowed(), volume
    epoch = _epochs(lab, "dbdata")["a1"][1]
    assert epoch == a_epoch + regrants, log  # a new fencing token, above every one seen
    assert "witness grant renewed for a fresh epoch" in log
    view = lab.run("check.quorum", site="A")
    assert f"epoch {epoch}" in view.message, view.message  # A holds that very grant
    assert {k: v for k, v in lab.vms().items() if v == "running"} == {
        ("drorch-db", "A"): "running",
        ("drorch-web", "A"): "running",
    }
