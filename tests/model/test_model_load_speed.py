"""The bench's big cluster (tests/bench/bench_config.py) stays a valid config, so the
figures can always be taken (a new rule, port-conflict, once made it fail before it
measured anything), and loading stays linear in the file's size: CPU time per byte of a
10x file within 2.5x of the small one's (the bench's own target is 1.5x; a quadratic
loader is 10x)."""

from __future__ import annotations

import time

import pytest

from drorch.model.loader import parse_cluster_text
from tests.bench.bench_config import SERVICES, VMS, VOLUMES, big_config


def cpu_seconds(text: str, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time()
        parse_cluster_text(text, "big.yaml")
        best = min(best, time.thread_time() - started)
    return best


def test_the_bench_cluster_is_valid() -> None:
    cluster, warnings = parse_cluster_text(big_config(), "big.yaml")
    assert (len(cluster.vms), len(cluster.services), len(cluster.volumes)) == (
        VMS, SERVICES, VOLUMES,
    )  # fmt: skip
    assert warnings == []


@pytest.mark.slow
def test_loading_is_linear_in_the_file() -> None:
    small = big_config()
    large = big_config(extra_services=10 * (VMS + SERVICES + VOLUMES))
    per_byte_small = cpu_seconds(small, 5) / len(small)
    per_byte_large = cpu_seconds(large, 2) / len(large)
    assert per_byte_large / per_byte_small <= 2.5
