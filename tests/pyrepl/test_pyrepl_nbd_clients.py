"""The NBD export against real clients (qemu-io, qemu-img, nbdinfo) and bad traffic."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import threading
from pathlib import Path

import pytest

from drorch.replication.base import Role
from drorch.replication.pyrepl import nbd_proto as nbd
from tests.pyrepl.conftest import SIZE, Cluster, Side, connected, wait_until
from tests.pyrepl.nbd_client import NbdClient, NbdError, recv_exact


def uri(side: Side) -> str:
    host, port = side.nbd
    return f"nbd://{host}:{port}/vol"


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_qemu_io_writes_and_reads_a_pattern(cluster: Cluster) -> None:
    a, b = cluster.pair()
    out = run(
        "qemu-io",
        "-f",
        "raw",
        "-c",
        "write -P 0xa5 64k 192k",
        "-c",
        "write -z 1M 64k",
        "-c",
        "discard 2M 64k",
        "-c",
        "flush",
        uri(a),
    )
    assert out.returncode == 0, out.stderr
    assert "wrote 196608/196608 bytes at offset 65536" in out.stdout
    out = run(
        "qemu-io", "-f", "raw", "-c", "read -P 0xa5 64k 192k", "-c", "read -P 0 1M 64k", uri(a)
    )
    assert out.returncode == 0 and "Pattern verification failed" not in out.stdout, out.stdout
    assert b.content()[65536 : 65536 + 196608] == b"\xa5" * 196608


def test_qemu_img_compare_after_sync(cluster: Cluster) -> None:
    a, b = cluster.pair()
    out = run(
        "qemu-io", "-f", "raw", "-c", "write -P 0x3c 0 1M", "-c", "write -P 0x77 3M 4k", uri(a)
    )
    assert out.returncode == 0, out.stderr
    cmp = run("qemu-img", "compare", "-f", "raw", "-F", "raw", str(a.backing), str(b.backing))
    assert cmp.returncode == 0 and "Images are identical" in cmp.stdout, cmp.stdout + cmp.stderr
    # and compare notices a difference (the check can fail)
    with open(b.backing, "r+b") as f:
        f.seek(3 * 1024 * 1024)
        f.write(b"\0")
    cmp = run("qemu-img", "compare", "-f", "raw", "-F", "raw", str(a.backing), str(b.backing))
    assert cmp.returncode == 1


def test_qemu_img_info_and_nbdinfo(cluster: Cluster) -> None:
    a, b = cluster.pair()
    info = run("qemu-img", "info", "--output=json", uri(a))
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["virtual-size"] == SIZE
    out = run("nbdinfo", "--json", uri(a))
    assert out.returncode == 0, out.stderr
    export = json.loads(out.stdout)["exports"][0]
    assert export["export-size"] == SIZE
    assert export["is_read_only"] is False
    assert export["can_flush"] is True and export["can_fua"] is True
    assert export["can_trim"] is True and export["can_zero"] is True
    out = run("nbdinfo", "--json", uri(b))
    assert json.loads(out.stdout)["exports"][0]["is_read_only"] is True
    host, port = a.nbd
    listing = run("nbdinfo", "--list", "--json", f"nbd://{host}:{port}")
    assert [e["export-name"] for e in json.loads(listing.stdout)["exports"]] == ["vol"]


def test_qemu_io_cannot_write_to_the_secondary(cluster: Cluster) -> None:
    _a, b = cluster.pair()
    out = run("qemu-io", "-f", "raw", "-c", "write -P 1 0 4k", uri(b))
    assert "Permission denied" in out.stdout + out.stderr or "read-only" in out.stdout + out.stderr
    assert b.content()[:4096] == bytes(4096)


def test_unix_socket_export(cluster: Cluster) -> None:
    from drorch.replication.pyrepl.daemon import Daemon, ServeOptions
    from drorch.replication.pyrepl.engine_config import EngineConfig

    sock = cluster.root / "nbd.sock"
    config = EngineConfig("vol", cluster.root / "u.img", SIZE, role=Role.PRIMARY)
    daemon = Daemon(ServeOptions(config, cluster.root / "u.ctl", nbd_unix=sock))
    daemon.start()
    try:
        assert daemon.engine.nbd_uri == f"nbd+unix:///vol?socket={sock}"
        out = run(
            "qemu-io",
            "-f",
            "raw",
            "-c",
            "write -P 9 0 4k",
            "-c",
            "read -P 9 0 4k",
            daemon.engine.nbd_uri,
        )
        assert out.returncode == 0 and "verification failed" not in out.stdout, out.stdout
    finally:
        daemon.close()


# ---------------------------------------------------------------------- bad traffic
def raw(side: Side) -> socket.socket:
    s = socket.create_connection(side.nbd, timeout=5)
    assert recv_exact(s, 18)[:8] == b"NBDMAGIC"
    return s


def still_serving(side: Side) -> None:
    with side.client() as c:
        c.write(0, b"ok" * 256)
        assert c.read(0, 512) == b"ok" * 256


def test_garbage_instead_of_a_handshake_closes_only_that_client(cluster: Cluster) -> None:
    a = cluster.start("a", Role.PRIMARY)
    with socket.create_connection(a.nbd, timeout=5) as s:
        recv_exact(s, 18)
        s.sendall(b"GET / HTTP/1.1\r\n\r\n" * 4)
        assert s.recv(100) == b""  # closed
    still_serving(a)


def test_structured_replies_are_acknowledged_and_the_connection_goes_on(cluster: Cluster) -> None:
    a = cluster.start("a", Role.PRIMARY)
    with raw(a) as s:
        s.sendall(struct.pack(">I", nbd.FLAG_FIXED_NEWSTYLE))
        s.sendall(struct.pack(">QII", nbd.IHAVEOPT, nbd.Opt.STRUCTURED_REPLY, 0))
        _m, opt, rep, length = struct.unpack(">QIII", recv_exact(s, 20))
        assert (opt, rep, length) == (nbd.Opt.STRUCTURED_REPLY, nbd.REP_ACK, 0)
        # the same connection carries on: an unknown export is ERR_UNKNOWN, not a crash
        data = struct.pack(">I", 4) + b"nope" + struct.pack(">H", 0)
        s.sendall(struct.pack(">QII", nbd.IHAVEOPT, nbd.Opt.GO, len(data)) + data)
        _m, opt, rep, length = struct.unpack(">QIII", recv_exact(s, 20))
        assert rep == nbd.REP_ERR_UNKNOWN


def test_bad_request_magic_drops_the_client(cluster: Cluster) -> None:
    a = cluster.start("a", Role.PRIMARY)
    c = NbdClient(*a.nbd, "vol")
    try:
        c.sock.sendall(b"\xde\xad\xbe\xef" + bytes(24))
        assert c.sock.recv(16) == b""
    finally:
        c.sock.close()
    still_serving(a)


@pytest.mark.parametrize(
    ("cmd", "offset", "length", "errno"),
    [
        (nbd.Cmd.READ, SIZE - 100, 4096, nbd.EINVAL),  # past the end
        (nbd.Cmd.WRITE_ZEROES, SIZE, 1, nbd.ENOSPC),
        (nbd.Cmd.READ, 0, nbd.MAX_PAYLOAD + 1, nbd.EINVAL),  # too large
        (nbd.Cmd.BLOCK_STATUS, 0, 4096, nbd.EINVAL),  # not negotiated
        (99, 0, 0, nbd.EINVAL),  # unknown command
    ],
)
def test_bad_requests_get_the_right_error(
    cluster: Cluster, cmd: int, offset: int, length: int, errno: int
) -> None:
    a = cluster.start("a", Role.PRIMARY)
    with NbdClient(*a.nbd, "vol") as c:
        with pytest.raises(NbdError) as info:
            c.request(cmd, offset, length)
        assert info.value.errno == errno
        assert c.read(0, 16) == bytes(16)  # the connection is still usable


def test_write_past_the_end_is_enospc_and_the_payload_is_skipped(cluster: Cluster) -> None:
    a = cluster.start("a", Role.PRIMARY)
    with NbdClient(*a.nbd, "vol") as c:
        with pytest.raises(NbdError) as info:
            c.write(SIZE - 10, b"z" * 100)
        assert info.value.errno == nbd.ENOSPC
        c.write(0, b"after")
        assert c.read(0, 5) == b"after"


def test_oversized_write_closes_the_client(cluster: Cluster) -> None:
    a = cluster.start("a", Role.PRIMARY)
    c = NbdClient(*a.nbd, "vol")
    try:
        hdr = struct.pack(">IHHQQI", nbd.REQUEST_MAGIC, 0, nbd.Cmd.WRITE, 1, 0, 1 << 30)
        c.sock.sendall(hdr)
        _magic, err, _h = struct.unpack(">IIQ", recv_exact(c.sock, 16))
        assert err == nbd.EINVAL
        assert c.sock.recv(1) == b""
    finally:
        c.sock.close()
    still_serving(a)


def test_client_vanishing_mid_request_does_not_hurt(cluster: Cluster) -> None:
    a = cluster.start("a", Role.PRIMARY)
    c = NbdClient(*a.nbd, "vol")
    hdr = struct.pack(">IHHQQI", nbd.REQUEST_MAGIC, 0, nbd.Cmd.WRITE, 1, 0, 65536)
    c.sock.sendall(hdr + b"x" * 1000)  # then hang up halfway through the payload
    c.sock.close()
    still_serving(a)
    assert a.content()[:1000] != b"x" * 1000


def test_qemu_system_attaches_the_export_as_a_guest_disk(cluster: Cluster) -> None:
    """What libvirt's <disk type='network'><source protocol='nbd'> becomes: a -blockdev
    nbd node behind a virtio-blk device. QEMU's own block layer writes through it."""
    a, b = cluster.pair()
    host, port = a.nbd
    qmp = [
        {"execute": "qmp_capabilities"},
        {
            "execute": "human-monitor-command",
            "arguments": {"command-line": 'qemu-io d0 "write -P 0x5a 4k 8k"'},
        },
        {"execute": "query-block"},
        {"execute": "quit"},
    ]
    out = subprocess.run(
        [
            "qemu-system-x86_64",
            "-M",
            "pc",
            "-accel",
            "tcg",
            "-nodefaults",
            "-nographic",
            "-S",
            "-qmp",
            "stdio",
            "-blockdev",
            f"driver=nbd,server.type=inet,server.host={host},server.port={port},export=vol,"
            "node-name=d0,cache.direct=off",
            "-device",
            "virtio-blk-pci,drive=d0,id=vda,share-rw=on",
        ],
        input="\n".join(json.dumps(c) for c in qmp) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "wrote 8192/8192 bytes at offset 4096" in out.stdout, out.stdout + out.stderr
    blocks = [json.loads(line) for line in out.stdout.splitlines() if '"return": [' in line]
    assert blocks and blocks[0]["return"][0]["qdev"].endswith("vda/virtio-backend")
    assert a.content()[4096 : 4096 + 8192] == b"\x5a" * 8192
    assert b.content()[4096 : 4096 + 8192] == b"\x5a" * 8192


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_nbdcopy_with_four_connections_replicates_exactly(
    cluster: Cluster, mode: str, tmp_path: Path
) -> None:
    """nbdcopy uses multi-conn and many requests in flight: replies come out of order,
    writes from four connections interleave, and both copies must still match."""
    a, b = cluster.pair(mode=mode)
    src = tmp_path / "src.img"
    src.write_bytes(os.urandom(SIZE))
    out = run(
        "nbdcopy",
        "--connections=4",
        "--requests=16",
        "--request-size=65536",
        "--flush",
        str(src),
        uri(a),
    )
    assert out.returncode == 0, out.stderr
    wait_until("replica drained", lambda: connected(a) and connected(b))
    assert a.content() == src.read_bytes()
    assert b.content() == src.read_bytes()


def test_overlapping_writes_from_many_clients_leave_identical_copies(cluster: Cluster) -> None:
    a, b = cluster.pair(mode="sync")
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        try:
            with a.client() as nbd:
                for i in range(60):
                    offset = ((seed * 31 + i * 7) % 40) * 4096  # heavy overlap
                    nbd.write(offset, bytes([seed]) * 8192)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert a.content() == b.content()
