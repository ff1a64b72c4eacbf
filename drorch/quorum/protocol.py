"""The quorum wire protocol, sans-I/O (see docs/quorum-protocol.md).

A frame is a 4-byte unsigned big-endian length N (1 ≤ N ≤ 65536) followed by N bytes of
UTF-8 JSON that must be an object with a string field `type`.

`ServerProtocol` and `ClientProtocol` know nothing about sockets: feed them the bytes that
arrived and they return events (parsed messages, or one `ProtocolViolation` after which the
connection must be closed). `encode()` turns a message into a frame.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

from drorch.quorum.framing import FrameDecoder
from drorch.quorum.messages import (
    HEADER,
    MAX_FRAME,
    REFUSALS,
    VERSION,
    VERSION_MISMATCH,
    Cleared,
    ClientMessage,
    Current,
    ErrorMessage,
    FrameError,
    Heartbeat,
    Hello,
    Message,
    Outdate,
    Outdated,
    ProtocolViolation,
    Release,
    ServerMessage,
    Vote,
    Welcome,
)

_WIRE: dict[type, Any] = {
    Hello: lambda m: {
        "type": "hello",
        "version": m.version,
        "cluster": m.cluster,
        "site": m.site,
        "node": m.node,
    },
    Heartbeat: lambda m: {"type": "heartbeat", "seq": m.seq, "want": m.want, "nodes": m.nodes},
    Release: lambda m: {"type": "release"},
    Outdate: lambda m: {
        "type": "outdate",
        "volume": m.volume,
        **({"force": True} if m.force else {}),
    },
    Current: lambda m: {
        "type": "current",
        "volume": m.volume,
        **({"serial": m.serial} if m.serial is not None else {}),
    },
    Outdated: lambda m: {
        "type": "outdated",
        "volume": m.volume,
        "epoch": m.epoch,
        "serial": m.serial,
    },
    Cleared: lambda m: {"type": "cleared", "volume": m.volume, "epoch": m.epoch},
    Welcome: lambda m: {
        "type": "welcome",
        "version": m.version,
        "heartbeat_ms": m.heartbeat_ms,
        "lease_ms": m.lease_ms,
    },
    Vote: lambda m: {
        "type": "vote",
        "seq": m.seq,
        "granted": m.granted,
        "epoch": m.epoch,
        "holder": m.holder,
        "lease_ms": m.lease_ms,
        "outdated": list(m.outdated),
        **({"outdated_since": dict(m.outdated_since)} if m.outdated_since else {}),
    },
    ErrorMessage: lambda m: {"type": "error", "code": m.code, "message": m.message},
}
# one encoder/decoder each: json.dumps/loads with options build a new one per call
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _to_wire(msg: Message) -> dict[str, Any]:
    wire: dict[str, Any] = _WIRE[type(msg)](msg)
    return wire


def encode_object(obj: dict[str, Any]) -> bytes:
    """Frame an arbitrary JSON object (tests use it to build hostile frames)."""
    body = _ENCODER.encode(obj).encode("utf-8")
    if not 1 <= len(body) <= MAX_FRAME:
        raise FrameError(f"frame body of {len(body)} bytes is outside 1..{MAX_FRAME}")
    return HEADER.pack(len(body)) + body


NO_OUTDATED = "[]"


def outdated_fragment(since: dict[str, int]) -> str:
    """The JSON text of a vote's `outdated` list (sorted) and, when it is not empty, of
    `outdated_since` (volume -> epoch of the record); built once per record change."""
    if not since:
        return NO_OUTDATED
    names = sorted(since)
    return (
        f'{_ENCODER.encode(names)},"outdated_since":{_ENCODER.encode({v: since[v] for v in names})}'
    )


def encode_vote(
    seq: int,
    granted: bool,
    epoch: int,
    holder: str | None,
    lease_ms: int,
    outdated: str = NO_OUTDATED,
) -> bytes:
    """The frame of one vote, built directly (the daemon sends ten thousand a second).
    `outdated` is the JSON text after `"outdated":` (`outdated_fragment`)."""
    who = "null" if holder is None else _ENCODER.encode(holder)
    body = (
        f'{{"type":"vote","seq":{seq},"granted":{"true" if granted else "false"},'
        f'"epoch":{epoch},"holder":{who},"lease_ms":{lease_ms},"outdated":{outdated}}}'
    ).encode()
    return HEADER.pack(len(body)) + body


def encode(msg: Message) -> bytes:
    """The frame for one message."""
    return encode_object(_to_wire(msg))


# --- decoding ---------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise FrameError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_SCAN: Any = _DECODER.scan_once  # type: ignore[attr-defined]  # set by JSONDecoder.__init__
_MISSING = object()


def parse_body_slow(text: str) -> dict[str, Any]:
    try:
        obj = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise FrameError(f"frame is not valid JSON ({exc.msg} at char {exc.pos})") from exc
    except RecursionError as exc:  # pragma: no cover - same as the fast path
        raise FrameError("frame JSON is nested too deeply") from exc
    except ValueError as exc:  # pragma: no cover - same as the fast path
        raise FrameError(f"frame JSON is not acceptable ({exc})") from exc
    if not isinstance(obj, dict):
        raise FrameError(f"frame must be a JSON object, got {type(obj).__name__}")
    if not isinstance(obj.get("type"), str):
        raise FrameError("frame has no string field 'type'")
    return obj


def parse_body(body: bytes) -> dict[str, Any]:
    """Decode one frame body into a JSON object with a string `type`, or raise FrameError."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError(f"frame is not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        # fast path: the C scanner straight away (no regex for surrounding whitespace);
        # anything unusual goes through the full decoder for its exact error
        obj, end = _SCAN(text, 0)
        if end != len(text):
            obj = _DECODER.decode(text)
    except StopIteration:
        return parse_body_slow(text)
    except json.JSONDecodeError as exc:
        raise FrameError(f"frame is not valid JSON ({exc.msg} at char {exc.pos})") from exc
    except RecursionError as exc:
        raise FrameError("frame JSON is nested too deeply") from exc
    except ValueError as exc:
        # not a JSONDecodeError: an integer longer than sys.get_int_max_str_digits()
        raise FrameError(f"frame JSON is not acceptable ({exc})") from exc
    if not isinstance(obj, dict):
        raise FrameError(f"frame must be a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise FrameError("frame has no string field 'type'")
    return obj


def _field(obj: dict[str, Any], name: str, kind: type) -> Any:
    """The field, of exactly type `kind` (so `true` is not an int, nor `1.0`)."""
    value = obj.get(name, _MISSING)
    if type(value) is kind:
        return value
    if value is _MISSING:
        raise FrameError(f"{obj['type']}: missing field {name!r}")
    got = "null" if value is None else type(value).__name__
    raise FrameError(f"{obj['type']}: field {name!r} must be {kind.__name__}, got {got}")


def _name(obj: dict[str, Any], name: str) -> str:
    value: str = _field(obj, name, str)
    if not value or len(value) > 255:
        raise FrameError(f"{obj['type']}: field {name!r} must be 1..255 characters")
    return value


def _non_negative(obj: dict[str, Any], name: str) -> int:
    value: int = _field(obj, name, int)
    if value < 0:
        raise FrameError(f"{obj['type']}: field {name!r} must be >= 0, got {value}")
    return value


def client_message(obj: dict[str, Any]) -> ClientMessage:
    """Validate a parsed object as a client → server message."""
    kind = obj["type"]
    if kind == "hello":
        version = _field(obj, "version", int)
        if version != VERSION:
            raise FrameError(
                f"protocol version {version} is not supported (this server speaks {VERSION})",
                VERSION_MISMATCH,
            )
        return Hello(_name(obj, "cluster"), _name(obj, "site"), _name(obj, "node"), version)
    if kind == "heartbeat":
        seq, want, nodes = obj.get("seq"), obj.get("want"), obj.get("nodes")
        if type(seq) is int and type(want) is bool and type(nodes) is int and nodes >= 0:
            return Heartbeat(seq, want, nodes)  # the common case, checked in one go
        return Heartbeat(
            _field(obj, "seq", int), _field(obj, "want", bool), _non_negative(obj, "nodes")
        )
    if kind == "release":
        return Release()
    if kind == "outdate":
        force = obj.get("force", False)
        if type(force) is not bool:
            raise FrameError("outdate: field 'force' must be bool")
        return Outdate(_name(obj, "volume"), force)
    if kind == "current":
        serial = obj.get("serial")
        if serial is not None and (type(serial) is not int or serial < 0):
            raise FrameError("current: field 'serial' must be a non-negative integer")
        return Current(_name(obj, "volume"), serial)
    raise FrameError(f"unknown message type {kind!r}")


def _volume_list(obj: dict[str, Any]) -> tuple[str, ...]:
    value = obj.get("outdated", _MISSING)
    if value is _MISSING:
        raise FrameError("vote: missing field 'outdated'")
    if type(value) is not list or not all(type(v) is str and v for v in value):
        raise FrameError("vote: field 'outdated' must be a list of volume names")
    return tuple(value)


def _since(obj: dict[str, Any], names: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    value = obj.get("outdated_since", {})
    if type(value) is not dict or not all(
        type(e) is int and e >= 0 and v in names for v, e in value.items()
    ):
        raise FrameError("vote: field 'outdated_since' must map outdated volumes to epochs")
    return tuple(sorted(value.items()))


def server_message(obj: dict[str, Any]) -> ServerMessage:
    """Validate a parsed object as a server → client message."""
    kind = obj["type"]
    if kind == "welcome":
        return Welcome(
            _non_negative(obj, "heartbeat_ms"),
            _non_negative(obj, "lease_ms"),
            _field(obj, "version", int),
        )
    if kind == "vote":
        holder = obj.get("holder", ...)
        if holder is ...:
            raise FrameError("vote: missing field 'holder'")
        if holder is not None and not isinstance(holder, str):
            raise FrameError("vote: field 'holder' must be a string or null")
        return Vote(
            _field(obj, "seq", int),
            _field(obj, "granted", bool),
            _non_negative(obj, "epoch"),
            holder,
            _non_negative(obj, "lease_ms"),
            outdated := _volume_list(obj),
            _since(obj, outdated),
        )
    if kind == "outdated":
        serial = obj.get("serial", 0)  # a witness from before serials sends none
        if type(serial) is not int or serial < 0:
            raise FrameError("outdated: field 'serial' must be a non-negative integer")
        return Outdated(_name(obj, "volume"), _non_negative(obj, "epoch"), serial)
    if kind == "cleared":
        return Cleared(_name(obj, "volume"), _non_negative(obj, "epoch"))
    if kind == "error":
        return ErrorMessage(_field(obj, "code", str), _field(obj, "message", str))
    raise FrameError(f"unknown message type {kind!r}")


class Phase(Enum):
    AWAITING_HELLO = "awaiting-hello"
    ESTABLISHED = "established"
    CLOSED = "closed"


class ServerProtocol:
    """The server's view of one connection: bytes in → client messages out.

    The first frame must be `hello`; a second `hello` is a violation. On any violation the
    result ends with a `ProtocolViolation`, the phase becomes CLOSED, and later input is
    ignored: the caller sends `error_frame(violation)` and closes the connection."""

    __slots__ = ("_decoder", "phase")

    def __init__(self) -> None:
        self._decoder = FrameDecoder()
        self.phase = Phase.AWAITING_HELLO

    def receive(self, data: bytes | memoryview) -> list[ClientMessage | ProtocolViolation]:
        if self.phase is Phase.CLOSED:
            return []
        events: list[ClientMessage | ProtocolViolation] = []
        try:
            for body in self._decoder.feed(data):
                obj = parse_body(body)
                if obj["type"] == "hello" and self.phase is Phase.ESTABLISHED:
                    raise FrameError("a second hello on one connection")
                msg = client_message(obj)
                if isinstance(msg, Hello):
                    self.phase = Phase.ESTABLISHED
                elif self.phase is Phase.AWAITING_HELLO:
                    raise FrameError(f"the first frame must be hello, not {_kind(msg)}")
                events.append(msg)
            if self._decoder.error is not None:
                raise self._decoder.error
        except FrameError as exc:
            self.phase = Phase.CLOSED
            events.append(ProtocolViolation(exc.code, str(exc)))
        return events


class ClientProtocol:
    """The client's view: bytes in → server messages out (welcome first)."""

    __slots__ = ("_decoder", "phase")

    def __init__(self) -> None:
        self._decoder = FrameDecoder()
        self.phase = Phase.AWAITING_HELLO  # awaiting the server's welcome

    def receive(self, data: bytes | memoryview) -> list[ServerMessage | ProtocolViolation]:
        if self.phase is Phase.CLOSED:
            return []
        events: list[ServerMessage | ProtocolViolation] = []
        try:
            for body in self._decoder.feed(data):
                msg = server_message(parse_body(body))
                if isinstance(msg, ErrorMessage) and msg.code in REFUSALS:
                    events.append(msg)  # a refused outdate/current: the session goes on
                    continue
                if isinstance(msg, ErrorMessage):
                    self.phase = Phase.CLOSED
                    events.append(msg)
                    break
                if isinstance(msg, Welcome):
                    if self.phase is Phase.ESTABLISHED:
                        raise FrameError("a second welcome on one connection")
                    self.phase = Phase.ESTABLISHED
                elif self.phase is Phase.AWAITING_HELLO:
                    raise FrameError(f"the first frame must be welcome, not {_kind(msg)}")
                events.append(msg)
            else:
                if self._decoder.error is not None:
                    raise self._decoder.error
        except FrameError as exc:
            self.phase = Phase.CLOSED
            events.append(ProtocolViolation(exc.code, str(exc)))
        return events


def _kind(msg: Message) -> str:
    return str(_to_wire(msg)["type"])


def error_frame(code: str, message: str) -> bytes:
    """The `error` frame to send before closing (message cut to fit one frame)."""
    return encode(ErrorMessage(code, message[:1000]))
