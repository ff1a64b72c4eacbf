"""The userspace WAN emulator: an asyncio TCP proxy for every inter-site link.

It forwards each `WanLink` of a `WanStateFile` and applies the file's impairment and
partitions (semantics in `drorch.lab.wan`). The file is re-read whenever it is replaced,
so `drorch lab wan ...` and `drorch lab fault partition ...` change a running proxy;
links added to or removed from the file are started or stopped too.

    python -m drorch.lab.wan_proxy --state FILE [--pid-file F] [--seed N]

runs it in the foreground until SIGTERM/SIGINT; `ProxyThread` runs the same proxy on a
thread of the calling process (tests, `drorch lab` on loopback).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import random
import signal
import socket
import struct
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from drorch.lab.wan import Impairment, Schedule, WanError, WanLink, WanState, WanStateFile

CHUNK = 64 * 1024
QUEUE_CHUNKS = 64  # per direction: 4 MiB in flight at most, then the sender is held back
CONNECT_TIMEOUT = 10.0


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a REJECT or a dead middlebox does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


@dataclass(eq=False)
class _Conn:
    link: WanLink
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def reset(self) -> None:
        for w in (self.client, self.upstream):
            if w is not None:
                _reset(w)
        for t in self.tasks:
            t.cancel()


class WanProxy:
    def __init__(self, state_file: WanStateFile, *, seed: int | None = None, poll: float = 0.05):
        self.state_file = state_file
        self.rng = random.Random(seed)
        self.poll = poll
        self.state = WanState()
        self._stamp: str | None = None
        self._servers: dict[WanLink, asyncio.Server] = {}
        self._conns: set[_Conn] = set()
        self._open: dict[str, asyncio.Event] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self.connections = 0  # accepted, for reports and tests

    # ------------------------------------------------------------------ state
    def _gate(self, group: str) -> asyncio.Event:
        if group not in self._open:
            self._open[group] = asyncio.Event()
            self._open[group].set()
        return self._open[group]

    async def _reload(self) -> None:
        stamp = self.state_file.fingerprint()
        if stamp is None or stamp == self._stamp:
            return
        try:
            state, stamp = self.state_file.read_versioned()
        except WanError as exc:
            print(f"wan proxy: {exc}; keeping the previous settings", file=sys.stderr)
            self._stamp = stamp
            return
        if stamp == self._stamp:
            return
        self._stamp = stamp
        self.state = state
        for link in [lk for lk in self._servers if lk not in state.links]:
            self._servers.pop(link).close()
        for link in state.links:
            if link not in self._servers:
                self._servers[link] = await asyncio.start_server(
                    functools.partial(self._accept, link),
                    link.listen[0],
                    link.listen[1],
                    reuse_address=True,
                )
        for group in state.groups:
            kind = state.partitions.get(group)
            gate = self._gate(group)
            if kind is None:
                gate.set()
                continue
            gate.clear()
            if kind == "reset":
                for conn in [c for c in self._conns if c.link.group == group]:
                    conn.reset()
        with contextlib.suppress(OSError):  # a read-only folder: callers will time out
            self.state_file.mark_applied(stamp)

    async def run(self, stop: asyncio.Event, ready: threading.Event | None = None) -> None:
        await self._reload()
        if ready is not None:
            ready.set()
        try:
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll)
                await self._reload()
        finally:
            for server in self._servers.values():
                server.close()
            for conn in list(self._conns):
                conn.reset()
            handlers = [t for t in self._handlers if not t.done()]
            for t in handlers:
                t.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

    # ------------------------------------------------------------------ forwarding
    async def _accept(
        self, link: WanLink, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        me = asyncio.current_task()
        if me is not None:
            self._handlers.add(me)
            me.add_done_callback(self._handlers.discard)
        conn = _Conn(link, writer)
        if self.state.partitions.get(link.group) == "reset":
            _reset(writer)
            return
        self._conns.add(conn)
        try:
            await self._gate(link.group).wait()  # a black hole: accepted, never answered
            if writer.is_closing():
                return  # reset by a `reset` partition while it waited
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*link.target), CONNECT_TIMEOUT
                )
            except (TimeoutError, OSError):
                _reset(writer)
                return
            conn.upstream = up_writer
            conn.tasks = [
                asyncio.ensure_future(self._pipe(conn, reader, up_writer)),
                asyncio.ensure_future(self._pipe(conn, up_reader, writer)),
            ]
            _done, pending = await asyncio.wait(conn.tasks, return_when=asyncio.FIRST_EXCEPTION)
            failed = any(not t.cancelled() and t.exception() for t in _done)
            if failed or pending:
                conn.reset()  # one direction broke: the whole connection goes, as in TCP
                await asyncio.gather(*pending, return_exceptions=True)
            else:
                writer.close()
                up_writer.close()
        finally:
            self._conns.discard(conn)

    async def _pipe(
        self, conn: _Conn, src: asyncio.StreamReader, dst: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        gate = self._gate(conn.link.group)
        schedule = Schedule(self.state.impairment, self.rng)
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUE_CHUNKS)

        async def deliver() -> None:
            while (item := await queue.get()) is not None:
                when, data = item
                await asyncio.sleep(max(0.0, when - loop.time()))
                await gate.wait()
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof():
                dst.write_eof()

        async def read() -> None:
            while True:
                await gate.wait()
                data = await src.read(CHUNK)
                if not data:
                    await queue.put(None)
                    return
                schedule.impairment = self._impairment()
                when = schedule.release(loop.time())
                if when is None:
                    raise ConnectionResetError("loss (reset mode)")
                await queue.put((when, data))

        # Both halves at once: a destination that fails (the target's kernel reset it,
        # its process died) ends the pipe now, so the connection is reset both ways. With
        # the failure seen only at the source's EOF, a client that only sends (the
        # agents' membership dialer) kept sending into a connection ending nowhere.
        reading = asyncio.ensure_future(read())
        delivery = asyncio.ensure_future(deliver())
        try:
            # returns at the first failure, else once the source ended and all of it went
            done, _ = await asyncio.wait((reading, delivery), return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if not task.cancelled() and (exc := task.exception()) is not None:
                    raise exc
        finally:
            reading.cancel()
            delivery.cancel()

    def _impairment(self) -> Impairment:
        return self.state.impairment


class ProxyThread:
    """The proxy on a daemon thread of this process: `start()` returns once every link
    listens; `stop()` closes every listener and connection."""

    def __init__(self, state_file: WanStateFile, *, seed: int | None = None) -> None:
        self.proxy = WanProxy(state_file, seed=seed)
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="wan-proxy", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._stop = asyncio.Event()
        try:
            self._loop.run_until_complete(self.proxy.run(self._stop, self._ready))
        except BaseException as exc:  # reported to the caller by start()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    def start(self, timeout: float = 10.0) -> ProxyThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the WAN proxy did not start listening")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        stop = self._stop
        if stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout)

    def __enter__(self) -> ProxyThread:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drorch.lab.wan_proxy")
    parser.add_argument("--state", type=Path, required=True, help="the WAN state file")
    parser.add_argument("--pid-file", type=Path)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    state_file = WanStateFile(args.state)
    if not state_file.exists():
        print(f"wan proxy: {args.state}: no such state file", file=sys.stderr)
        return 2

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        ready = threading.Event()
        task = asyncio.ensure_future(WanProxy(state_file, seed=args.seed).run(stop, ready))
        while not ready.is_set() and not task.done():
            await asyncio.sleep(0.01)
        if args.pid_file is not None and not task.done():
            args.pid_file.write_text(f"{os.getpid()}\n")
        await task

    try:
        asyncio.run(serve())
    except (OSError, WanError) as exc:
        print(f"wan proxy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
