"""`SSHRunner`: run commands on a remote node with paramiko (key auth, one reused connection).

Host keys: unknown hosts are REJECTED unless `accept_new=True` (then the new key is
recorded in `known_hosts`, like `StrictHostKeyChecking=accept-new`); a changed key is
always refused. Transient connection errors (refused, reset, timed out, no banner yet)
are retried with tenacity until `connect_deadline` seconds have passed in total; auth and
host-key failures are not retried.

The remote command runs through the login shell as `echo PID; exec CMD` so a timeout (or
closing a stream) can kill the remote process group: sshd makes each session's command a
session leader, so its pid is its process-group id.
"""

from __future__ import annotations

import shlex
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import paramiko
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential

from drorch.clock import Clock, SystemClock
from drorch.model.address import SshTarget, parse_ssh_target
from drorch.remote.base import (
    CommandFailed,
    CommandResult,
    CommandRunner,
    CommandTimeout,
    RunnerConnectionError,
)

# Worth retrying: the host or sshd may be starting, or the network blipped.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    paramiko.ssh_exception.NoValidConnectionsError,
    ConnectionRefusedError,
    ConnectionResetError,
    TimeoutError,
    socket.timeout,
    EOFError,
    paramiko.SSHException,  # e.g. "Error reading SSH protocol banner"
)
# Never retried: retrying cannot fix them and could lock an account out.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    paramiko.AuthenticationException,
    paramiko.BadHostKeyException,
)
_PID_MARK = "DRORCH-PID "
_POLL = 0.05


class UnknownHostKey(paramiko.SSHException):
    """The server's host key is not in known_hosts and accept_new is off."""


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise UnknownHostKey(
            f"host key of {hostname} ({key.get_name()} {key.fingerprint}) is not in known_hosts;"
            " verify it and add it, or set accept_new to trust a new host"
        )


# What ends the connection attempt at once, with the server's reason.
REFUSED_ERRORS: tuple[type[BaseException], ...] = (*PERMANENT_ERRORS, UnknownHostKey)
# What is reported as "cannot connect" once the deadline has passed.
UNREACHABLE_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, OSError)


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS) and not isinstance(exc, REFUSED_ERRORS)


