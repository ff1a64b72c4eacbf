"""A real, private sshd on 127.0.0.1 for the SSHRunner tests (started and stopped by PID)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sshd_server import Sshd, free_port, private_sshd

__all__ = ["Sshd", "free_port"]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with private_sshd(tmp_path_factory.mktemp("sshd"), ipv6=True) as server:
        yield server
