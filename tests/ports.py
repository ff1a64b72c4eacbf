"""Free loopback ports for tests: use these, never hard-code a port or probe with bind(0).

`free_port()` is one port; `free_port_block(n)` is the first of n consecutive ones (a
pyrepl volume's replicas take `port + index`). They come from `drorch.testing.ports`,
which hands out ports below the kernel's ephemeral range through one machine-wide cursor,
so concurrent tests (in this run or another worktree's) and outgoing connections never
get the same port between the pick and the daemon's bind.
"""

from __future__ import annotations

from drorch.testing.ports import reserve, reserve_many

__all__ = ["free_port", "free_port_block", "free_ports"]


def free_port() -> int:
    """One free loopback port, reserved for the caller."""
    return reserve()


def free_port_block(span: int = 2) -> int:
    """The first of `span` consecutive free loopback ports (default a pair: p and p + 1)."""
    return reserve(span)


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports."""
    return reserve_many(count)
