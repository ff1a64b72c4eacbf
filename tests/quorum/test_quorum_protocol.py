"""The sans-I/O wire protocol: bytes in, events out."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drorch.quorum.messages import (
    BAD_FRAME,
    MAX_FRAME,
    VERSION_MISMATCH,
    ErrorMessage,
    FrameError,
    Heartbeat,
    Hello,
    ProtocolViolation,
    Release,
    Vote,
    Welcome,
)
from drorch.quorum.protocol import (
    ClientProtocol,
    FrameDecoder,
    Phase,
    ServerProtocol,
    encode,
    encode_object,
)


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


HELLO = encode(Hello("c1", "A", "n1"))


def test_encode_is_length_prefixed_compact_json() -> None:
    data = encode(Heartbeat(7, True, 2))
    (n,) = struct.unpack(">I", data[:4])
    assert n == len(data) - 4
    assert json.loads(data[4:]) == {"type": "heartbeat", "seq": 7, "want": True, "nodes": 2}
    vote = json.loads(encode(Vote(7, False, 3, None, 3000))[4:])
    assert vote == {
        "type": "vote",
        "seq": 7,
        "granted": False,
        "epoch": 3,
        "holder": None,
        "lease_ms": 3000,
        "outdated": [],
    }
    assert json.loads(encode(Welcome(1000, 3000))[4:]) == {
        "type": "welcome",
        "version": 1,
        "heartbeat_ms": 1000,
        "lease_ms": 3000,
    }


def test_server_parses_hello_heartbeat_release_fed_byte_by_byte() -> None:
    proto = ServerProtocol()
    stream = HELLO + encode(Heartbeat(1, True, 2)) + encode(Release())
    events = [e for b in stream for e in proto.receive(bytes([b]))]
    assert events == [Hello("c1", "A", "n1"), Heartbeat(1, True, 2), Release()]
    assert proto.phase is Phase.ESTABLISHED


def test_several_frames_in_one_chunk() -> None:
    proto = ServerProtocol()
    events = proto.receive(HELLO + encode(Heartbeat(1, False, 0)) + encode(Heartbeat(2, True, 1)))
    assert events[1:] == [Heartbeat(1, False, 0), Heartbeat(2, True, 1)]


BAD_STREAMS = [
    (struct.pack(">I", 0), "outside 1..65536"),
    (struct.pack(">I", MAX_FRAME + 1), "outside 1..65536"),
    (struct.pack(">I", 0xFFFFFFFF), "outside 1..65536"),
    (frame(b"\xff\xfe"), "not valid UTF-8"),
    (frame(b"{not json"), "not valid JSON"),
    (frame(b"[1,2]"), "must be a JSON object"),
    (frame(b'{"seq":1}'), "no string field 'type'"),
    (frame(b'{"type":5}'), "no string field 'type'"),
    (frame(b'{"type":"hello","version":1,"cluster":"c","site":"A","node":"n"} NaN'), "JSON"),
    (frame(b'{"type":"dance"}'), "unknown message type"),
    (frame(b'{"type":"hello","version":1,"cluster":"c","site":"A"}'), "missing field 'node'"),
    (frame(b'{"type":"hello","version":"1","cluster":"c","site":"A","node":"n"}'), "version"),
    (frame(b'{"type":"hello","version":1,"cluster":7,"site":"A","node":"n"}'), "cluster"),
    (frame(b'{"type":"hello","version":1,"cluster":"","site":"A","node":"n"}'), "1..255"),
    (encode(Heartbeat(1, True, 1)), "first frame must be hello"),
    (HELLO + HELLO, "second hello"),
    (HELLO + frame(b'{"type":"heartbeat","seq":true,"want":true,"nodes":1}'), "'seq' must be"),
    (HELLO + frame(b'{"type":"heartbeat","seq":1,"want":1,"nodes":1}'), "'want' must be bool"),
    (HELLO + frame(b'{"type":"heartbeat","seq":1,"want":true}'), "missing field 'nodes'"),
    (HELLO + frame(b'{"type":"heartbeat","seq":1,"want":true,"nodes":-1}'), ">= 0"),
    (HELLO + frame(b'{"type":"heartbeat","seq":1.5,"want":true,"nodes":1}'), "'seq' must be int"),
    (HELLO + frame(b'{"type":"heartbeat","seq":NaN,"want":true,"nodes":1}'), "NaN"),
    (HELLO + frame(b'{"type":"vote","seq":1}'), "unknown message type 'vote'"),
]


@pytest.mark.parametrize(("stream", "why"), BAD_STREAMS)
def test_violations_end_in_one_bad_frame_event(stream: bytes, why: str) -> None:
    proto = ServerProtocol()
    events = proto.receive(stream)
    assert isinstance(events[-1], ProtocolViolation)
    assert events[-1].code == BAD_FRAME
    assert why in events[-1].message
    assert proto.phase is Phase.CLOSED
    assert proto.receive(HELLO) == []  # a closed connection takes nothing more


def test_oversized_length_is_rejected_before_the_body_arrives() -> None:
    proto = ServerProtocol()
    events = proto.receive(struct.pack(">I", 10_000_000))
    assert events == [ProtocolViolation(BAD_FRAME, "frame length 10000000 is outside 1..65536")]


def test_largest_frame_is_accepted_and_one_more_byte_is_not() -> None:
    pad = "x" * (
        MAX_FRAME - len(b'{"type":"hello","version":1,"cluster":"c","site":"A","node":"n","p":""}')
    )
    obj = {"type": "hello", "version": 1, "cluster": "c", "site": "A", "node": "n", "p": pad}
    data = encode_object(obj)
    assert len(data) == 4 + MAX_FRAME
    assert ServerProtocol().receive(data) == [Hello("c", "A", "n")]
    obj["p"] = pad + "x"
    with pytest.raises(FrameError):
        encode_object(obj)


def test_unknown_version_gets_the_version_code() -> None:
    proto = ServerProtocol()
    body = b'{"type":"hello","version":2,"cluster":"c","site":"A","node":"n"}'
    (event,) = proto.receive(frame(body))
    assert isinstance(event, ProtocolViolation)
    assert event.code == VERSION_MISMATCH
    assert "version 2" in event.message


def test_extra_fields_are_tolerated_for_forward_compatibility() -> None:
    proto = ServerProtocol()
    body = b'{"type":"hello","version":1,"cluster":"c","site":"A","node":"n","agent":"x"}'
    assert proto.receive(frame(body)) == [Hello("c", "A", "n")]


def test_client_protocol_welcome_then_votes_and_error() -> None:
    proto = ClientProtocol()
    events = proto.receive(
        encode(Welcome(100, 300))
        + encode(Vote(1, True, 4, "A", 300))
        + encode(ErrorMessage("bad_frame", "x"))
        + encode(Vote(2, True, 4, "A", 300))
    )
    assert events == [Welcome(100, 300), Vote(1, True, 4, "A", 300), ErrorMessage("bad_frame", "x")]
    assert proto.phase is Phase.CLOSED


def test_client_protocol_rejects_vote_before_welcome_and_bad_holder() -> None:
    (event,) = ClientProtocol().receive(encode(Vote(1, True, 4, "A", 300)))
    assert isinstance(event, ProtocolViolation)
    assert "welcome" in event.message
    proto = ClientProtocol()
    bad = frame(b'{"type":"vote","seq":1,"granted":true,"epoch":1,"holder":5,"lease_ms":1}')
    assert isinstance(proto.receive(encode(Welcome(1, 2)) + bad)[-1], ProtocolViolation)


def test_decoder_keeps_partial_frames() -> None:
    dec = FrameDecoder()
    data = encode(Release())
    assert dec.feed(data[:3]) == []
    assert dec.feed(data[3:6]) == []
    assert dec.feed(data[6:]) == [data[4:]]
    assert dec.buffered == 0


# --- fuzzing -----------------------------------------------------------------------------

client_messages = st.one_of(
    st.builds(Heartbeat, st.integers(0, 2**62), st.booleans(), st.integers(0, 64)),
    st.just(Release()),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(client_messages, max_size=20), st.data())
def test_fuzz_any_chunking_of_valid_frames_gives_the_same_messages(
    messages: list[Heartbeat | Release], data: st.DataObject
) -> None:
    stream = HELLO + b"".join(encode(m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    proto = ServerProtocol()
    events = []
    last = 0
    for cut in [*cuts, len(stream)]:
        events += proto.receive(stream[last:cut])
        last = cut
    assert events == [Hello("c1", "A", "n1"), *messages]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes_never_raise_and_close_on_violation(garbage: bytes) -> None:
    proto = ServerProtocol()
    events = proto.receive(HELLO + garbage)
    assert events[0] == Hello("c1", "A", "n1")
    violations = [e for e in events if isinstance(e, ProtocolViolation)]
    assert len(violations) <= 1
    if violations:
        assert events[-1] is violations[0]
        assert proto.phase is Phase.CLOSED


def _nest(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    # a named function: Hypothesis checks a lambda's argument use by reading its source,
    # which fails when the file changes under a running test session
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    _nest,
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["type", "seq", "want", "nodes", "version", "cluster", "site", "node"]),
        json_values | st.sampled_from(["hello", "heartbeat", "release"]),
    )
)
def test_fuzz_json_objects_are_messages_or_one_violation(obj: dict[str, object]) -> None:
    proto = ServerProtocol()
    events = proto.receive(HELLO + encode_object(obj))
    assert len(events) == 2
    event = events[1]
    if isinstance(event, ProtocolViolation):
        assert event.code == BAD_FRAME
    else:
        assert obj["type"] in ("heartbeat", "release")
