"""Start-up and shutdown of `drorch quorumd`, in the order the rules demand:

1. validate the whole config, TLS material included (exit 2, `FILE:LINE:COL: message`);
2. read the state (exit 1 when missing/unreadable), or with `--init` create a fresh one
   (exit 1 when one exists);
3. raise the recorded maxima of lease and switch delay to the configured values, persist;
4. restart grace = recorded max lease + max switch delay, timed from when the state was
   read (none after `--init`: nobody can hold a lease from a daemon that never ran);
5. serve until SIGTERM/SIGINT, persist, exit 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import signal
import ssl
import sys
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from drorch.clock import Clock, SystemClock
from drorch.model.reports import ConfigError, Position, ReportItem
from drorch.quorum.config import QuorumdConfig, load_config
from drorch.quorum.grants import DurableLease, GrantBook
from drorch.quorum.persister import PersistFailed
from drorch.quorum.server import QuorumServer
from drorch.quorum.state import QuorumState, StateError, create_state, read_state, write_state
from drorch.quorum.tls import server_context

log = logging.getLogger("drorch.quorumd")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
GC_YOUNG_THRESHOLD = 20_000


def load_validated(config_path: Path) -> tuple[QuorumdConfig, ssl.SSLContext]:
    """The config and its TLS context; ConfigError for any problem."""
    config = load_config(config_path)
    try:
        context = server_context(config.cert, config.key, config.trusted_cert_files())
    except (ssl.SSLError, OSError, ValueError) as exc:
        where = Position(str(config_path), 1, 1)
        raise ConfigError(
            [ReportItem("tls", f"cannot build the TLS context: {exc}", where)]
        ) from exc
    return config, context


def open_state(
    config: QuorumdConfig, init: bool, clock: Clock, recover_epoch: int | None = None
) -> tuple[QuorumState, GrantBook]:
    """Read or create the state and derive the restart grace.

    `recover_epoch` (with `init`) rebuilds a *lost* state: every configured cluster starts
    at that epoch (above any a replica has seen) and the restart grace applies, since a
    site may still hold a lease from the witness that lost its state.

    Raises StateError (missing/unreadable state) or FileExistsError (`--init` on an existing
    state); both mean exit 1."""
    if init:
        start = {} if recover_epoch is None else dict.fromkeys(config.clusters, recover_epoch)
        state = create_state(
            config.state_file,
            config.lease_ms,
            config.switch_delay_ms,
            {name: DurableLease(epoch, None) for name, epoch in start.items()},
        )
        if recover_epoch is not None:
            log.warning(
                "recovering a lost state: %d cluster(s) start at epoch %d",
                len(start),
                recover_epoch,
            )
    else:
        state = read_state(config.state_file)
    read_at = clock.monotonic()
    raised = False
    if config.lease_ms > state.max_lease_ms:
        state.max_lease_ms, raised = config.lease_ms, True
    if config.switch_delay_ms > state.max_switch_delay_ms:
        state.max_switch_delay_ms, raised = config.switch_delay_ms, True
    if raised:
        write_state(config.state_file, state)
    grace_until = None
    if not init or recover_epoch is not None:
        grace = (state.max_lease_ms + state.max_switch_delay_ms) / 1000
        grace_until = read_at + grace
        log.info(
            "restart grace: no new grants for %.3fs (max lease %d ms + max switch delay %d ms)",
            grace,
            state.max_lease_ms,
            state.max_switch_delay_ms,
        )
    grants = GrantBook(
        config.lease_ms / 1000,
        config.switch_delay_ms / 1000,
        durable=state.clusters,
        grace_until=grace_until,
    )
    return state, grants


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (one fd per client); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def fit_to_fd_limit(config: QuorumdConfig, fds: int) -> QuorumdConfig:
    """Keep the pre-hello caps at half the descriptor limit at most. A cap at or above
    the limit is never reached: accept() fails with EMFILE first, nobody is evicted, and
    a flood of unfinished handshakes keeps new clients out (attack: at a 128-descriptor
    limit a legitimate client needed 12 s, two TLS timeouts, for its welcome)."""
    cap = max(1, fds // 2)
    if config.max_unauthenticated <= cap:
        return config
    log.warning(
        "max_unauthenticated %d lowered to %d: half of the file descriptor limit %d",
        config.max_unauthenticated,
        cap,
        fds,
    )
    per_address = min(config.max_unauthenticated_per_address, cap)
    return replace(config, max_unauthenticated=cap, max_unauthenticated_per_address=per_address)


def tune_garbage_collector() -> None:
    """Keep the cyclic collector off the vote path.

    Votes allocate short-lived, acyclic objects that reference counting frees at once, yet
    each allocation counts towards a collection: at 10,000 heartbeats a second the default
    threshold (700) runs ~150 young collections a second and, now and then, a full one over
    every session (tens of milliseconds, straight into the vote latency). So: freeze what
    start-up built (config, pins, TLS context) out of the collector's sight, and collect the
    young generation about once a second instead."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 50)


async def _serve(server: QuorumServer) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, server.log_status)
    try:
        await server.serve(stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            loop.remove_signal_handler(sig)


def run(
    config_path: Path,
    init: bool,
    err: TextIO | None = None,
    clock: Clock | None = None,
    recover_epoch: int | None = None,
) -> int:
    """The whole daemon; returns the exit code."""
    err = err or sys.stderr
    clock = clock or SystemClock()
    try:
        config, context = load_validated(config_path)
    except ConfigError as exc:
        for report in exc.reports:
            print(report, file=err)
        return EXIT_CONFIG
    try:
        state, grants = open_state(config, init, clock, recover_epoch)
    except (StateError, FileExistsError) as exc:
        print(f"quorumd: {exc}", file=err)
        return EXIT_FAILURE
    except OSError as exc:
        print(f"quorumd: cannot write the state file {config.state_file}: {exc}", file=err)
        return EXIT_FAILURE
    fds = raise_fd_limit()
    config = fit_to_fd_limit(config, fds)
    server = QuorumServer(config, context, grants, state, clock)
    try:
        host, port = server.bind()
    except OSError as exc:
        print(f"quorumd: cannot listen on {config.host}:{config.port}: {exc}", file=err)
        return EXIT_FAILURE
    log.info("listening on %s:%d (file descriptor limit %d)", host, port, fds)
    tune_garbage_collector()
    try:
        asyncio.run(_serve(server))
    except PersistFailed as exc:
        print(f"quorumd: stopped, the state could not be persisted: {exc}", file=err)
        return EXIT_FAILURE
    log.info("stopped; state persisted to %s", config.state_file)
    return EXIT_OK
