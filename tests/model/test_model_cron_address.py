"""The address parsers used by the validator (cron: test_model_cron.py)."""

from __future__ import annotations

import pytest

from drorch.model.address import (
    AddressError,
    SshTarget,
    normalise_fingerprint,
    parse_host_port,
    parse_ssh_target,
)


def test_ssh_targets() -> None:
    assert parse_ssh_target("root@10.0.0.2:2222") == SshTarget("root", "10.0.0.2", 2222)
    assert parse_ssh_target("ops@site-b.example.net") == SshTarget("ops", "site-b.example.net", 22)
    assert parse_ssh_target("ops@[::1]:22") == SshTarget("ops", "::1", 22)
    assert str(SshTarget("ops", "::1", 22)) == "ops@[::1]:22"
    for bad in ("10.0.0.2:22", "root@", "root@host:0", "root@host:99999", "root@ho st"):
        with pytest.raises(AddressError):
            parse_ssh_target(bad)


def test_host_port_and_fingerprints() -> None:
    assert parse_host_port("[::1]:7443") == ("::1", 7443)
    assert parse_host_port("witness.example.org:7443") == ("witness.example.org", 7443)
    with pytest.raises(AddressError, match="is not host:port"):
        parse_host_port("witness.example.org")
    colons = ":".join(["AB"] * 32)
    assert normalise_fingerprint(f"sha256:{colons}") == "ab" * 32
    assert normalise_fingerprint(colons) == "ab" * 32
    with pytest.raises(AddressError, match="64 hex digits"):
        normalise_fingerprint("ab:cd")
