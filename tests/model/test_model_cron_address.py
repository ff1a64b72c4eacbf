"""The cron parser and address parsers used by the validator."""

from __future__ import annotations

from datetime import datetime

import pytest

from drorch.model.address import (
    AddressError,
    SshTarget,
    normalise_fingerprint,
    parse_host_port,
    parse_ssh_target,
)
from drorch.model.cron import CronError, parse_cron


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("0 3 * * sun", datetime(2026, 11, 23, 12, 0), datetime(2026, 11, 29, 3, 0)),
        ("@weekly", datetime(2026, 11, 23, 12, 0), datetime(2026, 11, 29, 0, 0)),
        ("*/15 * * * *", datetime(2026, 1, 1, 0, 7), datetime(2026, 1, 1, 0, 15)),
        ("0 4 1 1,4,7,10 *", datetime(2026, 2, 1), datetime(2026, 4, 1, 4, 0)),
        ("@quarterly", datetime(2026, 10, 1, 0, 0), datetime(2027, 1, 1, 0, 0)),
        ("30 2 * * mon-fri", datetime(2026, 11, 27, 3, 0), datetime(2026, 11, 30, 2, 30)),
        ("0 0 29 2 *", datetime(2026, 3, 1), datetime(2028, 2, 29, 0, 0)),
        ("0 0 * * 7", datetime(2026, 11, 23), datetime(2026, 11, 29, 0, 0)),  # 7 = Sunday
        # both day fields restricted: either matches (Vixie cron)
        ("0 0 13 * fri", datetime(2026, 11, 1), datetime(2026, 11, 6, 0, 0)),
    ],
)
def test_cron_next_after(expr: str, after: datetime, expected: datetime) -> None:
    schedule = parse_cron(expr)
    assert schedule.next_after(after) == expected
    assert schedule.matches(expected)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 3 * *", "has 4 fields; cron needs 5"),
        ("60 * * * *", "minute: 60 is outside 0-59"),
        ("* 24 * * *", "hour: 24 is outside 0-23"),
        ("* * 0 * *", "day of month: 0 is outside 1-31"),
        ("* * * 13 *", "month: 13 is outside 1-12"),
        ("* * * * 8", "day of week: 8 is outside 0-7"),
        ("*/0 * * * *", "step '0' must be a positive number"),
        ("5-1 * * * *", "range '5-1' runs backwards"),
        ("0 0 31 2 *", "day 31 never occurs"),
        ("0 0 * * funday", "'funday' is not a number or name"),
        ("1,,2 * * * *", "empty list item"),
    ],
)
def test_cron_errors_name_the_field(expr: str, message: str) -> None:
    with pytest.raises(CronError) as info:
        parse_cron(expr)
    assert message in str(info.value)


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
