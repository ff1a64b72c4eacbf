"""`drorch repl serve`: one volume's engine, replication link, NBD export and control socket.

`Daemon` wires the parts and answers control requests; `serve()` runs it in the
foreground until SIGTERM/SIGINT, then flushes everything and returns 0.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from drorch.clock import Clock, SystemClock
from drorch.replication.base import (
    ConnState,
    ReplicationError,
    SplitBrain,
    StaleEpoch,
    UnsafeOperation,
)
from drorch.replication.pyrepl import dual, modeswitch, roles
from drorch.replication.pyrepl.control import ControlServer
from drorch.replication.pyrepl.engine import Engine
from drorch.replication.pyrepl.engine_config import EngineConfig
from drorch.replication.pyrepl.link import Link
from drorch.replication.pyrepl.listener import Address
from drorch.replication.pyrepl.nbd_server import PAYLOAD_TIMEOUT, NbdServer
from drorch.replication.pyrepl.nbd_slots import EVICT_IDLE
from drorch.replication.pyrepl.pointintime import PointInTimeViews, check_label
from drorch.replication.pyrepl.status import engine_status
from drorch.replication.pyrepl.tls import LinkTls

log = logging.getLogger("drorch.pyrepl")

HOUSEKEEPING_INTERVAL = 1.0
GIL_SWITCH_INTERVAL = 0.0005
DEFAULT_CONNECT_WAIT = 10.0
ACCEPT_ONLY_WAIT = 2.0
SET_MODE_OPTIONS = modeswitch.SYNC_OPTIONS + modeswitch.ASYNC_OPTIONS


def parse_address(text: str) -> Address:
    """`HOST:PORT` or `[V6]:PORT` -> (host, port); ValueError with the reason."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def format_address(addr: Address | None) -> str | None:
    if addr is None:
        return None
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class ServeOptions:
    engine: EngineConfig
    control: Path
    listen: Address | None = None
    peer: Address | None = None
    nbd: Address | None = None
    nbd_unix: Path | None = None
    tls: LinkTls | None = None
    nbd_payload_timeout: float = PAYLOAD_TIMEOUT  # a stalled request drops its client
    # with every NBD slot held, a client idle this long makes room for a new one
    nbd_idle_evict: float = EVICT_IDLE


