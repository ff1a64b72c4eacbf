"""Sans-I/O: structured replies, metadata contexts, command flags and reply chunks."""

from __future__ import annotations

import struct

import pytest

from drorch.replication.pyrepl import nbd_handshake as nh
from drorch.replication.pyrepl import nbd_meta as meta
from drorch.replication.pyrepl import nbd_proto as nbd

EXPORT = nbd.Export("vol", 1 << 20, read_only=False)


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


def started(*, structured: bool = True) -> nh.Handshake:
    hs = nh.Handshake({"vol": EXPORT})
    hs.receive(struct.pack(">I", nbd.FLAG_FIXED_NEWSTYLE | nbd.FLAG_NO_ZEROES))
    if structured:
        assert replies(hs.receive(opt(nbd.Opt.STRUCTURED_REPLY)))[0][1] == nbd.REP_ACK
    return hs


def meta_data(export: str, *queries: str) -> bytes:
    raw = struct.pack(">I", len(export.encode())) + export.encode()
    raw += struct.pack(">I", len(queries))
    for q in queries:
        raw += struct.pack(">I", len(q.encode())) + q.encode()
    return raw


def go(hs: nh.Handshake, name: str = "vol") -> list[tuple[int, int, bytes]]:
    data = struct.pack(">I", len(name)) + name.encode() + struct.pack(">H", 0)
    return replies(hs.receive(opt(nbd.Opt.GO, data)))


def test_structured_reply_is_acknowledged_and_takes_no_data() -> None:
    hs = started(structured=False)
    assert replies(hs.receive(opt(nbd.Opt.STRUCTURED_REPLY, b"x")))[0][1] == nbd.REP_ERR_INVALID
    assert not hs.structured
    assert replies(hs.receive(opt(nbd.Opt.STRUCTURED_REPLY)))[0][1] == nbd.REP_ACK
    out = go(hs)
    _t, _size, flags = struct.unpack(">HQH", out[0][2])
    assert flags & nbd.TF_SEND_DF  # DF only once structured replies are on
    assert hs.negotiated == nbd.Negotiated(EXPORT, structured=True, allocation_id=None)


def test_without_structured_replies_df_is_not_advertised_and_meta_is_invalid() -> None:
    hs = started(structured=False)
    out = replies(hs.receive(opt(nbd.Opt.SET_META_CONTEXT, meta_data("vol", "base:allocation"))))
    assert out[0][1] == nbd.REP_ERR_INVALID and b"STRUCTURED_REPLY" in out[0][2]
    _t, _size, flags = struct.unpack(">HQH", go(hs)[0][2])
    assert not flags & nbd.TF_SEND_DF
    assert hs.negotiated == nbd.Negotiated(EXPORT)


def test_set_meta_context_selects_base_allocation_for_the_export() -> None:
    hs = started()
    out = replies(
        hs.receive(opt(nbd.Opt.SET_META_CONTEXT, meta_data("vol", "qemu:x", "base:allocation")))
    )
    assert [r for _, r, _ in out] == [nbd.REP_META_CONTEXT, nbd.REP_ACK]
    context_id, name = struct.unpack(">I", out[0][2][:4])[0], out[0][2][4:]
    assert (context_id, name) == (meta.ALLOCATION_ID, b"base:allocation")
    go(hs)
    assert hs.negotiated is not None and hs.negotiated.allocation_id == meta.ALLOCATION_ID


@pytest.mark.parametrize("queries", [(), ("base:",), ("base:nothing",), ("x-other:allocation",)])
def test_set_meta_context_that_selects_nothing_leaves_block_status_off(
    queries: tuple[str, ...],
) -> None:
    hs = started()
    hs.receive(opt(nbd.Opt.SET_META_CONTEXT, meta_data("vol", "base:allocation")))
    out = replies(hs.receive(opt(nbd.Opt.SET_META_CONTEXT, meta_data("vol", *queries))))
    assert [r for _, r, _ in out] == [nbd.REP_ACK]  # a new SET replaces the earlier one
    go(hs)
    assert hs.negotiated is not None and hs.negotiated.allocation_id is None


@pytest.mark.parametrize(
    ("queries", "listed"),
    [((), [b"base:allocation"]), (("base:",), [b"base:allocation"]), (("qemu:",), [])],
)
def test_list_meta_context(queries: tuple[str, ...], listed: list[bytes]) -> None:
    hs = started()
    out = replies(hs.receive(opt(nbd.Opt.LIST_META_CONTEXT, meta_data("vol", *queries))))
    assert out[-1][1] == nbd.REP_ACK
    assert [d[4:] for _, r, d in out if r == nbd.REP_META_CONTEXT] == listed
    assert all(d[:4] == bytes(4) for _, r, d in out if r == nbd.REP_META_CONTEXT)
    go(hs)
    assert hs.negotiated is not None and hs.negotiated.allocation_id is None  # LIST selects none


@pytest.mark.parametrize(
    ("data", "reply"),
    [
        (b"\0\0", nbd.REP_ERR_INVALID),  # truncated name length
        (struct.pack(">I", 50) + b"vol", nbd.REP_ERR_INVALID),  # name overruns
        (struct.pack(">I", 3) + b"vol", nbd.REP_ERR_INVALID),  # no query count
        (struct.pack(">I", 3) + b"vol" + struct.pack(">II", 1, 99), nbd.REP_ERR_INVALID),
        (meta_data("vol", "base:allocation") + b"!", nbd.REP_ERR_INVALID),  # trailing bytes
        (meta_data("vol", *["base:allocation"] * 65), nbd.REP_ERR_INVALID),  # too many
        (meta_data("nope", "base:allocation"), nbd.REP_ERR_UNKNOWN),
    ],
)
def test_malformed_meta_context_options(data: bytes, reply: int) -> None:
    hs = started()
    out = replies(hs.receive(opt(nbd.Opt.SET_META_CONTEXT, data)))
    assert [r for _, r, _ in out] == [reply] and out[0][2]  # with a message
    assert not hs.closed  # the client may try again


