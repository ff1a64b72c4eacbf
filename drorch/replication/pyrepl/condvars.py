"""Waking the threads that wait on a condition, at no cost when none does.

`Condition.notify_all()` is pure Python in CPython (an ownership check, a copy of the
waiter list, a loop): a few microseconds. The sync write path notifies three
conditions per acknowledged write, and almost always nobody waits on them (only
flushes, frozen writers and a closing connection do), so it asks first.
"""

from __future__ import annotations

import threading


def notify_waiters(cond: threading.Condition) -> None:
    """`cond.notify_all()` if any thread waits (the caller holds cond's lock, so no
    thread can start waiting between the check and the notify)."""
    if getattr(cond, "_waiters", True):  # CPython's deque of waiting threads
        cond.notify_all()
