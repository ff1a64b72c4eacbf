"""The sans-I/O NBD protocol: feed bytes, check the bytes and verdicts that come back."""

from __future__ import annotations

import struct

import pytest

from drorch.replication.pyrepl import nbd_handshake as nh
from drorch.replication.pyrepl import nbd_proto as nbd
from drorch.replication.pyrepl.errors import NbdProtocolError

EXPORT = nbd.Export("vol", 1 << 20, read_only=False, description="test volume")


def opt(option: int, data: bytes = b"") -> bytes:
    return struct.pack(">QII", nbd.IHAVEOPT, option, len(data)) + data


def replies(raw: bytes) -> list[tuple[int, int, bytes]]:
    out = []
    while raw:
        magic, option, rtype, length = struct.unpack_from(">QIII", raw)
        assert magic == nbd.REPLY_MAGIC
        out.append((option, rtype, raw[20 : 20 + length]))
        raw = raw[20 + length :]
    return out


def started(exports: dict[str, nbd.Export] | None = None) -> nh.Handshake:
    hs = nh.Handshake(exports or {"vol": EXPORT})
    assert hs.receive(struct.pack(">I", nbd.FLAG_FIXED_NEWSTYLE | nbd.FLAG_NO_ZEROES)) == b""
    return hs


def go_data(name: str, *info: int) -> bytes:
    raw = name.encode()
    return struct.pack(">I", len(raw)) + raw + struct.pack(f">H{len(info)}H", len(info), *info)


def test_greeting_is_fixed_newstyle() -> None:
    magic, ihaveopt, flags = struct.unpack(">QQH", nh.greeting())
    assert (magic, ihaveopt) == (nbd.NBDMAGIC, nbd.IHAVEOPT)
    assert flags == nbd.FLAG_FIXED_NEWSTYLE | nbd.FLAG_NO_ZEROES


def test_go_replies_info_export_then_ack_and_starts_transmission() -> None:
    hs = started()
    out = replies(hs.receive(opt(nbd.Opt.GO, go_data("vol", nbd.INFO_BLOCK_SIZE, nbd.INFO_NAME))))
    kinds = [(o, r) for o, r, _ in out]
    assert kinds[0] == (nbd.Opt.GO, nbd.REP_INFO) and kinds[-1] == (nbd.Opt.GO, nbd.REP_ACK)
    info_type, size, flags = struct.unpack(">HQH", out[0][2])
    assert (info_type, size) == (nbd.INFO_EXPORT, 1 << 20)
    assert flags & nbd.TF_SEND_FLUSH and flags & nbd.TF_SEND_FUA and not flags & nbd.TF_READ_ONLY
    infos = {struct.unpack_from(">H", d)[0]: d for _, r, d in out if r == nbd.REP_INFO}
    assert struct.unpack(">HIII", infos[nbd.INFO_BLOCK_SIZE])[1:] == (1, 4096, nbd.MAX_PAYLOAD)
    assert infos[nbd.INFO_NAME][2:] == b"vol"
    assert hs.done and hs.export == EXPORT


def test_info_does_not_start_transmission() -> None:
    hs = started()
    out = replies(hs.receive(opt(nbd.Opt.INFO, go_data(""))))
    assert out[-1][1] == nbd.REP_ACK
    assert not hs.done  # the default export "" resolved, but INFO only informs


def test_read_only_export_advertises_read_only_and_no_trim() -> None:
    ro = nbd.Export("vol", 4096, read_only=True)
    flags = ro.transmission_flags
    assert flags & nbd.TF_READ_ONLY
    assert not flags & (nbd.TF_SEND_TRIM | nbd.TF_SEND_WRITE_ZEROES)


def test_export_name_with_and_without_zero_padding() -> None:
    hs = nh.Handshake({"vol": EXPORT})
    hs.receive(struct.pack(">I", nbd.FLAG_FIXED_NEWSTYLE))
    out = hs.receive(opt(nbd.Opt.EXPORT_NAME, b"vol"))
    assert len(out) == 8 + 2 + 124 and hs.done
    hs = started()
    assert len(hs.receive(opt(nbd.Opt.EXPORT_NAME, b"vol"))) == 10


def test_list_names_every_export_and_rejects_data() -> None:
    hs = started({"vol": EXPORT, "two": EXPORT})
    out = replies(hs.receive(opt(nbd.Opt.LIST)))
    names = [d[4:].decode() for _, r, d in out if r == nbd.REP_SERVER]
    assert names == ["vol", "two"] and out[-1][1] == nbd.REP_ACK
    assert replies(hs.receive(opt(nbd.Opt.LIST, b"x")))[0][1] == nbd.REP_ERR_INVALID


