"""What an accept loop does when accept() fails: the one rule every listening daemon of
drorch follows (pyrepl's link, NBD export and control socket; the agent's membership
link and control socket).

Running out of file descriptors (EMFILE, ENFILE) or kernel memory (ENOBUFS, ENOMEM) is
a moment, not the end: the connections already open keep being served, and once some
close, accept() works again. A loop that returned on such an error would leave a live
daemon that never accepts again (a replica nobody can reach, an NBD export QEMU cannot
reconnect to). So the loop pauses, with a growing delay up to `MAX_PAUSE`, logs once per
episode, and tries again. A connection the peer aborted before accept() returned
(ECONNABORTED, EPROTO) is skipped at once. Any other error means the socket itself is
gone (closed under the loop by `close()`): the loop ends.
"""

from __future__ import annotations

import errno
import logging

EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ABORTED = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EINTR})
FIRST_PAUSE = 0.05  # seconds
MAX_PAUSE = 1.0


class AcceptBackoff:
    """Classifies one accept() failure: `pause_for(exc)` returns how long to wait before
    accepting again (0.0: at once), or None when the listening socket is gone."""

    def __init__(self, name: str, log: logging.Logger) -> None:
        self.name = name
        self.log = log
        self._pause = 0.0
        self.exhausted = 0  # failures for lack of resources, since the start

    def pause_for(self, exc: OSError) -> float | None:
        if exc.errno in ABORTED:
            return 0.0
        if exc.errno not in EXHAUSTED:
            return None
        self.exhausted += 1
        if self._pause == 0.0:
            self.log.warning(
                "%s: accept failed (%s); still serving open connections, "
                "accepting again once resources are free",
                self.name,
                exc.strerror or exc,
            )
        self._pause = min(MAX_PAUSE, max(FIRST_PAUSE, self._pause * 2))
        return self._pause

    def accepted(self) -> None:
        """A connection was accepted: the episode (if any) is over."""
        if self._pause:
            self.log.warning("%s: accepting again", self.name)
        self._pause = 0.0
