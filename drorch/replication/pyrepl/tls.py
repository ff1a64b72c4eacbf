"""Optional TLS on the replication link, with the quorum daemon's pinning scheme.

Each side has its own self-signed certificate (`drorch.quorum.tls.generate_self_signed`)
and pins the peer's certificate file: TLS 1.3 only, both sides present certificates,
the peer's certificate is the only trust anchor, and its SHA-256 fingerprint is checked
again after the handshake on both the dialling and the accepting side.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from drorch.quorum.tls import (
    PinError,
    client_context,
    fingerprint_of,
    server_context,
    verify_peer_fingerprint,
)
from drorch.replication.pyrepl.tls_stream import TlsStream


@dataclass(frozen=True)
class LinkTls:
    server: ssl.SSLContext
    client: ssl.SSLContext
    peer_fingerprint: str

    def check(self, sock: TlsStream) -> None:
        """PinError unless the peer presented exactly the pinned certificate."""
        verify_peer_fingerprint(sock.ssl_object, self.peer_fingerprint)


def link_tls(cert: Path | None, key: Path | None, peer_cert: Path | None) -> LinkTls | None:
    """All three files, or none (plain TCP). ValueError names what is missing."""
    given = [p for p in (cert, key, peer_cert) if p is not None]
    if not given:
        return None
    if cert is None or key is None or peer_cert is None:
        raise ValueError("TLS needs --tls-cert, --tls-key and --peer-cert together")
    return LinkTls(
        server=server_context(cert, key, [peer_cert]),
        client=client_context(cert, key, peer_cert),
        peer_fingerprint=fingerprint_of(peer_cert),
    )


__all__ = ["LinkTls", "PinError", "link_tls"]