class Daemon:
    def __init__(self, options: ServeOptions, clock: Clock | None = None) -> None:
        self.options = options
        self.clock = clock or SystemClock()
        self.engine = Engine(options.engine, self.clock)
        self.link = Link(
            self.engine,
            options.listen,
            options.peer,
            threading.Event(),
            tls=options.tls,
        )
        self.views = PointInTimeViews(options.engine.name, self.engine.backing, self.clock.now)
        self.nbd: NbdServer | None = None
        if options.nbd is not None or options.nbd_unix is not None:
            self.nbd = NbdServer(
                self.engine,
                options.nbd,
                options.nbd_unix,
                threading.Event(),
                payload_timeout=options.nbd_payload_timeout,
                idle_evict=options.nbd_idle_evict,
                views=self.views,
            )
        self.control = ControlServer(options.control, self.handle, threading.Event())
        self._stop = threading.Event()
        self.shutdown_requested = threading.Event()
        self._housekeeper = threading.Thread(target=self._housekeep, daemon=True)
        self._closed = False

    def start(self) -> None:
        """Start serving. A part that cannot start (an address in use, a control folder
        that does not exist, a socket path too long) raises ReplicationError naming that
        part and the system's reason; everything already started is closed again."""
        stage = f"the replication listener on {format_address(self.options.listen)}"
        try:
            self.link.start()
            if self.nbd is not None:
                where = format_address(self.options.nbd) or self.options.nbd_unix
                stage = f"the NBD export on {where}"
                self.nbd.start()
                self.engine.nbd_uri = self.nbd.uri
            stage = f"the control socket {self.options.control}"
            self.control.start()
        except BaseException as exc:
            try:
                self.close()
            except Exception as cleanup:  # never let the cleanup hide the cause
                log.warning("cleanup after a failed start: %s", cleanup)
            if isinstance(exc, OSError):
                raise ReplicationError(f"cannot start {stage}: {exc.strerror or exc}") from exc
            raise
        self._housekeeper.start()
        log.info(
            "%s: serving as %s (%s mode); replication on %s, peer %s, NBD %s, control %s",
            self.engine.meta.name,
            self.engine.role.value,
            self.engine.mode,
            format_address(self.link.bound),
            format_address(self.options.peer),
            self.engine.nbd_uri,
            self.options.control,
        )

    def _housekeep(self) -> None:
        while not self._stop.wait(HOUSEKEEPING_INTERVAL):
            self.engine.housekeeping()

    def close(self) -> None:
        """Stop everything and flush. Idempotent: a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self.engine.stop_io("the daemon is shutting down")  # frozen I/O: EIO, not held on
        self.control.close()
        if self.nbd is not None:
            self.nbd.close()
        self.link.close()
        session = self.engine.session
        if session is not None:
            session.close("daemon shutting down")
            session.join()
        if self._housekeeper.is_alive():
            self._housekeeper.join(5.0)
        self.views.close()  # a clean stop removes the views' stores
        self.engine.close()

    # ------------------------------------------------------------------ control ops
    def handle(self, op: str, args: dict[str, Any]) -> Any:
        eng = self.engine
        if op == "status":
            data = engine_status(eng).as_dict()
            data["listen"] = format_address(self.link.bound)
            data["peer"] = format_address(self.options.peer)
            data["control"] = str(self.options.control)
            data["pid"] = os.getpid()
            data["outdated_since"] = data["extra"].get("outdated_since")
            data["peer_outdated_since"] = data["extra"].get("peer_outdated_since")
            data["point_in_time"] = [v.describe() for v in self.views.views.values()]
            return data
        if op == "promote":
            epoch = args.get("epoch")
            return {
                "message": roles.promote(
                    eng,
                    None if epoch is None else int(epoch),
                    force=bool(args.get("force")),
                    accept_data_loss=bool(args.get("accept_data_loss")),
                    dry_run=bool(args.get("dry_run")),
                )
            }
        if op == "demote":
            return {"message": roles.demote(eng, dry_run=bool(args.get("dry_run")))}
        if op == "outdate_peer":
            accept = bool(args.get("accept_data_loss"))
            return {"message": roles.outdate_peer(eng, accept_data_loss=accept)}
        # dry runs under their own names: a daemon that does not know one refuses it as
        # unknown, where it would ignore a `dry_run` flag and act
        if op == "would_outdate_peer":
            accept = bool(args.get("accept_data_loss"))
            return {"message": roles.outdate_peer(eng, accept_data_loss=accept, dry_run=True)}
        if op == "would_allow_two_primaries":
            return {"message": dual.would_allow(eng)}
        if op == "would_disconnect":
            return {"message": roles.would_disconnect(eng)}
        if op == "would_shutdown":
            if eng.role.value == "primary":
                raise UnsafeOperation("refusing to stop a primary; demote it first")
            return {"message": "would stop this secondary's daemon (flush, exit 0)"}
        if op in ("set_mode", "would_set_mode"):
            return self._set_mode(args, dry_run=op == "would_set_mode")
        if op == "allow_two_primaries":
            return {"message": dual.allow(eng)}
        if op == "forbid_two_primaries":
            return {"message": dual.forbid(eng)}
        if op == "disconnect":
            return {"message": roles.disconnect(eng)}
        if op == "connect":
            roles.connect(eng)
            return {"connection": self.await_outcome(args).value}
        if op == "resolve":
            if not args.get("discard_local"):
                raise ReplicationError("resolve needs discard_local: name the side to discard")
            message = roles.resolve_discard_local(eng)
            return {"message": message, "connection": self.await_outcome(args).value}
        if op == "verify":
            result = eng.verifier.verify()
            return {
                "regions_checked": result.regions_checked,
                "region_size": result.region_size,
                "out_of_sync": list(result.out_of_sync),
                "out_of_sync_bytes": len(result.out_of_sync) * result.region_size,
            }
        if op == "shutdown":
            if eng.role.value == "primary":
                raise UnsafeOperation("refusing to stop a primary; demote it first")
            self.shutdown_requested.set()
            return {"message": "stopping"}
        if op == "flush":
            eng.flush_local()
            return {"message": "flushed"}
        if op in ("pit_take", "pit_drop", "pit_list"):
            return self._point_in_time(op, args)
        raise ReplicationError(f"unknown control operation {op!r}")

    def _set_mode(self, args: dict[str, Any], *, dry_run: bool) -> dict[str, Any]:
        """`set_mode` (modeswitch.request) and its dry run `would_set_mode`
        (modeswitch.would_request): the same arguments; a real request also answers with
        the switch's progress (modeswitch.status)."""
        eng = self.engine
        options = {k: args.get(k) for k in SET_MODE_OPTIONS}
        mode, accept = str(args.get("mode")), bool(args.get("accept_data_loss"))
        with eng.cond:
            if dry_run:
                message = modeswitch.would_request(eng, mode, options, accept_data_loss=accept)
                return {"message": message, "mode": eng.mode}
            message = modeswitch.request(eng, mode, options, accept_data_loss=accept)
            return {"message": message, **modeswitch.status(eng), "mode": eng.mode}

    def _point_in_time(self, op: str, args: dict[str, Any]) -> Any:
        """Point-in-time views (pointintime.py): take LABEL [store], drop LABEL, list."""
        if op == "pit_list":
            return {"views": [v.describe() for v in self.views.views.values()]}
        label = check_label(str(args.get("label") or ""))
        if op == "pit_drop":
            dropped = self.views.drop(label)
            return {"message": f"dropped {label}" if dropped else f"no view {label!r}"}
        if self.nbd is None:
            raise ReplicationError("a point-in-time view is an NBD export: serve with --nbd")
        backing = self.options.engine.backing
        store = Path(str(args.get("store") or backing.with_name(f"{backing.name}.pit-{label}")))
        view = self.views.take(label, store)
        uri = self.nbd.uri
        return {
            **view.describe(),
            "uri": uri.rsplit("/", 1)[0] + "/" + view.export if uri else None,
        }

    def await_outcome(self, args: dict[str, Any]) -> ConnState:
        """Wait (bounded) until a connection attempt connected, or was refused."""
        eng = self.engine
        wait = float(args.get("wait", DEFAULT_CONNECT_WAIT))
        if self.options.peer is None:  # we only accept: the peer dials every 0.5 s
            wait = min(wait, ACCEPT_ONLY_WAIT)
        deadline = self.clock.monotonic() + wait
        with eng.cond:
            attempts = eng.dial_attempts
            while True:
                state = eng.connection()
                if state not in (ConnState.CONNECTING, ConnState.STANDALONE):
                    return state
                if eng.split_brain is not None:
                    sb = eng.split_brain
                    raise SplitBrain(f"split brain: {sb['reason']}", sb["local"], sb["peer"])
                if not eng.want_connect:
                    message = eng.last_error or "StandAlone"
                    if message.startswith("stale-epoch"):
                        raise StaleEpoch(message)
                    raise ReplicationError(message)
                left = deadline - self.clock.monotonic()
                if left <= 0 or eng.dial_attempts >= attempts + 2:
                    return state  # the peer is not there or not accepting (yet)
                eng.cond.wait(min(left, 0.2))


def serve(options: ServeOptions) -> int:
    """Run in the foreground until SIGTERM or SIGINT; flush and return 0."""
    # I/O threads hand the GIL to each other constantly; the default 5 ms switch interval
    # would let one thread's Python work stall another's finished system call.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    daemon = Daemon(options)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: flushing and stopping", signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        daemon.start()
        while not (stop.wait(0.5) or daemon.shutdown_requested.is_set()):
            pass
    finally:
        daemon.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("%s: stopped cleanly", options.engine.name)
    return 0
