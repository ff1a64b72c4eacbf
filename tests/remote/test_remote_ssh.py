"""SSHRunner against a real sshd on 127.0.0.1 (see conftest.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from drorch.clock import SystemClock
from drorch.remote.base import CommandFailed, CommandTimeout, RunnerConnectionError
from drorch.remote.ssh import SSHRunner
from tests.sshd_server import Sshd, free_port


def runner(sshd: Sshd, **kwargs: object) -> SSHRunner:
    opts: dict[str, object] = {"key_filename": sshd.client_key, "known_hosts": sshd.known_hosts}
    opts.update(kwargs)
    return SSHRunner(sshd.target, **opts)  # type: ignore[arg-type]


def test_command_runs_and_output_is_captured(sshd: Sshd) -> None:
    r = runner(sshd)
    try:
        result = r.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
        assert result.argv == ("sh", "-c", "echo out; echo err >&2; exit 3")
    finally:
        r.close()


def test_argv_is_quoted_not_interpreted(sshd: Sshd) -> None:
    with_spaces = "a b; echo injected $HOME"
    r = runner(sshd)
    try:
        assert r.run(["echo", with_spaces]).stdout == with_spaces + "\n"
    finally:
        r.close()


def test_stdin_and_check(sshd: Sshd) -> None:
    r = runner(sshd)
    try:
        assert r.run(["cat"], input="line one\nline two\n").stdout == "line one\nline two\n"
        with pytest.raises(CommandFailed, match="exited 1"):
            r.run(["false"], check=True)
    finally:
        r.close()


def test_connection_is_reused(sshd: Sshd) -> None:
    r = runner(sshd)
    try:
        for _ in range(3):
            assert r.run(["true"]).ok
        assert r.connect_attempts == 1
    finally:
        r.close()


def test_unknown_host_key_is_refused_by_default(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    r = runner(sshd, known_hosts=empty)
    with pytest.raises(RunnerConnectionError, match="is not in known_hosts") as info:
        r.run(["true"])
    assert r.connect_attempts == 1  # a host-key refusal is never retried
    assert "set accept_new" in str(info.value)
    assert empty.read_text() == ""  # nothing was trusted behind the operator's back


def test_changed_host_key_is_refused_even_with_accept_new(sshd: Sshd, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    # a different ed25519 key recorded for this host:port
    other = "AAAAC3NzaC1lZDI1NTE5AAAAIJ9yH5xQ0y6oMz7S3b0b9iQ0f1x4b0bq0w6b3r8d2s1a"
    known.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 {other}\n")
    r = runner(sshd, known_hosts=known, accept_new=True)
    with pytest.raises(RunnerConnectionError, match="does not match"):
        r.run(["true"])
    assert r.connect_attempts == 1


def test_accept_new_trusts_and_records_a_new_host(sshd: Sshd, tmp_path: Path) -> None:
    known = tmp_path / "ssh" / "known_hosts"
    r = runner(sshd, known_hosts=known, accept_new=True)
    try:
        assert r.run(["echo", "hi"]).stdout == "hi\n"
    finally:
        r.close()
    assert sshd.host_pub.split()[1] in known.read_text()
    # the recorded key is now enforced without accept_new
    again = runner(sshd, known_hosts=known)
    try:
        assert again.run(["true"]).ok
    finally:
        again.close()


def test_connection_refused_is_retried_then_fails_before_deadline(
    sshd: Sshd, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens here
    r = SSHRunner(
        f"root@127.0.0.1:{port}",
        key_filename=sshd.client_key,
        known_hosts=sshd.known_hosts,
        connect_deadline=1.5,
        clock=SystemClock(),
    )
    start = time.monotonic()
    with pytest.raises(RunnerConnectionError, match=r"cannot connect after \d+ attempt") as info:
        r.run(["true"])
    elapsed = time.monotonic() - start
    assert r.connect_attempts >= 3, "refused connections must be retried"
    assert elapsed < 1.5 + 0.5, f"took {elapsed:.2f}s, past the 1.5s deadline"
    assert "deadline 1.5s" in str(info.value)


def test_wrong_key_is_an_auth_error_not_retried(sshd: Sshd, tmp_path: Path) -> None:
    import subprocess

    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    r = runner(sshd, key_filename=key)
    with pytest.raises(RunnerConnectionError, match="Authentication failed"):
        r.run(["true"])
    assert r.connect_attempts == 1


def test_timeout_kills_the_remote_command(sshd: Sshd, tmp_path: Path) -> None:
    pidfile = tmp_path / "remote.pid"
    r = runner(sshd)
    try:
        with pytest.raises(CommandTimeout, match=r"did not finish within 0\.5s"):
            r.run(["sh", "-c", f"echo $$ > {pidfile}; sleep 30"], timeout=0.5)
        pid = pidfile.read_text().strip()
        # the runner is still usable, and the remote shell is gone
        probe = r.run(["sh", "-c", f"kill -0 {pid} 2>/dev/null && echo alive || echo gone"])
        assert probe.stdout.strip() == "gone"
    finally:
        r.close()


def test_stream_yields_lines_and_close_kills(sshd: Sshd, tmp_path: Path) -> None:
    r = runner(sshd)
    try:
        lines = list(r.stream(["sh", "-c", "printf 'a\\nb\\nc'"], timeout=10))
        assert lines == ["a", "b", "c"]
        gen = r.stream(["sh", "-c", f"echo $$ > {tmp_path}/p; echo ready; exec sleep 30"])
        assert next(gen) == "ready"
        gen.close()
        pid = (tmp_path / "p").read_text().strip()
        probe = r.run(["sh", "-c", f"kill -0 {pid} 2>/dev/null && echo alive || echo gone"])
        assert probe.stdout.strip() == "gone"
        with pytest.raises(CommandFailed, match="exited 2: bad"):
            list(r.stream(["sh", "-c", "echo bad >&2; exit 2"], timeout=10))
    finally:
        r.close()


def test_a_dropped_connection_is_reopened(sshd: Sshd) -> None:
    r = runner(sshd)
    try:
        assert r.run(["true"]).ok
        client = r._client
        assert client is not None
        transport = client.get_transport()
        assert transport is not None
        transport.close()  # as if the WAN dropped the session
        assert r.run(["echo", "back"]).stdout == "back\n"
        assert r.connect_attempts == 2
    finally:
        r.close()


def test_large_output_and_input_are_not_truncated(sshd: Sshd) -> None:
    r = runner(sshd)
    try:
        payload = "".join(
            f"line {i}\n" for i in range(600_000)
        )  # ~7 MiB each way, beyond the SSH window
        result = r.run(["cat"], input=payload, timeout=60)
        assert result.stdout == payload
    finally:
        r.close()


def test_ipv6_loopback_target(sshd: Sshd) -> None:
    r = SSHRunner(
        f"{sshd.user}@[::1]:{sshd.port}",
        key_filename=sshd.client_key,
        known_hosts=sshd.known_hosts,
    )
    try:
        assert r.run(["echo", "v6"]).stdout == "v6\n"
    finally:
        r.close()
