"""The pinned-certificate TLS scheme, over real TLS on loopback."""

from __future__ import annotations

import hashlib
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from drorch.quorum import tls


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, str]]:
    out = tmp_path_factory.mktemp("tls")
    return {n: tls.generate_self_signed(n, out) for n in ("server", "client", "stranger")}


def test_generated_certificate_is_ec_p256_with_private_key_0600(
    certs: dict[str, tuple[Path, Path, str]],
) -> None:
    cert_path, key_path, fp = certs["client"]
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    der = cert.public_bytes(serialization.Encoding.DER)
    assert fp == "sha256:" + hashlib.sha256(der).hexdigest()
    assert tls.FINGERPRINT_RE.match(fp)


def test_fingerprint_accepts_path_pem_bytes_pem_text_and_der(
    certs: dict[str, tuple[Path, Path, str]],
) -> None:
    cert_path, _, fp = certs["server"]
    pem = cert_path.read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    assert tls.fingerprint_of(cert_path) == fp
    assert tls.fingerprint_of(str(cert_path)) == fp
    assert tls.fingerprint_of(pem) == fp
    assert tls.fingerprint_of(pem.decode()) == fp
    assert tls.fingerprint_of(der) == fp


def test_fingerprint_of_garbage_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        tls.fingerprint_of(b"not a certificate")


def test_normalize_fingerprint_accepts_operator_spellings() -> None:
    hexd = "ab" * 32
    colons = ":".join(["AB"] * 32)
    assert tls.normalize_fingerprint(f"SHA256:{colons}") == f"sha256:{hexd}"
    assert tls.normalize_fingerprint(hexd) == f"sha256:{hexd}"
    with pytest.raises(ValueError, match="not a fingerprint"):
        tls.normalize_fingerprint("sha256:1234")


def test_generate_refuses_to_overwrite(
    tmp_path: Path,
) -> None:
    tls.generate_self_signed("a", tmp_path)
    with pytest.raises(FileExistsError):
        tls.generate_self_signed("a", tmp_path)
    with pytest.raises(ValueError):
        tls.generate_self_signed("../x", tmp_path)


def _serve_once(ctx: ssl.SSLContext) -> tuple[int, threading.Thread, list[object]]:
    """Accept one connection, send the client's fingerprint, and record what happened."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    outcome: list[object] = []

    def run() -> None:
        with listener:
            listener.settimeout(10)
            conn, _ = listener.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True) as s:
                    s.sendall(tls.peer_fingerprint(s).encode())
                    outcome.append("served")
            except (ssl.SSLError, OSError) as exc:
                outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return port, thread, outcome


def _talk(ctx: ssl.SSLContext, port: int) -> bytes:
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10)) as s:
        return s.recv(200)


def test_mutual_tls_with_pinned_files_both_ways(
    certs: dict[str, tuple[Path, Path, str]],
) -> None:
    scert, skey, sfp = certs["server"]
    ccert, ckey, cfp = certs["client"]
    port, thread, outcome = _serve_once(tls.server_context(scert, skey, [ccert]))
    ctx = tls.client_context(ccert, ckey, server_cert_file=scert)
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10)) as s:
        assert s.version() == "TLSv1.3"
        tls.verify_peer_fingerprint(s, sfp)
        assert s.recv(200) == cfp.encode()
    thread.join(10)
    assert outcome == ["served"]


def test_unpinned_client_certificate_is_refused_in_the_handshake(
    certs: dict[str, tuple[Path, Path, str]],
) -> None:
    scert, skey, _ = certs["server"]
    ccert, _, _ = certs["client"]
    xcert, xkey, _ = certs["stranger"]
    port, thread, outcome = _serve_once(tls.server_context(scert, skey, [ccert]))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _talk(tls.client_context(xcert, xkey), port)
    thread.join(10)
    assert isinstance(outcome[0], ssl.SSLError)
    assert "certificate verify failed" in str(outcome[0])


def test_client_pinning_by_fingerprint_detects_the_wrong_server(
    certs: dict[str, tuple[Path, Path, str]],
) -> None:
    scert, skey, _ = certs["server"]
    ccert, ckey, _ = certs["client"]
    _, _, other_fp = certs["stranger"]
    port, thread, _ = _serve_once(tls.server_context(scert, skey, [ccert]))
    ctx = tls.client_context(ccert, ckey)
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    with ctx.wrap_socket(conn) as s, pytest.raises(tls.PinError, match="is not the pinned"):
        tls.verify_peer_fingerprint(s, other_fp)
    thread.join(10)


def test_client_pinning_by_file_refuses_the_wrong_server_in_the_handshake(
    certs: dict[str, tuple[Path, Path, str]],
) -> None:
    scert, skey, _ = certs["server"]
    ccert, ckey, _ = certs["client"]
    xcert, _, _ = certs["stranger"]
    port, thread, _ = _serve_once(tls.server_context(scert, skey, [ccert]))
    with pytest.raises(ssl.SSLCertVerificationError):
        _talk(tls.client_context(ccert, ckey, server_cert_file=xcert), port)
    thread.join(10)


def test_tls12_client_is_refused(certs: dict[str, tuple[Path, Path, str]]) -> None:
    scert, skey, _ = certs["server"]
    ccert, ckey, _ = certs["client"]
    port, thread, outcome = _serve_once(tls.server_context(scert, skey, [ccert]))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(ccert), str(ckey))
    with pytest.raises(ssl.SSLError):
        _talk(ctx, port)
    thread.join(10)
    assert isinstance(outcome[0], ssl.SSLError)


def test_server_context_needs_a_trusted_certificate(
    certs: dict[str, tuple[Path, Path, str]],
) -> None:
    scert, skey, _ = certs["server"]
    with pytest.raises(ValueError, match="at least one"):
        tls.server_context(scert, skey, [])


def test_a_client_wrap_of_a_reset_connection_leaves_nothing_open(
    certs: dict[str, tuple[Path, Path, str]],
) -> None:
    """The peer resets the connection before the client's TLS handshake begins (a witness
    under its caps, or stopping). CPython's wrap_socket then raises without closing the
    SSLSocket it made (a ResourceWarning once the collector finds it: CI blamed a later
    test's setup for it); wrap_client closes it."""
    import gc
    import struct
    import time
    import warnings

    ctx = tls.client_context(certs["client"][0], certs["client"][1])
    with socket.create_server(("127.0.0.1", 0)) as srv:
        raw = socket.create_connection(srv.getsockname(), timeout=5)
        conn, _ = srv.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # a reset, not a FIN
        time.sleep(0.2)  # the reset arrives before the wrap
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            with pytest.raises(OSError):
                tls.wrap_client(ctx, raw)
            gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, [str(w.message) for w in leaks]
