"""Level 1 and 2 monitors against real processes, sockets and an HTTP server."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from drorch.monitor.base import CheckStatus
from drorch.monitor.probes import CommandMonitor, HttpMonitor, TcpMonitor
from drorch.monitor.process import ProcessMonitor
from drorch.remote.local import LocalRunner


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    p = subprocess.Popen(["bash", "-c", "exec -a drorch-mon-test sleep 30"])
    cmdline = Path(f"/proc/{p.pid}/cmdline")
    for _ in range(200):  # bounded: until bash has exec'ed (Popen returns before that)
        if cmdline.read_bytes().startswith(b"drorch-mon-test\0"):
            break
        threading.Event().wait(0.01)
    yield p
    if p.poll() is None:
        p.kill()
    p.wait(timeout=5)


def test_process_by_pidfile(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    pf = tmp_path / "x.pid"
    pf.write_text(f"{sleeper.pid}\n")
    m = ProcessMonitor("x", f"pidfile:{pf}")
    assert m.check().status is CheckStatus.OK
    sleeper.kill()
    sleeper.wait(timeout=5)
    r = m.check()
    assert (
        r.status is CheckStatus.FAILED and r.reason == f"process {sleeper.pid} (from {pf}) is gone"
    )


def test_zombie_counts_as_dead(tmp_path: Path) -> None:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    pf = tmp_path / "z.pid"
    pf.write_text(str(p.pid))
    for _ in range(100):  # bounded: until it has exited (a zombie: not yet reaped)
        r = ProcessMonitor("z", f"pidfile:{pf}").check()
        if r.status is CheckStatus.FAILED:
            break
        threading.Event().wait(0.05)
    assert r.reason.endswith("has exited")
    p.wait(timeout=5)


def test_process_pidfile_garbage(tmp_path: Path) -> None:
    pf = tmp_path / "g.pid"
    pf.write_text("hello")
    assert "holds no pid" in ProcessMonitor("g", f"pidfile:{pf}").check().reason
    assert "No such file" in ProcessMonitor("g", f"pidfile:{tmp_path / 'none'}").check().reason


def test_process_by_name(sleeper: subprocess.Popen[bytes]) -> None:
    assert ProcessMonitor("n", "drorch-mon-test").check().status is CheckStatus.OK
    r = ProcessMonitor("n", "drorch-no-such-proc").check()
    assert (
        r.status is CheckStatus.FAILED
        and r.reason == "no running process is named drorch-no-such-proc"
    )


def test_tcp_open_and_closed() -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    try:
        assert TcpMonitor("t", f"127.0.0.1:{port}").check().status is CheckStatus.OK
    finally:
        srv.close()
    r = TcpMonitor("t", f"127.0.0.1:{port}", timeout=1).check()
    assert r.status is CheckStatus.FAILED and "refused" in r.reason.lower()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = {"/ok": (200, b"db ready"), "/bad": (500, b"oops")}.get(
            self.path, (404, b"")
        )
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()
    t.join(timeout=5)


@pytest.mark.parametrize(
    ("path", "contains", "status", "reason"),
    [
        ("/ok", "ready", CheckStatus.OK, "status 200"),
        ("/ok", "missing", CheckStatus.FAILED, "the body lacks 'missing'"),
        ("/bad", None, CheckStatus.FAILED, "status 500"),
    ],
)
def test_http(
    http_port: int, path: str, contains: str | None, status: CheckStatus, reason: str
) -> None:
    r = HttpMonitor("h", f"http://127.0.0.1:{http_port}{path}", body_contains=contains).check()
    assert r.status is status and reason in r.reason


def test_http_silent_server_times_out() -> None:
    srv = socket.create_server(("127.0.0.1", 0))  # accepts (backlog) but never answers
    try:
        port = srv.getsockname()[1]
        r = HttpMonitor("h", f"http://127.0.0.1:{port}/", timeout=0.3).check()
        assert r.status is CheckStatus.FAILED and "no answer in 0.3s" in r.reason
    finally:
        srv.close()


@pytest.mark.parametrize(
    ("command", "expect", "status", "reason"),
    [
        ("echo up", "up", CheckStatus.OK, "exited 0"),
        ("echo down", "up", CheckStatus.FAILED, "printed no 'up'"),
        ("echo broken >&2; exit 3", None, CheckStatus.FAILED, "exited 3: broken"),
        ("sleep 5", None, CheckStatus.FAILED, "ran past 0.3s"),
    ],
)
def test_command(command: str, expect: str | None, status: CheckStatus, reason: str) -> None:
    r = CommandMonitor("c", command, LocalRunner(), timeout=0.3, expect=expect).check()
    assert r.status is status and reason in r.reason


def test_bad_targets_refused() -> None:
    with pytest.raises(ValueError, match="host:port"):
        TcpMonitor("t", "nohost")
    with pytest.raises(ValueError, match="http"):
        HttpMonitor("h", "ftp://x/")
