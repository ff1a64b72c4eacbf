"""tests/ports.py and drorch.testing.ports: reserved loopback ports never collide — within
a process, across concurrent processes, and with a port a daemon already holds."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from drorch.testing import ports as impl
from tests.ports import free_port, free_port_block, free_ports


@pytest.fixture
def small_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> range:
    """A private cursor and a pool of 40 ports, so a lap of the pool is quick to see."""
    monkeypatch.setenv("DRORCH_TEST_PORTS_CURSOR", str(tmp_path / "cursor"))
    base = free_port_block(40)  # reserved from the real pool: nobody else uses these now
    monkeypatch.setenv("DRORCH_TEST_PORTS", f"{base}-{base + 39}")
    return range(base, base + 40)


def test_default_pool_is_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    pool = impl.pool()
    assert pool.stop - 1 < low
    assert len(pool) == 12_000


def test_reservations_in_one_process_are_distinct_and_free() -> None:
    got = free_ports(30)
    assert len(set(got)) == 30
    lo, hi = impl.pool().start, impl.pool().stop
    assert all(lo <= p < hi for p in got)
    for port in got:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # really free


def test_a_block_is_consecutive_and_blocks_do_not_overlap() -> None:
    blocks = [free_port_block(3) for _ in range(10)]
    taken = [p + i for p in blocks for i in range(3)]
    assert len(set(taken)) == 30
    for base in blocks:
        with socket.socket() as a, socket.socket() as b, socket.socket() as c:
            a.bind(("127.0.0.1", base))
            b.bind(("127.0.0.1", base + 1))
            c.bind(("127.0.0.1", base + 2))


def test_a_port_in_use_is_skipped(small_pool: range) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", small_pool.start))
        holder.listen()
        impl._cursor_file().write_text(str(small_pool.start))
        assert free_port() == small_pool.start + 1
        impl._cursor_file().write_text(str(small_pool.start))
        assert free_port_block(2) == small_pool.start + 2  # start..start+1 is not free


def test_concurrent_processes_never_get_the_same_port(small_pool: range) -> None:
    """Four processes reserve 8 ports each at the same time from one 40-port pool: all 32
    distinct (without the shared cursor each would start anywhere and overlap)."""
    code = "from drorch.testing.ports import reserve_many; print(*reserve_many(8))"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    got: list[int] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        got += [int(p) for p in out.split()]
    assert len(got) == 32
    assert len(set(got)) == 32
    assert set(got) <= set(small_pool)


def test_a_port_comes_back_only_after_a_lap(small_pool: range) -> None:
    first = [free_port() for _ in range(40)]
    assert sorted(first) == list(small_pool)
    assert free_port() == first[0]


def test_a_full_pool_is_a_clear_error(small_pool: range) -> None:
    with pytest.raises(ValueError, match="span 41 outside 1-40"):
        free_port_block(41)
    holders = []
    try:
        for port in small_pool:
            s = socket.socket()
            s.bind(("127.0.0.1", port))
            holders.append(s)
        with pytest.raises(RuntimeError, match="no 1 consecutive free ports"):
            free_port()
    finally:
        for s in holders:
            s.close()


def test_bad_pool_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRORCH_TEST_PORTS", "80-90")
    with pytest.raises(ValueError, match="DRORCH_TEST_PORTS"):
        impl.pool()


def test_command_line_prints_bases(small_pool: range, capsys: pytest.CaptureFixture[str]) -> None:
    impl.main(["3", "--span", "2"])
    bases = [int(p) for p in capsys.readouterr().out.split()]
    assert len(bases) == 3
    assert len({b + i for b in bases for i in range(2)}) == 6
    with pytest.raises(SystemExit) as stop:
        impl.main(["1", "--span", "99"])
    assert stop.value.code == 2
    assert "drorch: error:" in capsys.readouterr().err


def test_the_cursor_is_machine_wide_whatever_tmpdir_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DRORCH_TEST_PORTS_CURSOR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(impl.tempfile, "tempdir", None)  # forget the cached folder
    assert impl._cursor_file() == Path("/tmp/drorch-test-ports.cursor")
