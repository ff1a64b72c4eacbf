"""A lost site is confirmed fenced by the witness's grant to the other site — only when it
does not answer, and only when it has a watchdog."""

from __future__ import annotations

from pathlib import Path

import pytest

from drorch.decide.fencing import fenced_by_witness
from drorch.decide.snapshot import WitnessView
from drorch.model.loader import parse_cluster_text

LAB = (Path(__file__).resolve().parents[2] / "lab" / "sim.yaml").read_text()


def _views(holder: str | None) -> dict[str, WitnessView]:
    return {s: WitnessView(s, holder, 5, s == holder, 10000) for s in ("A", "B")}


@pytest.mark.parametrize(
    ("holder", "a_answers", "watchdog", "fenced"),
    [
        ("B", False, "soft", True),  # the classic: A lost, B granted after switch_delay
        ("B", True, "soft", False),  # A answers: a person must look (quorum-elsewhere)
        ("B", False, "none", False),  # no watchdog: nothing made A stop writing
        (None, False, "soft", False),  # nobody granted yet: A's lease may still run
        ("A", False, "soft", False),  # A itself holds it
    ],
)
def test_fenced_by_witness(
    holder: str | None, a_answers: bool, watchdog: str, fenced: bool
) -> None:
    text = LAB.replace("watchdog: soft ", f"watchdog: {watchdog} ")
    if watchdog == "none":
        text = text.replace("  margin: 1s", "  margin: 1s").replace("failover: automatic", "")
    cluster, _ = parse_cluster_text(text, "sim.yaml")
    got, why = fenced_by_witness(cluster, _views(holder), {"A": a_answers, "B": True})
    assert got.get("A", False) is fenced
    if fenced:
        assert "the witness granted B the lease (epoch 5)" in why["A"]
        assert "soft watchdog (5s) has fired" in why["A"]
    assert "B" not in got


@pytest.mark.parametrize(
    ("holder", "idle", "fenced"),
    [
        ("B", True, True),  # A answers but its self-fence left nothing running
        ("B", False, False),  # A answers and runs something: quorum-elsewhere, a person
        (None, True, False),  # nobody granted: A idle now proves nothing about its lease
        ("A", True, False),  # A holds it
    ],
)
def test_an_answering_site_is_fenced_only_when_seen_to_run_nothing(
    holder: str | None, idle: bool, fenced: bool
) -> None:
    cluster, _ = parse_cluster_text(LAB, "sim.yaml")
    got, why = fenced_by_witness(
        cluster, _views(holder), {"A": True, "B": True}, {"A": idle, "B": False}
    )
    assert got.get("A", False) is fenced
    if fenced:
        assert why["A"].endswith(
            ", and A answers and runs nothing (no primary replica, no running guest): it has"
            " stopped writing"
        )
