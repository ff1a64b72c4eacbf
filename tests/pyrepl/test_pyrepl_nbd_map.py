"""Structured replies and base:allocation against real clients: nbdinfo --map,
qemu-img map, a sparse nbdcopy both ways; undefined flags; zero-length writes."""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path

import pytest

from drorch.replication.base import Role
from drorch.replication.pyrepl import nbd_meta as meta
from drorch.replication.pyrepl import nbd_proto as nbd
from tests.pyrepl.conftest import SIZE, Cluster, Side, connected, wait_until
from tests.pyrepl.nbd_client import NbdClient, NbdError

MiB = 1024 * 1024
HOLE = meta.STATE_HOLE | meta.STATE_ZERO


def uri(side: Side) -> str:
    host, port = side.nbd
    return f"nbd://{host}:{port}/vol"


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def write(side: Side, *commands: str) -> None:
    argv = ["qemu-io", "-f", "raw"]
    for c in commands:
        argv += ["-c", c]
    out = run(*argv, uri(side))
    assert out.returncode == 0, out.stderr


def nbdinfo_map(side: Side) -> list[tuple[int, int, int]]:
    out = run("nbdinfo", "--map", "--json", uri(side))
    assert out.returncode == 0, out.stderr
    return [(e["offset"], e["length"], e["type"]) for e in json.loads(out.stdout)]


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def test_nbdinfo_map_shows_the_holes_and_the_data(cluster: Cluster) -> None:
    a, b = cluster.pair()
    write(a, "write -P 0xab 1M 64k", "write -P 0x01 3M 4k")
    expected = [
        (0, MiB, HOLE),
        (MiB, 64 * 1024, 0),
        (MiB + 64 * 1024, 2 * MiB - 64 * 1024, HOLE),
        (3 * MiB, 4096, 0),
        (3 * MiB + 4096, SIZE - 3 * MiB - 4096, HOLE),
    ]
    assert nbdinfo_map(a) == expected
    wait_until("replicated", lambda: connected(a))
    assert nbdinfo_map(b) == expected  # the secondary's read-only export maps too
    info = json.loads(run("nbdinfo", "--json", uri(a)).stdout)["exports"][0]
    assert info["contexts"] == ["base:allocation"] and info["can_df"] is True


def test_qemu_img_map_reports_data_and_zero_extents(cluster: Cluster) -> None:
    a = cluster.start("a", Role.PRIMARY)
    write(a, "write -P 0x5a 2M 128k", "write -z -u 2M 64k")  # -u: punch a hole back
    out = run("qemu-img", "map", "--output=json", "-f", "raw", uri(a))
    assert out.returncode == 0, out.stderr
    extents = [(e["start"], e["length"], e["data"], e["zero"]) for e in json.loads(out.stdout)]
    assert extents == [
        (0, 2 * MiB + 64 * 1024, False, True),
        (2 * MiB + 64 * 1024, 64 * 1024, True, False),
        (2 * MiB + 128 * 1024, SIZE - 2 * MiB - 128 * 1024, False, True),
    ]


def test_sparse_nbdcopy_both_ways_keeps_the_holes(cluster: Cluster, tmp_path: Path) -> None:
    a, b = cluster.pair()
    src = tmp_path / "src.img"
    with open(src, "wb") as f:
        f.truncate(SIZE)
        f.seek(MiB + 512)
        f.write(b"first" * 100)
        f.seek(3 * MiB)
        f.write(b"\x77" * 8192)
    out = run("nbdcopy", str(src), uri(a))
    assert out.returncode == 0, out.stderr
    assert a.content() == src.read_bytes()
    assert allocated(a.backing) <= 64 * 1024  # the holes stayed holes on the export
    wait_until("replicated", lambda: connected(a))
    assert b.content() == src.read_bytes()
    dst = tmp_path / "dst.img"
    out = run("nbdcopy", uri(a), str(dst))
    assert out.returncode == 0, out.stderr
    assert dst.read_bytes() == src.read_bytes()
    assert allocated(dst) <= 64 * 1024  # nbdcopy skipped what the map called holes


def test_block_status_on_an_inconsistent_disk_is_eio(cluster: Cluster) -> None:
    b = cluster.start("b", Role.SECONDARY)  # fresh secondary: Inconsistent
    assert b.status()["disk"] == "Inconsistent"
    with NbdClient(*b.nbd, "vol", structured=True, allocation=True) as c:
        with pytest.raises(NbdError) as info:
            c.block_status(0, 4096)
        assert info.value.errno == nbd.EIO
        assert "Inconsistent" in c.last_error_message  # structured errors carry a reason
    assert run("nbdinfo", "--map", uri(b)).returncode != 0