def request(cmd: int, offset: int = 0, length: int = 0, flags: int = 0) -> nbd.Request:
    raw = struct.pack(">IHHQQI", nbd.REQUEST_MAGIC, flags, cmd, 7, offset, length)
    return nbd.parse_request(raw)


@pytest.mark.parametrize(
    ("req", "structured", "allocation", "error"),
    [
        (request(nbd.Cmd.WRITE, 0, 512, nbd.CMD_FLAG_FUA), False, False, 0),
        (request(nbd.Cmd.FLUSH, 0, 0, nbd.CMD_FLAG_FUA), False, False, 0),  # FUA: any command
        (request(nbd.Cmd.WRITE, 0, 512, 1 << 5), False, False, nbd.EINVAL),  # undefined bit
        (request(nbd.Cmd.WRITE, 0, 512, 1 << 15), True, True, nbd.EINVAL),
        (request(nbd.Cmd.WRITE, 0, 512, nbd.CMD_FLAG_NO_HOLE), False, False, nbd.EINVAL),
        (request(nbd.Cmd.WRITE_ZEROES, 0, 512, nbd.CMD_FLAG_NO_HOLE), False, False, 0),
        (request(nbd.Cmd.WRITE_ZEROES, 0, 512, nbd.CMD_FLAG_FAST_ZERO), True, True, nbd.EINVAL),
        (request(nbd.Cmd.READ, 0, 512, nbd.CMD_FLAG_DF), False, False, nbd.EINVAL),
        (request(nbd.Cmd.READ, 0, 512, nbd.CMD_FLAG_DF), True, False, 0),
        (request(nbd.Cmd.TRIM, 0, 512, nbd.CMD_FLAG_REQ_ONE), True, True, nbd.EINVAL),
        (request(nbd.Cmd.BLOCK_STATUS, 0, 512), True, False, nbd.EINVAL),  # no context
        (request(nbd.Cmd.BLOCK_STATUS, 0, 512, nbd.CMD_FLAG_REQ_ONE), True, True, 0),
        (request(nbd.Cmd.BLOCK_STATUS, 0, 0), True, True, nbd.EINVAL),
        (request(nbd.Cmd.BLOCK_STATUS, 1 << 20, 1), True, True, nbd.EINVAL),  # past the end
        (request(nbd.Cmd.WRITE, 0, 0), False, False, 0),  # zero-length write: fine
        (request(nbd.Cmd.DISC, 0, 0, 1 << 7), False, False, 0),  # DISC is never answered
    ],
)
def test_command_flags_and_block_status_verdicts(
    req: nbd.Request, structured: bool, allocation: bool, error: int
) -> None:
    verdict = nbd.check_request(
        req, EXPORT, writable=True, structured=structured, allocation=allocation
    )
    assert verdict.error == error, verdict.reason
    assert not verdict.close


def test_bad_flag_reason_names_the_flag_and_the_command() -> None:
    verdict = nbd.check_request(
        request(nbd.Cmd.READ, 0, 1, nbd.CMD_FLAG_REQ_ONE | 1 << 9), EXPORT, writable=True
    )
    assert verdict.reason == "command flags REQ_ONE|0x200 are not valid on READ"


def test_chunk_layouts() -> None:
    magic = nbd.STRUCTURED_REPLY_MAGIC
    assert nbd.chunk(5, nbd.ReplyType.NONE) == struct.pack(">IHHQI", magic, 1, 0, 5, 0)
    head = nbd.data_chunk_header(6, 4096, 10)
    assert head == struct.pack(">IHHQIQ", magic, 1, 1, 6, 18, 4096)
    err = nbd.error_chunk(7, nbd.EIO, "disk")
    assert err == struct.pack(">IHHQIIH", magic, 1, (1 << 15) + 1, 7, 10, 5, 4) + b"disk"
    bs = nbd.block_status_chunk(8, 1, [(4096, 3), (512, 0)])
    assert bs == struct.pack(">IHHQII4I", magic, 1, 5, 8, 20, 1, 4096, 3, 512, 0)
    with pytest.raises(ValueError, match="at least one extent"):
        nbd.block_status_chunk(8, 1, [])


@pytest.mark.parametrize(
    ("extents", "req_one", "limit", "expected"),
    [
        ([(4096, True), (8192, False)], False, 1 << 20, [(4096, 3), (8192, 0)]),
        ([(4096, True), (4096, True), (10, False)], False, 1 << 20, [(8192, 3), (10, 0)]),
        ([(4096, True), (8192, False)], True, 1 << 20, [(4096, 3)]),
        ([(1 << 20, False)], True, 512, [(512, 0)]),  # REQ_ONE: never longer than asked
        ([(100, False), (100, True)], False, 150, [(100, 0), (50, 3)]),
        ([], False, 512, []),
    ],
)
def test_allocation_descriptors(
    extents: list[tuple[int, bool]],
    req_one: bool,
    limit: int,
    expected: list[tuple[int, int]],
) -> None:
    assert meta.descriptors(extents, req_one=req_one, limit=limit) == expected


def test_descriptors_are_capped() -> None:
    many = [(512, i % 2 == 0) for i in range(5000)]
    assert len(meta.descriptors(many, req_one=False, limit=1 << 30)) == meta.MAX_EXTENTS
