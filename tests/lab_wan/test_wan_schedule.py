"""The WAN emulator's sans-I/O half: settings, state file, delivery schedule."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from drorch.lab.wan import (
    TCP_RTO_MIN,
    Impairment,
    Schedule,
    WanError,
    WanLink,
    WanState,
    WanStateFile,
    equivalent_distance_km,
    parse_percent,
)
from drorch.model.timing import fibre_round_trip


class FixedRandom(random.Random):
    """uniform() returns the low end + `u` of the range; random() returns `r`."""

    def __init__(self, u: float, r: float) -> None:
        super().__init__(0)
        self.u, self.r = u, r

    def uniform(self, a: float, b: float) -> float:
        return a + self.u * (b - a)

    def random(self) -> float:
        return self.r


def test_delay_is_added_to_every_chunk() -> None:
    s = Schedule(Impairment(delay=0.02), FixedRandom(0.5, 0.9))
    assert s.release(1.0) == pytest.approx(1.02)
    assert s.release(1.5) == pytest.approx(1.52)


def test_jitter_never_reorders_the_stream() -> None:
    imp = Impairment(delay=0.02, jitter=0.01)
    early = Schedule(imp, FixedRandom(1.0, 0.9)).release(0.0)  # +jitter
    assert early == pytest.approx(0.03)
    s = Schedule(imp, FixedRandom(1.0, 0.9))
    first = s.release(0.0)
    s.rng = FixedRandom(0.0, 0.9)  # the next chunk draws -jitter: 0.001 + 0.01 < 0.03
    assert s.release(0.001) == first


def test_a_lost_chunk_stalls_one_retransmission_timeout() -> None:
    s = Schedule(Impairment(delay=0.02, loss=0.01), FixedRandom(0.5, 0.005))
    assert s.release(0.0) == pytest.approx(0.02 + TCP_RTO_MIN)


def test_a_lost_chunk_resets_in_reset_mode() -> None:
    s = Schedule(Impairment(loss=0.01, loss_mode="reset"), FixedRandom(0.5, 0.005))
    assert s.release(0.0) is None
    kept = Schedule(Impairment(loss=0.01, loss_mode="reset"), FixedRandom(0.5, 0.5))
    assert kept.release(0.0) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delay": -1}, "negative"),
        ({"delay": 0.001, "jitter": 0.002}, "exceeds delay"),
        ({"loss": 1.5}, "between 0% and 100%"),
        ({"loss_mode": "drop"}, "loss mode"),
    ],
)
def test_bad_impairments_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(WanError, match=message):
        Impairment(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "fraction"), [("1%", 0.01), ("0.5%", 0.005), ("0", 0.0)])
def test_percentages(text: str, fraction: float) -> None:
    assert parse_percent(text) == pytest.approx(fraction)


@pytest.mark.parametrize("text", ["lots", "-1%", "101%"])
def test_bad_percentages(text: str) -> None:
    with pytest.raises(WanError):
        parse_percent(text)


def test_the_validator_predicts_the_same_round_trip() -> None:
    """distance_km written for a 20 ms one-way delay makes the validator's fibre round
    trip exactly the proxy's least round trip."""
    imp = Impairment(delay=0.02)
    assert fibre_round_trip(equivalent_distance_km(imp.delay)) == pytest.approx(imp.round_trip)


LINKS = (
    WanLink("A-B:repl", "A-B", ("127.0.0.1", 1), ("127.0.0.1", 2)),
    WanLink("A-witness", "A-witness", ("127.0.0.1", 3), ("127.0.0.1", 4)),
)


def test_state_round_trips_through_its_file(tmp_path: Path) -> None:
    f = WanStateFile(tmp_path / "wan.json")
    state = WanState(LINKS, Impairment(delay=0.02, jitter=0.002, loss=0.01)).partition("A-B")
    f.write(state)
    assert f.read() == state
    assert f.read().heal().partitions == {}


def test_partition_names_a_known_group() -> None:
    with pytest.raises(WanError, match=r"no WAN link group 'B-witness' \(groups: A-B, A-witness"):
        WanState(LINKS).partition("B-witness")


def test_unreadable_state_file(tmp_path: Path) -> None:
    path = tmp_path / "wan.json"
    path.write_text('{"links": [{"name": 1}]}')
    with pytest.raises(WanError, match="unreadable"):
        WanStateFile(path).read()
    with pytest.raises(WanError, match="no WAN state"):
        WanStateFile(tmp_path / "missing.json").read()
