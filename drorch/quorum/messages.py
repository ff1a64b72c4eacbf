"""The quorum protocol's messages, error codes and limits (see docs/quorum-protocol.md).

Plain values; framing, encoding and parsing live in protocol.py, which re-exports these.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

VERSION = 1
MAX_FRAME = 65536
HEADER = struct.Struct(">I")

# error codes on the wire
BAD_FRAME = "bad_frame"
VERSION_MISMATCH = "version"
UNAUTHORIZED = "unauthorized"
NOT_HOLDER = "not_holder"  # outdate/current from a site without a live lease: stays open
NOT_CURRENT = "not_current"  # outdate from a site whose own copy is outdated: stays open
# current naming a record serial the record no longer has (a newer outdate re-wrote it):
# the record stands, the session stays open
RECORD_CHANGED = "record_changed"
REFUSALS = (NOT_HOLDER, NOT_CURRENT, RECORD_CHANGED)  # the session goes on after these


@dataclass(frozen=True, slots=True)
class Hello:
    cluster: str
    site: str
    node: str
    version: int = VERSION


@dataclass(frozen=True, slots=True)
class Heartbeat:
    seq: int
    want: bool
    nodes: int


@dataclass(frozen=True, slots=True)
class Release:
    pass


@dataclass(frozen=True, slots=True)
class Outdate:
    """The holder records that only its own copy of `volume` is current (the peer's is
    outdated); answered `Outdated` once that is durable."""

    volume: str
    # replace a record naming another site (after a promotion forced with a data-loss
    # acknowledgement); without it such an outdate is refused with `not_current`
    force: bool = False


@dataclass(frozen=True, slots=True)
class Current:
    """The holder clears the outdate record of `volume` (the peer is UpToDate again).
    With `serial` (compare-and-clear): only if the record is still the one that `outdate`
    answered with that serial; else `record_changed` and the record stands."""

    volume: str
    serial: int | None = None


@dataclass(frozen=True, slots=True)
class Welcome:
    heartbeat_ms: int
    lease_ms: int
    version: int = VERSION


@dataclass(frozen=True, slots=True)
class Vote:
    """The server's answer to a heartbeat (or, with seq 0, to a release)."""

    seq: int
    granted: bool
    epoch: int
    holder: str | None
    lease_ms: int
    # sorted volumes whose copy at the asking site is outdated (the witness's records)
    outdated: tuple[str, ...] = ()
    # (volume, epoch since which it is outdated there), when the server says (optional)
    outdated_since: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Outdated:
    """Answer to `outdate`: durable; only the holder's copy is current since `epoch`.
    `serial` names this write of the record (every accepted `outdate` gets a new one,
    a repeat too); `current` may name it to clear only this write (0: not said)."""

    volume: str
    epoch: int
    serial: int = 0


@dataclass(frozen=True, slots=True)
class Cleared:
    """Answer to `current`: the record is gone (durably), at the cluster's `epoch`."""

    volume: str
    epoch: int


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """The peer broke the protocol; send `error` with `code` (server side) and close."""

    code: str
    message: str


ClientMessage = Hello | Heartbeat | Release | Outdate | Current
ServerMessage = Welcome | Vote | Outdated | Cleared | ErrorMessage
Message = ClientMessage | ServerMessage


class FrameError(ValueError):
    """A frame or message is malformed; `code` is the wire error code to answer with."""

    def __init__(self, message: str, code: str = BAD_FRAME) -> None:
        super().__init__(message)
        self.code = code
