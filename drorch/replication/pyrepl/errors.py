"""pyrepl's errors, in one module that imports nothing else of pyrepl.

Operator-facing failures derive from `ReplicationError` (the control socket carries
them to the CLI, which maps them to exit codes); the rest are internal signals that
drop one connection and never leave the daemon.

| error | raised when | answered with |
|---|---|---|
| `ReadOnly` | a write reaches a side that is not primary | NBD EPERM |
| `NotReadable` | a read or block status reaches an Inconsistent disk | NBD EIO |
| `DiskFailed` | the backing device failed an I/O and is detached (Diskless) | NBD EIO |
| `MetaError` | the metadata sidecar is unreadable or not this volume's | start refused |
| `ReplicaInUse` | another daemon holds the replica's locks | start refused |
| `ControlUnreachable` | no daemon answers on a control socket | CLI exit 1 |
| `WireError` | the peer sent something that is not a valid frame | link dropped |
| `Rejected` | the peer declined a connection attempt | dial again later |
| `NbdProtocolError` | an NBD client broke the protocol | that client dropped |
| `MetaOptionError` | a malformed LIST/SET_META_CONTEXT option | NBD_REP_ERR_INVALID |
| `PipeError` | the kernel would not move a payload as asked | fall back to a copy |
| `FileSideError` | writing spliced data into the file failed | Diskless |
"""

from __future__ import annotations

from drorch.replication.base import ReplicationError


class ReadOnly(ReplicationError):
    """A write reached a side that is not primary (answered with NBD EPERM)."""


class NotReadable(ReplicationError):
    """A read reached a disk whose contents are not consistent (answered with EIO)."""


class DiskFailed(ReplicationError):
    """The local disk failed an I/O and is detached (NBD clients get EIO)."""


class MetaError(ReplicationError):
    """The sidecar is unreadable or does not belong to this volume."""


class ReplicaInUse(ReplicationError):
    """Another daemon owns this replica."""


class ControlUnreachable(ReplicationError):
    """No daemon answers on the control socket."""


class WireError(Exception):
    """The peer sent something that is not a valid frame; drop the connection."""


class Rejected(Exception):
    """The peer declined this connection attempt (it is StandAlone, busy, or dials)."""


class NbdProtocolError(Exception):
    """The client broke the protocol; the only safe answer is to close its connection."""


class MetaOptionError(ValueError):
    """A LIST/SET_META_CONTEXT option that is syntactically invalid (NBD_REP_ERR_INVALID)."""


class PipeError(OSError):
    """The kernel would not move the payload as asked (the caller falls back to a copy)."""


class FileSideError(Exception):
    """Writing the spliced data into the file failed (`cause`): a disk error."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(str(cause))
        self.cause = cause
