"""The replies of one NBD client, sent whole and one at a time from whichever thread
finishes a request (a write's acknowledgement may come from the link's thread)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

from drorch.replication.pyrepl import nbd_proto as nbd
from drorch.replication.pyrepl.condvars import notify_waiters
from drorch.replication.pyrepl.session import send_buffers

log = logging.getLogger("drorch.pyrepl.nbd")


class Replies:
    """Replies of one client, sent whole and one at a time from whichever thread
    finishes a request; counts writes still waiting for their acknowledgement. With
    structured replies negotiated, reads and errors go out as structured chunks
    (errors with their reason); other successes stay 16-byte simple replies."""

    def __init__(
        self, conn: socket.socket, *, structured: bool, settled: Callable[[], None]
    ) -> None:
        self.conn = conn
        self.structured = structured
        self._settled = settled  # called when the last pending acknowledgement went out
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()  # taken directly: Condition's `with` is Python
        self._cond = threading.Condition(self._count_lock)
        self._pending = 0

    def started(self) -> None:
        with self._count_lock:
            self._pending += 1

    def error(self, handle: int, error: int, message: str = "", *, done: bool = False) -> None:
        """The reply to a request without reply data: success (0) or an NBD error."""
        if error and self.structured:
            self.raw(nbd.error_chunk(handle, error, message), done=done)
        else:
            self.raw(nbd.simple_reply(handle, error), done=done)

    def data(self, handle: int, offset: int, data: bytes) -> None:
        if not self.structured:
            self.raw(nbd.simple_reply(handle, 0), data)
        elif data:
            self.raw(nbd.data_chunk_header(handle, offset, len(data)), data)
        else:  # a read of 0 bytes: no content chunk may describe nothing
            self.raw(nbd.chunk(handle, nbd.ReplyType.NONE))

    def raw(self, head: bytes, data: bytes | None = None, *, done: bool = False) -> None:
        try:
            with self._lock:
                if data is None:
                    self.conn.sendall(head)
                else:
                    send_buffers(self.conn, (head, data))
        except OSError as exc:
            log.debug("nbd reply not delivered: %s", exc)
        finally:
            if done:
                with self._count_lock:  # the condition's own lock
                    self._pending -= 1
                    last = self._pending == 0
                    notify_waiters(self._cond)
                if last:
                    self._settled()

    def pending(self) -> int:
        """Writes whose acknowledgement has not gone out yet."""
        return self._pending

    def drain(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._pending == 0, timeout)
