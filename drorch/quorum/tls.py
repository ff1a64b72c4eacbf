"""Pinned-certificate mutual TLS: no CA to keep alive, self-signed certificates pinned.

The scheme (see docs/quorum-protocol.md):

- every party has a self-signed certificate (`generate_self_signed`, EC P-256);
- a fingerprint is `sha256:` + the lowercase hex SHA-256 of the DER certificate;
- a server trusts exactly the client certificate files it is given, as trust anchors
  (`server_context`), and compares the fingerprint after the handshake;
- a client trusts exactly the server's certificate, by file (`client_context(...,
  server_cert_file=...)`) and/or by fingerprint (`verify_peer_fingerprint`).

Only TLS 1.3 is offered or accepted. Host names are never checked: the pin *is* the identity.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import re
import socket
import ssl
import traceback
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

FINGERPRINT_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
CERT_VALIDITY_DAYS = 3650
_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"


class PinError(Exception):
    """The peer's certificate is not the pinned one (or there is no certificate at all)."""


PeerWithCertificate = ssl.SSLSocket | ssl.SSLObject


def _der_from_bytes(data: bytes) -> bytes:
    if _PEM_BEGIN in data:
        return x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    # validate that it is a DER certificate before hashing it
    return x509.load_der_x509_certificate(data).public_bytes(serialization.Encoding.DER)


def fingerprint_of(cert: bytes | str | Path) -> str:
    """`sha256:<hex>` of a certificate given as PEM/DER bytes, PEM text, or a file path.

    A `str` that contains a PEM header is taken as PEM text, any other `str` as a path.
    Raises ValueError when the data is not a certificate, OSError when the file is unreadable.
    """
    if isinstance(cert, bytes):
        der = _der_from_bytes(cert)
    elif isinstance(cert, str) and _PEM_BEGIN.decode() in cert:
        der = _der_from_bytes(cert.encode("ascii"))
    else:
        der = _der_from_bytes(Path(cert).read_bytes())
    return fingerprint_of_der(der)


def fingerprint_of_der(der: bytes) -> str:
    """The fingerprint of raw DER bytes (no parsing; for certificates from a handshake)."""
    return "sha256:" + hashlib.sha256(der).hexdigest()


def normalize_fingerprint(text: str) -> str:
    """Accept `sha256:AB:CD...` or upper case as operators paste it; return canonical form.

    Raises ValueError when it is not a SHA-256 fingerprint."""
    value = text.strip()
    if value.lower().startswith("sha256:"):
        value = value[len("sha256:") :]
    value = value.replace(":", "").lower()
    canonical = "sha256:" + value
    if not FINGERPRINT_RE.match(canonical):
        raise ValueError(f"not a fingerprint (want sha256:<64 hex digits>): {text!r}")
    return canonical


def generate_self_signed(name: str, out_dir: str | Path) -> tuple[Path, Path, str]:
    """Write `out_dir/name.crt` and `out_dir/name.key` (mode 0600); return (cert, key, fp).

    EC P-256, CN=name, valid for ten years, usable both as TLS client and server. The key is
    created with mode 0600 from the start (never world-readable, not even briefly).
    Existing files are refused (FileExistsError) so a pinned identity is never overwritten.
    """
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a usable certificate name: {name!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out / f"{name}.crt", out / f"{name}.key"
    for path in (cert_path, key_path):
        if path.exists():
            raise FileExistsError(f"{path} already exists; refusing to overwrite a pinned identity")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem)
    os.chmod(key_path, 0o600)  # in case the umask or an existing ACL widened it
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path.write_bytes(cert_pem)
    return cert_path, key_path, fingerprint_of(cert_pem)


def _tls13_only(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.options |= ssl.OP_NO_COMPRESSION
    return ctx


def server_context(
    cert: str | Path, key: str | Path, trusted_client_cert_files: Iterable[str | Path]
) -> ssl.SSLContext:
    """A TLS 1.3-only server context that demands a client certificate and trusts exactly
    the given (self-signed) client certificate files as anchors. Nothing else is trusted:
    the system CA store is not loaded.

    The caller must still compare the peer's fingerprint against its pins after the
    handshake (a trust anchor alone does not say *which* cluster/site it belongs to)."""
    ctx = _tls13_only(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    ctx.load_cert_chain(str(cert), str(key))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.num_tickets = 0  # no session resumption: every session proves its pinned certificate
    loaded = 0
    seen: set[str] = set()
    for path in trusted_client_cert_files:
        resolved = str(Path(path).resolve())
        if resolved in seen:
            continue
        seen.add(resolved)
        ctx.load_verify_locations(cafile=resolved)
        loaded += 1
    if loaded == 0:
        raise ValueError("a server context needs at least one trusted client certificate")
    return ctx


def client_context(
    cert: str | Path, key: str | Path, server_cert_file: str | Path | None = None
) -> ssl.SSLContext:
    """A TLS 1.3-only client context presenting `cert`/`key`.

    With `server_cert_file`, the handshake itself fails unless the server presents exactly
    a certificate chaining to that file (pinned as the only trust anchor). Without it, the
    handshake accepts any server certificate and the caller MUST call
    `verify_peer_fingerprint` before sending anything."""
    ctx = _tls13_only(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(cert), str(key))
    if server_cert_file is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(server_cert_file))
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def wrap_client(context: ssl.SSLContext, raw: socket.socket) -> ssl.SSLSocket:
    """`context.wrap_socket(raw)` (the client side, handshake included) that leaves nothing
    open when it fails. The SSLSocket takes over raw's descriptor first, and when the
    connection was reset before the wrap (not connected any more, then ECONNRESET from
    the pre-handshake read), CPython's `SSLSocket._create` raises without closing it: the
    descriptor then waits for the garbage collector, a ResourceWarning at a random later
    moment (a witness that resets a connection at once, under its caps or as it stops)."""
    try:
        return context.wrap_socket(raw)
    except BaseException as exc:
        for frame, _ in traceback.walk_tb(exc.__traceback__):
            made = frame.f_locals.get("self")
            if isinstance(made, ssl.SSLSocket):
                made.close()  # the half-made socket (closing twice is harmless)
        raw.close()
        raise


def peer_fingerprint(peer: PeerWithCertificate) -> str:
    """The peer's certificate fingerprint; PinError when it presented none."""
    der = peer.getpeercert(binary_form=True)
    if not isinstance(der, bytes) or not der:
        raise PinError("the peer presented no certificate")
    return fingerprint_of_der(der)


def verify_peer_fingerprint(peer: PeerWithCertificate, expected: str) -> None:
    """Raise PinError unless the peer's certificate has fingerprint `expected`."""
    want = normalize_fingerprint(expected)
    got = peer_fingerprint(peer)
    if not hmac.compare_digest(got, want):
        raise PinError(f"peer certificate {got} is not the pinned {want}")
