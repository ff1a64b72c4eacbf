"""notify_waiters: the sync path's notify_all that costs nothing when nobody waits."""

from __future__ import annotations

import threading
import time

from drorch.replication.pyrepl.condvars import notify_waiters


def test_a_waiting_thread_is_woken_and_an_empty_condition_is_left_alone() -> None:
    cond = threading.Condition(threading.RLock())
    woken = threading.Event()
    ready = threading.Event()

    def waiter() -> None:
        with cond:
            ready.set()
            if cond.wait(10.0):  # True only when notified, not on the timeout
                woken.set()

    t = threading.Thread(target=waiter)
    t.start()
    assert ready.wait(5.0)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:  # the waiter is inside wait() once the lock is free
        with cond:
            if getattr(cond, "_waiters", None):
                notify_waiters(cond)
                break
        time.sleep(0.001)
    t.join(5.0)
    assert woken.is_set()
    with cond:
        notify_waiters(cond)  # nobody waits: no error, nothing to do
        assert not getattr(cond, "_waiters", None)
