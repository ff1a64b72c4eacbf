"""A real, private sshd on loopback for tests (started and stopped by PID).

Used by the SSHRunner tests (tests/remote) and the remote-DRBD-node tests (tests/drbd):
fresh host and client keys in a private folder, key login only, no PAM.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.ports import free_port

SSHD = "/usr/sbin/sshd"


@dataclass
class Sshd:
    port: int
    user: str
    client_key: Path
    host_pub: str  # "ssh-ed25519 AAAA..."
    known_hosts: Path  # contains the host key of this sshd
    dir: Path

    @property
    def target(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        timeout=30,
    )


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(100):  # bounded: at most ~5 s
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited {proc.returncode}: {log.read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on {port}: {log.read_text()}")


@contextmanager
def private_sshd(d: Path, *, ipv6: bool = False, extra_config: str = "") -> Iterator[Sshd]:
    """Run sshd with its keys and config in folder `d`; `extra_config` is appended to
    sshd_config (e.g. `SetEnv ...`). Stops it by PID on exit, also on failure."""
    if shutil.which("ssh-keygen") is None or not Path(SSHD).exists():
        raise RuntimeError("openssh-server is not installed (tests/system-packages.txt lists it)")
    os.chmod(d, 0o700)
    _keygen(d / "host_ed25519")
    _keygen(d / "client_ed25519")
    shutil.copy(d / "client_ed25519.pub", d / "authorized_keys")
    os.chmod(d / "authorized_keys", 0o600)
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation dir
    port = free_port()
    listen = f"ListenAddress 127.0.0.1:{port}\n"
    if ipv6:
        listen += f"ListenAddress [::1]:{port}\n"
    config = d / "sshd_config"
    config.write_text(
        listen + f"HostKey {d / 'host_ed25519'}\n"
        f"PidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "StrictModes no\n"
        "LogLevel ERROR\n" + extra_config
    )
    log = d / "sshd.log"
    proc = subprocess.Popen([SSHD, "-D", "-f", str(config), "-E", str(log)])
    try:
        _wait_listening(port, proc, log)
        host_pub = " ".join((d / "host_ed25519.pub").read_text().split()[:2])
        known = d / "known_hosts"
        lines = f"[127.0.0.1]:{port} {host_pub}\n"
        if ipv6:
            lines += f"[::1]:{port} {host_pub}\n"
        known.write_text(lines)
        user = pwd.getpwuid(os.getuid()).pw_name  # sshd lets us log in as ourselves
        yield Sshd(port, user, d / "client_ed25519", host_pub, known, d)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
