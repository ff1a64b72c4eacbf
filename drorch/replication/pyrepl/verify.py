"""Online verify: compare region checksums with the peer, in stream order.

Digests taken on the writing side (the primary) are computed under the engine lock and
queued behind every write already queued; the other side computes its own when its
receiver reaches that frame, i.e. after applying exactly those writes. So a verify
during live writes reports real differences only. A secondary that starts a verify asks
the primary for digests (VERIFY_ASK) instead. Mismatching regions are marked dirty so
the next resync repairs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drorch.replication.base import ConnState, ReplicationError, Role, VerifyResult
from drorch.replication.pyrepl import wire
from drorch.replication.pyrepl.wire import FrameType

if TYPE_CHECKING:
    from drorch.replication.pyrepl.engine import Engine
    from drorch.replication.pyrepl.session import PeerSession

BATCH_REGIONS = 256
BATCH_DEADLINE = 60.0


class Verifier:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.results: dict[int, list[int] | None] = {}
        self.next_id = 1

    def _digests(self, first: int, count: int) -> list[str]:
        eng = self.engine
        rs = eng.config.region_size
        return [eng.backing.digest((first + i) * rs, rs) for i in range(count)]

    def verify(self) -> VerifyResult:
        eng = self.engine
        rs = eng.config.region_size
        regions = eng.bitmap.regions
        mismatched: list[int] = []
        for first in range(0, regions, BATCH_REGIONS):
            count = min(BATCH_REGIONS, regions - first)
            mismatched += self._batch(first, count)
        with eng.lock:
            if eng.role == Role.PRIMARY:
                for region in mismatched:
                    eng.ship.differs(region)  # no longer "just activity": really differs
                    eng.bitmap.set_region(region)
                eng.bitmap.sync()
        return VerifyResult(regions, tuple(r * rs for r in mismatched), rs)

    def _batch(self, first: int, count: int) -> list[int]:
        eng = self.engine
        with eng.lock:
            s = eng.session
            if s is None or not s.alive or s.state != ConnState.CONNECTED:
                raise ReplicationError("verify needs a connected peer that is not resyncing")
            vid = self.next_id
            self.next_id += 1
            self.results[vid] = None
            body: dict[str, Any] = {"id": vid, "first": first, "count": count}
            if eng.role == Role.PRIMARY or s.peer.role != Role.PRIMARY:
                body |= {"digests": self._digests(first, count), "answer": True}
                s.out.append((wire.json_frame(FrameType.VERIFY_DIGESTS, body),))
            else:
                s.out.append((wire.json_frame(FrameType.VERIFY_ASK, body),))
            s.send_cond.notify()
            deadline = eng.clock.monotonic() + BATCH_DEADLINE
            while s.alive and self.results[vid] is None and eng.clock.monotonic() < deadline:
                eng.cond.wait(1.0)
            result = self.results.pop(vid)
            if result is None:
                raise ReplicationError("verify interrupted: the peer did not answer")
            return result

    # called by the receiver thread
    def on_request(self, session: PeerSession, ftype: FrameType, body: dict[str, Any]) -> None:
        first, count = int(body["first"]), int(body["count"])
        if first < 0 or count < 0 or first + count > self.engine.bitmap.regions:
            raise wire.WireError(f"verify range {first}+{count} is outside the volume")
        if ftype == FrameType.VERIFY_ASK:
            with self.engine.lock:
                reply = {"id": body["id"], "first": first, "count": count, "answer": False}
                reply["digests"] = self._digests(first, count)
                session.out.append((wire.json_frame(FrameType.VERIFY_DIGESTS, reply),))
                session.send_cond.notify()
            return
        theirs = body["digests"]
        if not isinstance(theirs, list) or len(theirs) != count:
            raise wire.WireError("verify digests do not match the region count")
        ours = self._digests(first, count)
        mismatched = [first + i for i in range(count) if ours[i] != theirs[i]]
        if body.get("answer"):
            result = {"id": body["id"], "mismatched": mismatched}
            session.send_now(wire.json_frame(FrameType.VERIFY_RESULT, result))
        else:
            self._complete(int(body["id"]), mismatched)

    def on_result(self, session: PeerSession, body: dict[str, Any]) -> None:
        self._complete(int(body["id"]), [int(r) for r in body["mismatched"]])

    def _complete(self, vid: int, mismatched: list[int]) -> None:
        with self.engine.lock:
            if vid in self.results:
                self.results[vid] = mismatched
            self.engine.cond.notify_all()
