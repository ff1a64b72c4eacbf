"""The WAN proxy on loopback with real sockets: delay, jitter, loss, partitions, and
settings changed while it runs."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from drorch.lab.wan import TCP_RTO_MIN, Impairment, WanLink, WanState, WanStateFile
from drorch.lab.wan_proxy import ProxyThread
from tests.lab_wan.conftest import Wan, free_port, round_trip

#: An unimpaired loopback round trip is well under 1 ms; 2 cores shared by many helpers
#: stretch it, so "not delayed" means a median under 30 ms (the delays tested are >= 60).
QUICK = 0.030


def quick(s: socket.socket) -> bool:
    times = sorted(round_trip(s) for _ in range(3))
    return times[1] < QUICK


def test_without_impairment_it_just_forwards(wan: Wan) -> None:
    with wan.connect() as s:
        assert quick(s)


def test_delay_costs_two_one_way_delays_per_round_trip(wan: Wan) -> None:
    wan.impair(delay=0.02)
    with wan.connect() as s:
        times = [round_trip(s) for _ in range(5)]
    assert min(times) >= 0.040
    assert sorted(times)[2] < 0.040 + QUICK  # and not much more (median)


def test_jitter_stays_inside_its_band(wan: Wan) -> None:
    wan.impair(delay=0.02, jitter=0.005)
    with wan.connect() as s:
        times = [round_trip(s) for _ in range(8)]
    assert min(times) >= 0.030


def test_settings_change_on_a_running_proxy_and_open_connection(wan: Wan) -> None:
    with wan.connect() as s:
        assert quick(s)
        wan.impair(delay=0.04)
        assert round_trip(s) >= 0.080
        wan.impair()
        assert quick(s)


def test_loss_in_stall_mode_delays_by_a_retransmission_timeout(wan: Wan) -> None:
    wan.impair(loss=1.0)
    with wan.connect() as s:
        assert round_trip(s) >= 2 * TCP_RTO_MIN  # lost both ways


def test_loss_in_reset_mode_resets_the_connection(wan: Wan) -> None:
    wan.impair(loss=1.0, loss_mode="reset")
    with wan.connect() as s:
        s.sendall(b"hello")
        with pytest.raises((ConnectionResetError, EOFError)):
            round_trip(s)


def test_partial_loss_hits_about_its_share(wan: Wan) -> None:
    wan.impair(loss=0.25)
    with wan.connect() as s:
        slow = sum(round_trip(s) >= TCP_RTO_MIN for _ in range(12))
    assert 1 <= slow <= 11  # P(0 of 12 slow) = 0.75^24 ~ 0.1%; seeded anyway


def test_drop_partition_holds_data_until_heal(wan: Wan) -> None:
    with wan.connect(timeout=0.5) as s:
        assert quick(s)
        wan.set(WanState((wan.link,)).partition("A-B", "drop"))
        s.sendall(b"ping")
        with pytest.raises(socket.timeout):
            s.recv(10)
        wan.set(WanState((wan.link,)))  # heal
        s.settimeout(2.0)
        assert s.recv(10) == b"ping"


def test_drop_partition_accepts_new_connections_but_never_answers(wan: Wan) -> None:
    wan.set(WanState((wan.link,)).partition("A-B", "drop"))
    with wan.connect(timeout=0.5) as s:
        s.sendall(b"ping")
        with pytest.raises(socket.timeout):
            s.recv(10)


def test_reset_partition_resets_open_and_new_connections(wan: Wan) -> None:
    s = wan.connect(timeout=2.0)
    assert quick(s)
    wan.set(WanState((wan.link,)).partition("A-B", "reset"))
    with pytest.raises((ConnectionResetError, EOFError, BrokenPipeError)):
        for _ in range(3):
            round_trip(s)
    s.close()
    # a new connection is reset at connect() (on loopback the proxy's RST can beat the
    # handshake's wake-up: CI saw it once) or at its first exchange: both are a reset
    with pytest.raises((ConnectionResetError, EOFError)), wan.connect(timeout=2.0) as t:
        round_trip(t)
    wan.set(WanState((wan.link,)))
    with wan.connect() as u:
        assert quick(u)


def test_a_dead_target_resets_the_client(wan: Wan) -> None:
    dead = wan.link.__class__("A-B:dead", "A-B", wan.link.listen, ("127.0.0.1", 1))
    wan.set(WanState((dead,)))
    # the proxy may reset the client before connect() returns (on loopback the RST can
    # beat the handshake's wake-up, as in CI) or at the first exchange: both are a reset
    with pytest.raises((ConnectionResetError, EOFError)), wan.connect() as s:
        round_trip(s)


def test_bulk_data_arrives_intact_under_jitter(wan: Wan) -> None:
    wan.impair(delay=0.005, jitter=0.005)
    payload = bytes(range(256)) * 4096  # 1 MiB
    with wan.connect() as s:
        assert round_trip(s, payload) < 5.0


def test_impairment_describes_itself() -> None:
    assert Impairment().describe() == "no impairment"
    assert Impairment(delay=0.02, jitter=0.002, loss=0.01).describe() == (
        "delay 20 ms one-way, jitter ±2 ms, loss 1% (stall)"
    )


def test_a_quick_second_write_is_applied_and_acknowledged(wan: Wan) -> None:
    """Two versions written back to back (same mtime tick, maybe a reused inode): the
    proxy must still see the second one; `applied()` names the version in effect. This
    was the `lab wan --delay` race in CI (the first connection ran unimpaired)."""
    first = wan.file.write(WanState((wan.link,), Impairment(delay=0.001)))
    second = wan.file.write(WanState((wan.link,), Impairment(delay=0.03)))
    assert first != second
    for _ in range(1000):
        if wan.file.applied() == second:
            break
        time.sleep(0.01)
    assert wan.file.applied() == second
    with wan.connect() as s:
        assert min(round_trip(s) for _ in range(3)) >= 0.06


def test_a_target_that_dies_resets_a_client_that_only_sends(tmp_path: Path) -> None:
    """The agents' membership dialer only sends. When the listening agent is killed, its
    kernel answers the next forwarded segment with a reset; the proxy must pass that on
    (as a direct TCP connection would), not keep reading the client's beats into a
    connection that ends nowhere. It did: the dialling site then never reconnected, and
    the restarted agent never heard from it again (the lab's failback self-fence)."""
    server = socket.create_server(("127.0.0.1", 0))
    state_file = WanStateFile(tmp_path / "wan.json")
    target = ("127.0.0.1", int(server.getsockname()[1]))
    link = WanLink("B->A:membership", "A-B", ("127.0.0.1", free_port()), target)
    state_file.write(WanState((link,)))
    with ProxyThread(state_file, seed=1), server:
        client = socket.create_connection(link.listen, timeout=2.0)
        with client:
            peer, _ = server.accept()
            client.sendall(b"beat")
            assert peer.recv(16) == b"beat"
            peer.close()  # the agent was killed: its kernel closes the socket
            deadline = time.monotonic() + 5.0
            with pytest.raises(OSError):  # BrokenPipe / ConnectionReset
                while time.monotonic() < deadline:
                    client.sendall(b"beat")
                    time.sleep(0.05)
            assert time.monotonic() < deadline, "the client's beats went nowhere for 5 s"
