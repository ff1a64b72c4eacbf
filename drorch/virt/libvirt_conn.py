"""Connections to libvirtd that cannot hang the caller.

* `libvirt` is imported lazily: only the libvirt driver needs the `[libvirt]` extra.
* `libvirt.open` has no timeout; `open_connection` runs it in a worker thread and gives
  up after `connect_timeout` (a connection that arrives late is closed by that thread).
* Keepalive (`virConnectSetKeepAlive`) needs libvirt's event loop running; the default
  implementation is registered once per process and driven by one daemon thread. With it
  a connection whose peer went silent is closed after interval * (count + 1) seconds and
  every call on it fails instead of blocking.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from drorch.clock import Clock
from drorch.model.types import Node, Site
from drorch.virt.base import HypervisorError, NoSuchVM
from drorch.wait import wait_until

_event_loop_lock = threading.Lock()
_event_loop_thread: threading.Thread | None = None
_quiet = False


def libvirt_module() -> Any:
    """The `libvirt` module, or a HypervisorError that says how to install it."""
    try:
        import libvirt
    except ImportError:
        raise HypervisorError(
            "the libvirt hypervisor driver needs libvirt-python: pip install 'drorch[libvirt]'"
            " (it builds against the libvirt-dev system package)"
        ) from None
    global _quiet
    if not _quiet:
        # libvirt prints every error to stderr by default; ours carry them instead
        libvirt.registerErrorHandler(_ignore_error, None)
        _quiet = True
    return libvirt


def _ignore_error(_ctx: object, _err: object) -> None:
    return None


def _run_event_loop(lv: Any) -> None:
    while True:  # the process-wide libvirt event loop; a daemon thread, ends with the process
        lv.virEventRunDefaultImpl()


def ensure_event_loop() -> None:
    """Register libvirt's default event loop and start its thread (once per process)."""
    global _event_loop_thread
    lv = libvirt_module()
    with _event_loop_lock:
        if _event_loop_thread is not None:
            return
        lv.virEventRegisterDefaultImpl()
        thread = threading.Thread(
            target=_run_event_loop, args=(lv,), name="libvirt-event-loop", daemon=True
        )
        thread.start()
        _event_loop_thread = thread


def is_remote(uri: str) -> bool:
    """True for URIs served by a daemon (keepalive applies); False for test:///..."""
    return not uri.startswith("test:")


class _Opener:
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.conn: Any = None
        self.error: BaseException | None = None
        self.abandoned = False
        self.done = threading.Event()
        self.lock = threading.Lock()

    def __call__(self) -> None:
        lv = libvirt_module()
        try:
            conn = lv.open(self.uri)
        except lv.libvirtError as exc:
            self.error = exc
            conn = None
        with self.lock:
            if self.abandoned and conn is not None:
                conn.close()
                conn = None
            self.conn = conn
        self.done.set()


def open_connection(
    uri: str,
    clock: Clock,
    *,
    connect_timeout: float = 10.0,
    keepalive: tuple[int, int] = (2, 3),
) -> Any:
    """Open `uri` within `connect_timeout` seconds, with keepalive (interval s, count)
    on daemon connections. HypervisorError says which URI failed and why."""
    lv = libvirt_module()
    if is_remote(uri):
        ensure_event_loop()
    opener = _Opener(uri)
    thread = threading.Thread(target=opener, name=f"libvirt-open {uri}", daemon=True)
    thread.start()
    wait_until(clock, opener.done.is_set, clock.monotonic() + connect_timeout, interval=0.02)
    with opener.lock:
        if not opener.done.is_set():
            opener.abandoned = True
            raise HypervisorError(
                f"could not connect to {uri} within {connect_timeout:g} s "
                "(host down or network partitioned?)"
            )
    if opener.error is not None or opener.conn is None:
        raise HypervisorError(f"could not connect to {uri}: {describe(opener.error)}")
    conn = opener.conn
    if is_remote(uri):
        interval, count = keepalive
        try:
            conn.setKeepAlive(interval, count)
        except lv.libvirtError as exc:
            conn.close()
            raise HypervisorError(f"{uri}: keepalive refused: {describe(exc)}") from None
    return conn


def describe(exc: BaseException | None) -> str:
    """libvirt's own message without its 'libvirt: ' noise."""
    if exc is None:
        return "unknown error"
    get = getattr(exc, "get_error_message", None)
    message = get() if callable(get) else None
    return str(message or exc).strip()


def is_no_domain(exc: BaseException) -> bool:
    lv = libvirt_module()
    get = getattr(exc, "get_error_code", None)
    return callable(get) and get() == lv.VIR_ERR_NO_DOMAIN


def translate(exc: BaseException, what: str) -> HypervisorError:
    """A libvirtError as our exception: NoSuchVM for a missing domain."""
    if is_no_domain(exc):
        return NoSuchVM(f"{what}: {describe(exc)}")
    return HypervisorError(f"{what}: {describe(exc)}")


def site_node(site: Site) -> Node:
    """The node whose libvirt_uri speaks for the site (the first node by default)."""
    for node in site.nodes:
        if node.libvirt_uri:
            return node
    return site.nodes[0]


def derived_peer_uri(uri: str) -> str | None:
    """A URI with a host (qemu+tls://h/system) is reachable from the peer as is."""
    parts = urlsplit(uri)
    return uri if parts.hostname and "+unix" not in parts.scheme else None


def socket_relative_to(uri: str, absolute: Callable[[str], str]) -> str:
    """`qemu+unix:///system?socket=REL` with a relative socket path, made absolute the way
    every other path in the cluster file is: relative to the file's folder (so a lab
    config in the repository names no one machine's checkout)."""
    head, sep, query = uri.partition("?")
    if not sep:
        return uri
    parts = []
    for part in query.split("&"):
        key, eq, value = part.partition("=")
        if key == "socket" and eq and value and not value.startswith("/"):
            part = f"socket={absolute(value)}"
        parts.append(part)
    return f"{head}?{'&'.join(parts)}"