class SSHRunner(CommandRunner):
    def __init__(
        self,
        target: SshTarget | str,
        *,
        key_filename: str | Path | None = None,
        known_hosts: str | Path | None = None,
        accept_new: bool = False,
        connect_timeout: float = 10.0,
        connect_deadline: float = 30.0,
        clock: Clock | None = None,
    ) -> None:
        self.target = parse_ssh_target(target) if isinstance(target, str) else target
        self.key_filename = str(key_filename) if key_filename else None
        self.known_hosts = Path(known_hosts) if known_hosts else Path.home() / ".ssh/known_hosts"
        self.accept_new = accept_new
        self.connect_timeout = connect_timeout
        self.connect_deadline = connect_deadline
        self.clock = clock or SystemClock()
        self._client: paramiko.SSHClient | None = None
        self.connect_attempts = 0

    # -- connection --------------------------------------------------------------------

    def _new_client(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        if self.known_hosts.exists():
            client.load_host_keys(str(self.known_hosts))
        if self.accept_new:
            # AutoAddPolicy saves to the file given to load_host_keys; make sure there is one.
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            self.known_hosts.touch(exist_ok=True)
            client.load_host_keys(str(self.known_hosts))
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        else:
            client.set_missing_host_key_policy(_RejectUnknown())
        return client

    def _connect_once(self, deadline: float) -> paramiko.SSHClient:
        self.connect_attempts += 1
        timeout = max(0.1, min(self.connect_timeout, deadline - self.clock.monotonic()))
        client = self._new_client()
        try:
            client.connect(
                self.target.host,
                port=self.target.port,
                username=self.target.user,
                key_filename=self.key_filename,
                look_for_keys=self.key_filename is None,
                allow_agent=self.key_filename is None,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
            )
        except BaseException:
            client.close()
            raise
        return client

    def _connect(self) -> paramiko.SSHClient:
        if self._client is not None:
            transport = self._client.get_transport()
            if transport is not None and transport.is_active():
                return self._client
            self._client.close()
            self._client = None
        start = self.clock.monotonic()
        deadline = start + self.connect_deadline

        def out_of_time(state: RetryCallState) -> bool:
            return self.clock.monotonic() >= deadline - 0.05

        retrying = Retrying(
            retry=retry_if_exception(_is_transient),
            stop=out_of_time,
            wait=wait_exponential(multiplier=0.2, max=2.0),
            sleep=lambda s: self.clock.sleep(min(s, max(0.0, deadline - self.clock.monotonic()))),
            reraise=True,
        )
        try:
            self._client = retrying(self._connect_once, deadline)
        except REFUSED_ERRORS as exc:
            raise RunnerConnectionError(f"ssh {self.target}: {exc}") from exc
        except UNREACHABLE_ERRORS as exc:
            spent = self.clock.monotonic() - start
            raise RunnerConnectionError(
                f"ssh {self.target}: cannot connect after {self.connect_attempts} attempt(s)"
                f" in {spent:.1f}s (deadline {self.connect_deadline:g}s): {exc}"
            ) from exc
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- commands ----------------------------------------------------------------------

    def _open(self, argv: Sequence[str]) -> paramiko.Channel:
        if not argv:
            raise ValueError("empty command")
        transport = self._connect().get_transport()
        if transport is None:  # pragma: no cover - _connect checked it
            raise RunnerConnectionError(f"ssh {self.target}: connection lost")
        try:
            channel = transport.open_session()
            channel.exec_command(f"echo {_PID_MARK}$$; exec {shlex.join(argv)}")
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise RunnerConnectionError(f"ssh {self.target}: {exc}") from exc
        return channel

    def _kill(self, pid: int | None) -> None:
        if pid is None or self._client is None:
            return
        try:
            transport = self._client.get_transport()
            if transport is None:
                return
            ch = transport.open_session()
            ch.exec_command(f"kill -KILL -- -{pid} 2>/dev/null || kill -KILL {pid}")
            ch.recv_exit_status()
            ch.close()
        except (paramiko.SSHException, OSError, EOFError):
            pass  # the connection is gone; sshd ends the session and its command

    def _pump(
        self, channel: paramiko.Channel, argv: Sequence[str], deadline: float | None
    ) -> Iterator[tuple[str, bytes]]:
        """Yield ("pid", b"123") first, then ("out", chunk) / ("err", chunk) until the
        command has exited and its output is drained. Data always arrives before the
        exit status on an SSH channel, so draining after exit_status_ready() is complete."""
        head, pid_seen = b"", False
        while True:
            finished = channel.exit_status_ready()
            got = False
            while channel.recv_stderr_ready():
                got = True
                yield "err", channel.recv_stderr(65536)
            while channel.recv_ready():
                got = True
                chunk = channel.recv(65536)
                if not pid_seen:
                    head += chunk
                    if b"\n" not in head:
                        continue
                    line, _, chunk = head.partition(b"\n")
                    pid_seen = True
                    yield "pid", line.removeprefix(_PID_MARK.encode())
                if chunk:
                    yield "out", chunk
            if finished:
                return
            if deadline is not None and self.clock.monotonic() >= deadline:
                raise CommandTimeout(f"{' '.join(argv)} timed out on {self.target}")
            if not got:
                self.clock.sleep(_POLL)

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        input: str | None = None,
        check: bool = False,
    ) -> CommandResult:
        channel = self._open(argv)
        pid: int | None = None
        out, err = bytearray(), bytearray()
        # stdin is fed from a thread: a command that answers while still reading (cat,
        # a filter) would otherwise fill the SSH window both ways and deadlock.
        writer = threading.Thread(
            target=_feed, args=(channel, input), name=f"ssh-stdin {self.target}", daemon=True
        )
        try:
            writer.start()
            deadline = self.clock.monotonic() + timeout
            try:
                for kind, data in self._pump(channel, argv, deadline):
                    if kind == "pid":
                        pid = _pid(data)
                    elif kind == "out":
                        out.extend(data)
                    else:
                        err.extend(data)
            except CommandTimeout:
                self._kill(pid)
                raise CommandTimeout(
                    f"{' '.join(argv)} did not finish within {timeout:g}s on {self.target}"
                    " and was killed"
                ) from None
            code = channel.recv_exit_status()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise RunnerConnectionError(f"ssh {self.target}: connection lost: {exc}") from exc
        finally:
            channel.close()  # also unblocks a writer stuck on a full window
            writer.join(timeout=5.0)
        result = CommandResult(
            tuple(argv), code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        )
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    def stream(self, argv: Sequence[str], *, timeout: float | None = None) -> Iterator[str]:
        channel = self._open(argv)
        return self._lines(channel, argv, timeout)

    def _lines(
        self, channel: paramiko.Channel, argv: Sequence[str], timeout: float | None
    ) -> Iterator[str]:
        pid: int | None = None
        pending, err = b"", bytearray()
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        finished = False
        try:
            channel.shutdown_write()
            for kind, data in self._pump(channel, argv, deadline):
                if kind == "pid":
                    pid = _pid(data)
                elif kind == "err":
                    err.extend(data)
                    del err[:-8192]
                else:
                    pending += data
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        yield line.decode("utf-8", "replace")
            if pending:
                yield pending.decode("utf-8", "replace")
            finished = True
            code = channel.recv_exit_status()
            if code != 0:
                stderr = err.decode("utf-8", "replace")
                raise CommandFailed(CommandResult(tuple(argv), code, "", stderr))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise RunnerConnectionError(f"ssh {self.target}: connection lost: {exc}") from exc
        finally:
            if not finished:
                self._kill(pid)
            channel.close()


def _feed(channel: paramiko.Channel, text: str | None) -> None:
    """Send stdin (if any) and close it. Errors end the feed quietly: the command's exit
    status and output, read by the caller, say what happened."""
    try:
        if text is not None:
            channel.sendall(text.encode("utf-8"))
        channel.shutdown_write()
    except (OSError, EOFError, paramiko.SSHException):
        pass


def _pid(data: bytes) -> int | None:
    text = data.decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None
