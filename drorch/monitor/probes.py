"""Level 2: does the resource's API answer sanely? A TCP connect, an HTTP GET with a
status and body check, or a command and its exit code. Each bounded by its timeout."""

from __future__ import annotations

import http.client
import socket
import urllib.parse

from drorch.monitor.base import CheckResult, CheckStatus, Monitor
from drorch.remote.base import CommandRunner, CommandTimeout, RunnerConnectionError

MAX_BODY = 1 << 20


def split_host_port(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"expected host:port, got {target!r}")
    return host.strip("[]"), int(port)


class TcpMonitor(Monitor):
    def __init__(self, name: str, target: str, *, timeout: float = 5.0, level: int = 2) -> None:
        super().__init__(name, level, timeout)
        self.host, self.port = split_host_port(target)

    def check(self) -> CheckResult:
        where = f"{self.host}:{self.port}"
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout):
                return CheckResult(CheckStatus.OK, f"{where} accepts connections")
        except TimeoutError:
            return CheckResult(CheckStatus.FAILED, f"{where}: no answer in {self.timeout:g}s")
        except OSError as e:
            return CheckResult(CheckStatus.FAILED, f"{where}: {e.strerror or e}")


class HttpMonitor(Monitor):
    """GET `url`; passes on a status in `statuses` (default 200–299) whose body contains
    `body_contains` (if given)."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        timeout: float = 5.0,
        body_contains: str | None = None,
        statuses: range = range(200, 300),
        level: int = 2,
    ) -> None:
        super().__init__(name, level, timeout)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
        self.url = url
        self.parts = parts
        self.body_contains = body_contains
        self.statuses = statuses

    def check(self) -> CheckResult:
        p = self.parts
        conn_cls = (
            http.client.HTTPSConnection if p.scheme == "https" else http.client.HTTPConnection
        )
        conn = conn_cls(p.hostname or "", p.port, timeout=self.timeout)
        path = (p.path or "/") + (f"?{p.query}" if p.query else "")
        try:
            conn.request("GET", path, headers={"User-Agent": "drorch-monitor"})
            resp = conn.getresponse()
            body = resp.read(MAX_BODY).decode(errors="replace")
        except TimeoutError:
            return CheckResult(
                CheckStatus.FAILED, f"GET {self.url}: no answer in {self.timeout:g}s"
            )
        except (OSError, http.client.HTTPException) as e:
            return CheckResult(CheckStatus.FAILED, f"GET {self.url}: {e}")
        finally:
            conn.close()
        if resp.status not in self.statuses:
            return CheckResult(
                CheckStatus.FAILED, f"GET {self.url}: status {resp.status} {resp.reason}"
            )
        if self.body_contains is not None and self.body_contains not in body:
            return CheckResult(
                CheckStatus.FAILED,
                f"GET {self.url}: status {resp.status} but the body lacks {self.body_contains!r}",
            )
        return CheckResult(CheckStatus.OK, f"GET {self.url}: status {resp.status}")


class CommandMonitor(Monitor):
    """Run `sh -c COMMAND` on the resource's node; exit 0 passes (and, with `expect`,
    stdout must contain it)."""

    def __init__(
        self,
        name: str,
        command: str,
        runner: CommandRunner,
        *,
        timeout: float = 5.0,
        expect: str | None = None,
        level: int = 2,
    ) -> None:
        super().__init__(name, level, timeout)
        self.command = command
        self.runner = runner
        self.expect = expect

    def check(self) -> CheckResult:
        try:
            done = self.runner.run(["sh", "-c", self.command], timeout=self.timeout)
        except CommandTimeout:
            return CheckResult(CheckStatus.FAILED, f"{self.command!r} ran past {self.timeout:g}s")
        except RunnerConnectionError as e:
            return CheckResult(CheckStatus.FAILED, f"{self.command!r}: node unreachable: {e}")
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
            return CheckResult(
                CheckStatus.FAILED, f"{self.command!r} exited {done.returncode}: {tail[0][:200]}"
            )
        if self.expect is not None and self.expect not in done.stdout:
            return CheckResult(CheckStatus.FAILED, f"{self.command!r} printed no {self.expect!r}")
        return CheckResult(CheckStatus.OK, f"{self.command!r} exited 0")
