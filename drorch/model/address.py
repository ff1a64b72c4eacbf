"""Addresses written in the config: ssh targets `user@host:port`, `host:port`, fingerprints."""

from __future__ import annotations

import re
from dataclasses import dataclass

_HOST = r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?))"
_SSH_RE = re.compile(rf"^(?P<user>[A-Za-z_][A-Za-z0-9_.-]*)@{_HOST}(?::(?P<port>\d{{1,5}}))?$")
_HOSTPORT_RE = re.compile(rf"^{_HOST}:(?P<port>\d{{1,5}})$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class AddressError(ValueError):
    """Not a valid address; the message says what is expected."""


@dataclass(frozen=True)
class SshTarget:
    user: str
    host: str
    port: int = 22

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"


def _port(text: str | None, default: int | None, what: str) -> int:
    if text is None:
        if default is None:
            raise AddressError(f"{what} needs a port")
        return default
    port = int(text)
    if not 1 <= port <= 65535:
        raise AddressError(f"port {port} is out of range (1-65535)")
    return port


def parse_ssh_target(text: str) -> SshTarget:
    """`user@host`, `user@host:port` or `user@[v6addr]:port` (port defaults to 22)."""
    m = _SSH_RE.match(text)
    if not m:
        raise AddressError(f"{text!r} is not `local` or an ssh target like root@10.0.0.2:22")
    host = m.group("v6") or m.group("host")
    return SshTarget(m.group("user"), host, _port(m.group("port"), 22, text))


def parse_host_port(text: str) -> tuple[str, int]:
    """`host:port` or `[v6addr]:port`."""
    m = _HOSTPORT_RE.match(text)
    if not m:
        raise AddressError(f"{text!r} is not host:port (e.g. 192.0.2.10:7443 or [::1]:7443)")
    return m.group("v6") or m.group("host"), _port(m.group("port"), None, text)


def normalise_fingerprint(text: str) -> str:
    """A SHA-256 certificate fingerprint as 64 lowercase hex digits.

    Accepts `sha256:AB:CD:...`, `AB:CD:...` (as `openssl x509 -fingerprint -sha256`
    prints it) or plain hex."""
    body = text.strip()
    if body.lower().startswith("sha256:"):
        body = body[7:]
    hexdigits = body.replace(":", "").lower()
    if not _HEX64.match(hexdigits):
        raise AddressError(
            f"{text!r} is not a SHA-256 fingerprint (64 hex digits, colons allowed, "
            "as printed by `openssl x509 -noout -fingerprint -sha256`)"
        )
    return hexdigits