@pytest.mark.parametrize("option", [nbd.Opt.STARTTLS, nbd.Opt.EXTENDED_HEADERS, 4242])
def test_unsupported_options_get_err_unsup(option: int) -> None:
    hs = started()
    assert replies(hs.receive(opt(option, b"abc")))[0][1:2] == (nbd.REP_ERR_UNSUP,)
    assert not hs.closed


def test_unknown_export_and_malformed_go() -> None:
    hs = started()
    assert replies(hs.receive(opt(nbd.Opt.GO, go_data("nope"))))[0][1] == nbd.REP_ERR_UNKNOWN
    bad = struct.pack(">I", 999) + b"vol" + struct.pack(">H", 0)
    assert replies(hs.receive(opt(nbd.Opt.GO, bad)))[0][1] == nbd.REP_ERR_INVALID
    assert replies(hs.receive(opt(nbd.Opt.GO, b"\0")))[0][1] == nbd.REP_ERR_INVALID
    assert not hs.done and not hs.closed


def test_bytes_may_arrive_one_at_a_time() -> None:
    hs = nh.Handshake({"vol": EXPORT})
    stream = struct.pack(">I", nbd.FLAG_FIXED_NEWSTYLE) + opt(nbd.Opt.GO, go_data("vol"))
    out = b"".join(hs.receive(stream[i : i + 1]) for i in range(len(stream)))
    assert replies(out)[-1][1] == nbd.REP_ACK and hs.done


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (struct.pack(">I", 1 << 7), "unknown client flags"),
        (struct.pack(">I", 0), "fixed newstyle"),
        (struct.pack(">I", 1) + struct.pack(">QII", 0xBAD, 1, 0), "bad option magic"),
        (struct.pack(">I", 1) + struct.pack(">QII", nbd.IHAVEOPT, 1, 1 << 30), "too large"),
        (struct.pack(">I", 1) + opt(nbd.Opt.EXPORT_NAME, b"nope"), "unknown export"),
    ],
)
def test_protocol_violations_close_with_a_reason(data: bytes, reason: str) -> None:
    hs = nh.Handshake({"vol": EXPORT})
    hs.receive(data)
    assert hs.closed and reason in hs.reason
    with pytest.raises(NbdProtocolError):
        hs.receive(b"more")


def test_abort_is_acknowledged_and_closes() -> None:
    hs = started()
    assert replies(hs.receive(opt(nbd.Opt.ABORT)))[0][1] == nbd.REP_ACK
    assert hs.closed


def request(cmd: int, offset: int = 0, length: int = 0, flags: int = 0) -> nbd.Request:
    raw = struct.pack(">IHHQQI", nbd.REQUEST_MAGIC, flags, cmd, 7, offset, length)
    return nbd.parse_request(raw)


def test_parse_request_and_bad_magic() -> None:
    req = request(nbd.Cmd.WRITE, 4096, 512, nbd.CMD_FLAG_FUA)
    assert (req.type, req.offset, req.length, req.handle, req.fua) == (1, 4096, 512, 7, True)
    with pytest.raises(NbdProtocolError, match="magic"):
        nbd.parse_request(bytes(28))
    with pytest.raises(NbdProtocolError, match="28 bytes"):
        nbd.parse_request(bytes(10))


@pytest.mark.parametrize(
    ("req", "writable", "error", "close"),
    [
        (request(nbd.Cmd.READ, 0, 4096), True, 0, False),
        (request(nbd.Cmd.WRITE, 0, 4096), False, nbd.EPERM, False),
        (request(nbd.Cmd.TRIM, 0, 4096), False, nbd.EPERM, False),
        (request(nbd.Cmd.WRITE, (1 << 20) - 1, 2), True, nbd.ENOSPC, False),
        (request(nbd.Cmd.READ, 1 << 20, 1), True, nbd.EINVAL, False),
        (request(nbd.Cmd.WRITE, 0, nbd.MAX_PAYLOAD + 1), True, nbd.EINVAL, True),
        (request(nbd.Cmd.BLOCK_STATUS, 0, 1), True, nbd.EINVAL, False),
        (request(nbd.Cmd.FLUSH), False, 0, False),
    ],
)
def test_check_request_verdicts(req: nbd.Request, writable: bool, error: int, close: bool) -> None:
    verdict = nbd.check_request(req, EXPORT, writable=writable)
    assert (verdict.error, verdict.close) == (error, close)
    assert bool(verdict.reason) == bool(error)


def test_simple_reply_layout() -> None:
    assert nbd.simple_reply(9, nbd.EIO) == struct.pack(">IIQ", nbd.SIMPLE_REPLY_MAGIC, 5, 9)
