"""NBD metadata contexts (sans-I/O): the `base:allocation` context and its replies.

`base:allocation` is the one context the NBD protocol defines: for each extent of the
export, whether it is a hole (NBD_STATE_HOLE) and whether it reads as zeroes
(NBD_STATE_ZERO). A client selects it during the handshake with
NBD_OPT_SET_META_CONTEXT (after NBD_OPT_STRUCTURED_REPLY) and then asks with
NBD_CMD_BLOCK_STATUS; `nbdinfo --map`, `qemu-img map` and a sparse `nbdcopy` rely on
it. The server answers from the backing file's own holes (SEEK_DATA/SEEK_HOLE): a hole
is HOLE|ZERO, data is 0 ("allocated, contents unknown"), which is always a safe answer.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from drorch.replication.pyrepl.errors import MetaOptionError

BASE_NAMESPACE = "base:"
BASE_ALLOCATION = "base:allocation"
ALLOCATION_ID = 1  # the context id this server hands out for base:allocation
STATE_HOLE = 1 << 0
STATE_ZERO = 1 << 1
MAX_EXTENTS = 1024  # descriptors in one reply (the client asks again from where it ended)
MAX_QUERIES = 64


@dataclass(frozen=True)
class MetaQuery:
    export_name: str
    queries: tuple[str, ...]


def parse_meta_option(data: bytes) -> MetaQuery:
    """Export name length + name, query count, then each query as length + string."""
    at = 0

    def take_string(what: str) -> str:
        nonlocal at
        if at + 4 > len(data):
            raise MetaOptionError(f"truncated {what} length")
        (n,) = struct.unpack_from(">I", data, at)
        at += 4
        if at + n > len(data):
            raise MetaOptionError(f"{what} overruns the option")
        raw = data[at : at + n]
        at += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MetaOptionError(f"{what} is not UTF-8") from exc

    name = take_string("export name")
    if at + 4 > len(data):
        raise MetaOptionError("truncated query count")
    (count,) = struct.unpack_from(">I", data, at)
    at += 4
    if count > MAX_QUERIES:
        raise MetaOptionError(f"{count} queries is more than {MAX_QUERIES}")
    queries = tuple(take_string("query") for _ in range(count))
    if at != len(data):
        raise MetaOptionError("bytes left after the last query")
    return MetaQuery(name, queries)


def listed(queries: Sequence[str]) -> list[str]:
    """Contexts NBD_OPT_LIST_META_CONTEXT reports: all for no query; `base:` is a
    wildcard for the base namespace; unknown namespaces are ignored."""
    if not queries:
        return [BASE_ALLOCATION]
    return [BASE_ALLOCATION] if any(q in (BASE_NAMESPACE, BASE_ALLOCATION) for q in queries) else []


def selected(queries: Sequence[str]) -> bool:
    """Whether NBD_OPT_SET_META_CONTEXT selects base:allocation (`base:` alone selects
    nothing; unknown leaf names and namespaces are ignored, not errors)."""
    return BASE_ALLOCATION in queries


def context_reply(context_id: int, name: str) -> bytes:
    """The data of one NBD_REP_META_CONTEXT reply."""
    return struct.pack(">I", context_id) + name.encode()


def descriptors(
    extents: Sequence[tuple[int, bool]], *, req_one: bool, limit: int
) -> list[tuple[int, int]]:
    """(length, status flags) for base:allocation from (length, is_hole) extents that
    start at the request's offset, merging neighbours of the same kind; with REQ_ONE
    only the first, never longer than the request (`limit`)."""
    out: list[tuple[int, int]] = []
    total = 0
    for length, hole in extents:
        if length <= 0 or total >= limit:
            break
        length = min(length, limit - total)
        flags = STATE_HOLE | STATE_ZERO if hole else 0
        if out and out[-1][1] == flags:
            out[-1] = (out[-1][0] + length, flags)
        else:
            out.append((length, flags))
        total += length
        if len(out) >= MAX_EXTENTS:
            break
    if req_one:
        out = out[:1]
    return out
