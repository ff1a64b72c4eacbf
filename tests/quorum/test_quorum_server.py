"""The daemon over real TLS on loopback: pinning, grants, timing, bad frames."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import struct
import time

import pytest

from drorch.quorum.client import QuorumConnection, QuorumRefused, QuorumUnavailable, query_vote
from drorch.quorum.messages import Heartbeat, Hello
from drorch.quorum.protocol import encode, encode_object
from drorch.quorum.state import read_state
from drorch.quorum.tls import client_context, wrap_client
from tests.quorum.conftest import LEASE_MS, SWITCH_DELAY_MS, InProcessWitness, Pki

LEASE, DELAY = LEASE_MS / 1000, SWITCH_DELAY_MS / 1000


def raw_tls(w: InProcessWitness, name: str = "c1-a") -> ssl.SSLSocket:
    ctx = client_context(w.pki.cert(name), w.pki.key(name), w.pki.cert("server"))
    # wrap_client: a reset before the handshake leaves no half-made socket to the GC
    return wrap_client(ctx, socket.create_connection(("127.0.0.1", w.port), timeout=5))


def read_frames(sock: ssl.SSLSocket, timeout: float = 5.0) -> tuple[list[dict[str, object]], bool]:
    """Every frame until the server closes (True) or `timeout` passes (False)."""
    sock.settimeout(timeout)
    buf = b""
    closed = False
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                closed = True
                break
            buf += data
    except TimeoutError:
        pass
    except (ssl.SSLError, ConnectionError):
        closed = True
    frames = []
    while len(buf) >= 4:
        (n,) = struct.unpack(">I", buf[:4])
        frames.append(json.loads(buf[4 : 4 + n]))
        buf = buf[4 + n :]
    return frames, closed


def test_a_is_granted_while_b_is_denied(witness: InProcessWitness) -> None:
    with witness.connect("c1", "A") as a, witness.connect("c1", "B") as b:
        assert a.welcome is not None
        assert (a.welcome.heartbeat_ms, a.welcome.lease_ms) == (100, LEASE_MS)
        va = a.heartbeat(1, True, 2)
        assert (va.seq, va.granted, va.epoch, va.holder, va.lease_ms) == (1, True, 1, "A", LEASE_MS)
        vb = b.heartbeat(7, True, 1)
        assert (vb.seq, vb.granted, vb.epoch, vb.holder) == (7, False, 1, "A")
        # the grant was durable before the vote was sent
        assert read_state(witness.state_file).clusters["c1"].epoch == 1


def test_two_nodes_of_one_site_share_the_sites_lease(witness: InProcessWitness) -> None:
    with witness.connect("c1", "A", "n1") as n1, witness.connect("c1", "A", "n2") as n2:
        assert n1.heartbeat(1, True, 2).granted
        v = n2.heartbeat(1, True, 2)
        assert (v.granted, v.epoch) == (True, 1)


def test_unpinned_certificate_is_refused(
    witness: InProcessWitness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="drorch.quorumd")
    with pytest.raises(QuorumUnavailable, match="is this node's certificate pinned"):
        witness.connect("c1", "A", cert="stranger")
    deadline = time.monotonic() + 5
    while "CERTIFICATE_VERIFY_FAILED" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "TLS handshake failed: CERTIFICATE_VERIFY_FAILED" in caplog.text


@pytest.mark.parametrize(
    ("cluster", "site", "cert"),
    [("c1", "B", "c1-a"), ("c2", "A", "c1-a"), ("nope", "A", "c1-a"), ("c1", "C", "c1-a")],
    ids=["A-claims-B", "other-cluster", "unknown-cluster", "unknown-site"],
)
def test_a_certificate_is_only_good_for_its_own_site(
    witness: InProcessWitness, cluster: str, site: str, cert: str
) -> None:
    with pytest.raises(QuorumRefused) as info:
        witness.connect(cluster, site, cert=cert)
    assert info.value.code == "unauthorized"
    assert f"not pinned for site {site!r} of cluster {cluster!r}" in str(info.value)


def test_tls12_is_refused(witness: InProcessWitness) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(witness.pki.cert("c1-a"), witness.pki.key("c1-a"))
    raw = socket.create_connection(("127.0.0.1", witness.port), timeout=5)
    conn = ctx.wrap_socket(raw, do_handshake_on_connect=False)  # closed even if refused
    try:
        with pytest.raises(ssl.SSLError, match=r"(?i)version"):
            conn.do_handshake()
    finally:
        conn.close()


def test_client_refuses_a_server_with_another_pin(witness: InProcessWitness, pki: Pki) -> None:
    conn = QuorumConnection(
        witness.server,
        pki.fingerprints["stranger"],
        pki.cert("c1-a"),
        pki.key("c1-a"),
        "c1",
        "A",
        "n1",
    )
    with pytest.raises(QuorumUnavailable, match="is not the pinned"):
        conn.connect()


def test_b_is_granted_at_lease_plus_switch_delay_not_before(witness: InProcessWitness) -> None:
    a = witness.connect("c1", "A")
    assert a.heartbeat(1, True, 1).granted
    a_sent = time.monotonic()
    assert a.heartbeat(2, True, 1).granted
    a.close()  # a dropped connection does not end the lease early
    with witness.connect("c1", "B") as b:
        seq = 0
        while True:
            seq += 1
            vote = b.heartbeat(seq, True, 1)
            answered = time.monotonic()
            if vote.granted:
                break
            assert answered < a_sent + LEASE + DELAY + 2.0, "B was never granted"
            assert vote.epoch == 1
            # A's lease was live at least until a_sent + lease; after that, nobody holds
            if answered < a_sent + LEASE:
                assert vote.holder == "A"
            time.sleep(0.02)
    assert answered >= a_sent + LEASE + DELAY, "granted before lease + switch_delay"
    assert answered <= a_sent + LEASE + DELAY + 1.0, "granted much later than due"
    assert (vote.epoch, vote.holder) == (2, "B")


def test_release_lets_b_in_at_once(witness: InProcessWitness) -> None:
    with witness.connect("c1", "A") as a, witness.connect("c1", "B") as b:
        assert a.heartbeat(1, True, 1).granted
        r = a.release()
        assert (r.seq, r.granted, r.epoch, r.holder) == (0, False, 1, None)
        assert read_state(witness.state_file).clusters["c1"].holder is None
        v = b.heartbeat(1, True, 1)
        assert (v.granted, v.epoch, v.holder) == (True, 2, "B")
        # a release from the non-holder changes nothing
        r = a.release()
        assert (r.seq, r.granted, r.holder) == (0, False, "B")
        assert b.heartbeat(2, True, 1).granted


def test_query_vote_is_a_read_only_one_shot(witness: InProcessWitness, pki: Pki) -> None:
    args = (witness.server, pki.fingerprints["server"], pki.cert("c1-b"), pki.key("c1-b"))
    v = query_vote(*args, "c1", "B", "n9")
    assert (v.seq, v.granted, v.epoch, v.holder, v.lease_ms) == (1, False, 0, None, LEASE_MS)
    with witness.connect("c1", "A") as a:
        a.heartbeat(1, True, 1)
        v = query_vote(*args, "c1", "B", "n9")
        assert (v.granted, v.epoch, v.holder) == (False, 1, "A")


BAD_INPUTS = [
    (b"\x00\x01\x00\x01", "outside 1..65536"),  # 65537
    (b"\xff\xff\xff\xff", "outside 1..65536"),
    (struct.pack(">I", 9) + b"not json!", "not valid JSON"),
    (struct.pack(">I", 2) + b"\xc3\x28", "not valid UTF-8"),
    (encode_object({"type": "heartbeat", "seq": 1, "want": True, "nodes": 1}), "first frame"),
    (encode_object({"type": "hello", "version": 1, "cluster": "c1", "site": "A"}), "missing"),
    # Python refuses to parse an int of more than 4300 digits with a ValueError that is
    # not a JSONDecodeError (attack: it escaped the protocol, the connection stayed open)
    (struct.pack(">I", 5027) + b'{"type":"hello","version":' + b"1" * 5000 + b"}", "digits"),
]


@pytest.mark.parametrize(("payload", "why"), BAD_INPUTS)
def test_bad_frames_close_only_their_own_connection(
    witness: InProcessWitness, payload: bytes, why: str
) -> None:
    with witness.connect("c1", "B") as good:
        first = good.heartbeat(1, True, 1)  # the only site asking: B gets the lease
        assert (first.seq, first.granted, first.holder) == (1, True, "B")
        bad = raw_tls(witness)
        bad.sendall(payload)
        frames, closed = read_frames(bad)
        bad.close()
        assert closed
        assert frames[-1]["type"] == "error"
        assert frames[-1]["code"] == "bad_frame"
        assert why in str(frames[-1]["message"])
        v = good.heartbeat(2, True, 1)
        assert v.seq == 2 and v.holder == "B"


def test_second_hello_and_bad_heartbeat_after_welcome(witness: InProcessWitness) -> None:
    for extra, why in [
        (encode(Hello("c1", "A", "n1")), "second hello"),
        (encode_object({"type": "heartbeat", "seq": "1", "want": True, "nodes": 1}), "'seq'"),
        (struct.pack(">I", 5017) + b'{"type":"heartbeat","seq":' + b"7" * 4990 + b"}", "digits"),
    ]:
        sock = raw_tls(witness)
        sock.sendall(encode(Hello("c1", "A", "n1")) + encode(Heartbeat(1, False, 1)) + extra)
        frames, closed = read_frames(sock)
        sock.close()
        assert [f["type"] for f in frames] == ["welcome", "vote", "error"]
        assert closed and why in str(frames[-1]["message"])


def test_unknown_version_is_answered_with_code_version(witness: InProcessWitness) -> None:
    sock = raw_tls(witness)
    sock.sendall(
        encode_object({"type": "hello", "version": 2, "cluster": "c1", "site": "A", "node": "n"})
    )
    frames, closed = read_frames(sock)
    sock.close()
    assert closed and frames == [
        {"type": "error", "code": "version", "message": frames[0]["message"]}
    ]


def test_idle_session_is_closed_after_max_of_3_heartbeats_and_lease(
    witness: InProcessWitness,
) -> None:
    sock = raw_tls(witness)
    sock.sendall(encode(Hello("c1", "A", "n1")))
    started = time.monotonic()
    frames, closed = read_frames(sock, timeout=5)
    took = time.monotonic() - started
    sock.close()
    assert frames[0]["type"] == "welcome" and closed
    idle = max(3 * 0.1, LEASE)
    assert idle <= took < idle + 1.5


def test_many_pipelined_heartbeats_are_answered_in_order(witness: InProcessWitness) -> None:
    sock = raw_tls(witness, "c2-a")
    sock.sendall(
        encode(Hello("c2", "A", "n1"))
        + b"".join(encode(Heartbeat(i, True, 1)) for i in range(1, 301))
    )
    frames, _ = read_frames(sock, timeout=1.0)
    sock.close()
    votes = [f for f in frames if f["type"] == "vote"]
    assert [v["seq"] for v in votes] == list(range(1, 301))
    assert all(v["granted"] and v["epoch"] == 1 for v in votes)


def test_unreachable_witness_is_unavailable_not_a_grant(pki: Pki) -> None:
    from tests.quorum.conftest import free_port

    with pytest.raises(QuorumUnavailable, match="cannot connect"):
        query_vote(
            f"127.0.0.1:{free_port()}",
            pki.fingerprints["server"],
            pki.cert("c1-a"),
            pki.key("c1-a"),
            "c1",
            "A",
            "n1",
            timeout=2.0,
        )


def test_status_command_table_and_errors(witness: InProcessWitness, pki: Pki) -> None:
    from click.testing import CliRunner

    from drorch.cli.quorum_cmd import quorum

    args = [
        "status", "--server", witness.server, "--fingerprint", pki.fingerprints["server"],
        "--cert", str(pki.cert("c1-a")), "--key", str(pki.key("c1-a")),
        "--cluster", "c1", "--site", "A", "--node", "a1",
    ]  # fmt: skip
    result = CliRunner().invoke(quorum, [*args, "--format", "table"])
    assert result.exit_code == 0, result.output
    assert "granted   no" in result.output and "epoch     0" in result.output
    result = CliRunner().invoke(quorum, [*args, "--format", "yaml"])
    assert "holder: null" in result.output
    bad = [*args]
    bad[bad.index("--fingerprint") + 1] = "sha256:abc"
    result = CliRunner().invoke(quorum, bad)
    assert result.exit_code == 2 and "not a fingerprint" in result.output
    wrong_site = [*args]
    wrong_site[wrong_site.index("--site") + 1] = "B"
    result = CliRunner().invoke(quorum, wrong_site)
    assert result.exit_code == 1 and "unauthorized" in result.output


def test_a_flooding_session_is_closed_and_the_others_keep_their_votes(
    witness: InProcessWitness,
) -> None:
    with witness.connect("c1", "B") as good:
        flood = raw_tls(witness, "c1-a")
        flood.sendall(encode(Hello("c1", "A", "a1")))
        burst = b"".join(encode(Heartbeat(i, False, 1)) for i in range(1, 801))
        started = time.monotonic()
        closed, frames = False, []
        while not closed and time.monotonic() - started < 5:
            try:
                flood.sendall(burst)
            except (ssl.SSLError, OSError):
                break
            got, closed = read_frames(flood, timeout=0.2)
            frames += got
            assert good.heartbeat(len(frames), True, 1).seq == len(frames)
        flood.close()
        errors = [f for f in frames if f["type"] == "error"]
        assert errors and errors[-1]["code"] == "bad_frame"
        assert "frames per second; at most 1000" in str(errors[-1]["message"])
        # the good session still gets its votes and the lease: at once on an idle machine;
        # on a loaded one the 600 ms lease may have lapsed between two of its heartbeats,
        # and then the witness waits switch_delay before granting again (bounded here)
        deadline = time.monotonic() + 10
        vote = good.heartbeat(99_999, True, 1)
        while not vote.granted and time.monotonic() < deadline:
            assert vote.seq == 99_999
            time.sleep(0.1)
            vote = good.heartbeat(99_999, True, 1)
        assert vote.granted


def test_trickling_bytes_of_a_frame_does_not_keep_a_session_alive(
    witness: InProcessWitness,
) -> None:
    sock = raw_tls(witness)
    sock.sendall(encode(Hello("c1", "A", "n1")))
    hello_sent = time.monotonic()
    partial = encode(Heartbeat(1, True, 1)) * 3
    closed_at = None
    for byte in partial[:-1]:  # a byte every ~100 ms, never a whole frame
        try:
            sock.sendall(bytes([byte]))
            _, closed = read_frames(sock, timeout=0.1)
        except (ssl.SSLError, OSError):
            closed = True
        if closed:
            closed_at = time.monotonic()
            break
    sock.close()
    assert closed_at is not None, "the trickle kept the session open"
    # closed at the idle deadline counted from the hello, not from the last byte
    assert closed_at - hello_sent < LEASE + 1.0


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:10.1.2.3", "10.1.2.3"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::9", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
    ],
)
def test_pre_hello_cap_counts_ipv4_hosts_and_ipv6_slash_64s(address: str, key: str) -> None:
    from drorch.quorum.server import source_key

    assert source_key(address) == key


def test_ipv6_loopback(pki: Pki, tmp_path: object) -> None:
    from pathlib import Path

    from tests.quorum.conftest import config_text, free_port

    port = free_port()
    path = Path(str(tmp_path)) / "quorumd.yaml"
    path.write_text(config_text(pki, port).replace(f"127.0.0.1:{port}", f'"[::1]:{port}"'))
    w = InProcessWitness(pki, port, path, init=True)
    try:
        v = query_vote(
            f"[::1]:{port}", pki.fingerprints["server"], pki.cert("c1-a"), pki.key("c1-a"),
            "c1", "A", "a1",
        )  # fmt: skip
        assert (v.granted, v.epoch) == (False, 0)
    finally:
        w.stop()
