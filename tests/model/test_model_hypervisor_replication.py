"""`hypervisor.replication: sim|real` and `{site}` in the witness's cert/key paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from drorch.envbuild import open_volume_replicator
from drorch.environment import Environment
from drorch.model.loader import parse_cluster_text
from drorch.model.reports import ConfigError

LAB = Path(__file__).resolve().parents[2] / "lab" / "sim.yaml"


def _with(replication: str | None, witness_extra: str = "") -> str:
    text = LAB.read_text()
    if replication is not None:
        text = text.replace("  bandwidth_mibps: 1000\n",
                            f"  bandwidth_mibps: 1000\n  replication: {replication}\n")  # fmt: skip
    return text.replace("  fingerprint:", f"{witness_extra}  fingerprint:", 1)


@pytest.mark.parametrize(
    ("replication", "cls"),
    [(None, "SimReplicator"), ("sim", "SimReplicator"), ("real", "PyreplReplicator")],
)
def test_sim_hypervisor_with_real_volumes(
    replication: str | None, cls: str, tmp_path: Path
) -> None:
    cluster, _ = parse_cluster_text(_with(replication), "sim.yaml")
    volume = cluster.volume("appdata")
    _, node = cluster.node("a1")
    rep = open_volume_replicator(cluster, volume, node, Environment(base_dir=tmp_path))
    assert type(rep).__name__ == cls


def test_unknown_replication_value_is_located() -> None:
    with pytest.raises(ConfigError) as info:
        parse_cluster_text(_with("maybe"), "sim.yaml")
    text = "\n".join(str(r) for r in info.value.reports)
    assert "sim.yaml:" in text and "replication" in text and "maybe" in text


def test_site_placeholder_in_witness_cert_paths() -> None:
    extra = "  cert: certs/hq-{site}.crt\n  key: certs/hq-{site}.key\n"
    cluster, _ = parse_cluster_text(_with(None, extra), "sim.yaml")
    witness = cluster.witness
    assert witness is not None
    assert witness.cert_for("A") == "certs/hq-A.crt"
    assert witness.key_for("B") == "certs/hq-B.key"