def test_raw_block_status_req_one_and_structured_reads(cluster: Cluster) -> None:
    a = cluster.start("a", Role.PRIMARY)
    with NbdClient(*a.nbd, "vol", structured=True, allocation=True) as c:
        assert c.context_id == meta.ALLOCATION_ID
        c.write(8192, b"d" * 4096)
        assert c.block_status(0, SIZE) == (1, [(8192, HOLE), (4096, 0), (SIZE - 12288, HOLE)])
        assert c.block_status(0, SIZE, req_one=True) == (1, [(8192, HOLE)])
        assert c.block_status(8192, 100, req_one=True) == (1, [(100, 0)])
        assert c.block_status(SIZE - 10, 10) == (1, [(10, HOLE)])
        assert c.read(8190, 4) == b"\0\0dd"
        assert c.request(nbd.Cmd.READ, 0, 0) == b""  # a NONE chunk, no empty data chunk
        assert c.request(nbd.Cmd.READ, 0, 16, flags=nbd.CMD_FLAG_DF) == bytes(16)
        with pytest.raises(NbdError) as info:
            c.read(SIZE - 1, 2)
        assert info.value.errno == nbd.EINVAL and "beyond the end" in c.last_error_message
        with pytest.raises(NbdError):
            c.block_status(SIZE, 1)
        assert c.read(8192, 4) == b"dddd"  # still in step after the errors


def test_block_status_needs_a_selected_context(cluster: Cluster) -> None:
    a = cluster.start("a", Role.PRIMARY)
    with NbdClient(*a.nbd, "vol", structured=True) as c:
        with pytest.raises(NbdError) as info:
            c.block_status(0, 4096)
        assert info.value.errno == nbd.EINVAL and "metadata context" in c.last_error_message


@pytest.mark.parametrize(
    ("cmd", "flags"),
    [
        (nbd.Cmd.WRITE, 1 << 5),
        (nbd.Cmd.WRITE, nbd.CMD_FLAG_NO_HOLE),
        (nbd.Cmd.READ, nbd.CMD_FLAG_DF),  # DF without structured replies
        (nbd.Cmd.FLUSH, nbd.CMD_FLAG_REQ_ONE),
        (nbd.Cmd.WRITE_ZEROES, nbd.CMD_FLAG_FAST_ZERO),
        (nbd.Cmd.TRIM, 1 << 14),
    ],
)
def test_undefined_command_flags_get_einval(cluster: Cluster, cmd: int, flags: int) -> None:
    a = cluster.start("a", Role.PRIMARY)
    with NbdClient(*a.nbd, "vol") as c:
        c.write(0, b"before")
        length = 0 if cmd == nbd.Cmd.FLUSH else 6
        data = b"zzzzzz" if cmd == nbd.Cmd.WRITE else b""
        with pytest.raises(NbdError) as info:
            c.request(cmd, 0, length, data, flags)
        assert info.value.errno == nbd.EINVAL
        assert c.read(0, 6) == b"before"  # refused, nothing changed, payload skipped
        assert a.engine.stats["writes"] == 1


def test_zero_length_write_is_answered_without_touching_the_replica(cluster: Cluster) -> None:
    a, b = cluster.pair()
    with NbdClient(*a.nbd, "vol") as c:
        c.write(0, b"x" * 4096, fua=True)
        writes, frames = a.engine.stats["writes"], b.engine.stats["frames_received"]
        for _ in range(5):
            c.write(4096, b"")
            c.write(4096, b"", fua=True)
        # nothing was written or shipped (the old path waited for a peer ack timer)
        assert a.engine.stats["writes"] == writes
        assert b.engine.stats["frames_received"] == frames
        c.write(8192, b"y" * 512)
    assert a.engine.stats["writes"] == writes + 1


def test_disc_with_undefined_flags_still_disconnects_without_a_reply(cluster: Cluster) -> None:
    a = cluster.start("a", Role.PRIMARY)
    c = NbdClient(*a.nbd, "vol")
    try:
        c.sock.sendall(struct.pack(">IHHQQI", nbd.REQUEST_MAGIC, 1 << 9, nbd.Cmd.DISC, 1, 0, 0))
        c.sock.settimeout(5)
        assert c.sock.recv(16) == b""  # closed, nothing answered
    finally:
        c.sock.close()
