"""Sending buffers on the link or an NBD socket: memory buffers gathered into one
sendmsg, pipe payloads spliced (pipes.py); TLS streams get one sendall.

Every PipePayload handed to `send_buffers` is released, sent or not.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from drorch.replication.pyrepl.frame_reader import send_timeout
from drorch.replication.pyrepl.pipes import PipePayload, release
from drorch.replication.pyrepl.tls_stream import Stream

IOV_MAX = 512
SPLICE_SEND_TIMEOUT = 30.0
Buffer = bytes | bytearray | memoryview | PipePayload


def send_buffers(sock: Stream, buffers: Sequence[Buffer]) -> int:
    """Send every buffer in order, gathering memory buffers into one system call where
    possible and splicing pipe payloads (pipes.py). Every PipePayload in `buffers` is
    released, sent or not."""
    total = 0
    pending: list[memoryview] = []
    try:
        for buf in buffers:
            if isinstance(buf, PipePayload):
                total += _send_views(sock, pending)
                pending = []
                if isinstance(sock, socket.socket):
                    buf.to_socket(sock.fileno(), send_timeout(sock) or SPLICE_SEND_TIMEOUT)
                else:  # TLS encrypts in user space
                    sock.sendall(buf.read_all())
                total += len(buf)
                buf.release()
            elif len(buf):
                pending.append(memoryview(buf).cast("B"))
        total += _send_views(sock, pending)
    finally:
        for buf in buffers:
            release(buf)
    return total


def _send_views(sock: Stream, views: list[memoryview]) -> int:
    if not views:
        return 0
    total = sum(map(len, views))
    if not isinstance(sock, socket.socket):  # TLS: one record stream, one call
        sock.sendall(b"".join(views))
        return total
    sent = sock.sendmsg(views if len(views) <= IOV_MAX else views[:IOV_MAX])
    if sent == total:
        return total  # the usual case: everything in one call
    while True:  # a partial send: go on from where it stopped
        while sent and views:
            if sent >= len(views[0]):
                sent -= len(views.pop(0))
            else:
                views[0] = views[0][sent:]
                sent = 0
        if not views:
            break
        sent = sock.sendmsg(views[:IOV_MAX])
    return total
