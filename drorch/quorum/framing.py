"""Length-prefixed framing, shared by the witness protocol and the agents' membership
link: a 4-byte unsigned big-endian length N (1 <= N <= MAX_FRAME), then N bytes."""

from __future__ import annotations

from drorch.quorum.messages import HEADER, MAX_FRAME, FrameError


class FrameDecoder:
    """Splits a byte stream into frame bodies. After an error it stays broken."""

    __slots__ = ("_buf", "error")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.error: FrameError | None = None

    def feed(self, data: bytes | memoryview) -> list[bytes]:
        """Append bytes; return the complete frame bodies. A bad length is found as soon as
        its 4 bytes are in (no need to wait for the body): the bodies before it are still
        returned, and `error` is set (the caller raises it after handling them)."""
        if self.error is not None:
            return []
        if not self._buf and len(data) >= 4:  # fast path: exactly one whole frame
            (length,) = HEADER.unpack_from(data)
            if len(data) == 4 + length and 1 <= length <= MAX_FRAME:
                return [bytes(data[4:])]
        self._buf += data
        bodies: list[bytes] = []
        buf = self._buf
        offset = 0
        while len(buf) - offset >= 4:
            (length,) = HEADER.unpack_from(buf, offset)
            if not 1 <= length <= MAX_FRAME:
                self.error = FrameError(f"frame length {length} is outside 1..{MAX_FRAME}")
                break
            end = offset + 4 + length
            if len(buf) < end:
                break
            bodies.append(bytes(buf[offset + 4 : end]))
            offset = end
        if offset:
            del buf[:offset]
        return bodies

    @property
    def buffered(self) -> int:
        return len(self._buf)
