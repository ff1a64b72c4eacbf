"""The monitor seam: one check of one resource, answered within its timeout.

Three kinds, as Linux-HA has them:

- level 1, is the process alive (`type: process`, monitor/process.py);
- level 2, does its API answer sanely (`tcp`, `http`, `command`; monitor/probes.py);
- level 3, is it still heartbeating (`heartbeat`: the guest's serial console,
  monitor/serial_log.py; or an application heartbeat over a unix socket,
  monitor/apphb.py).

A light check runs often and a heavy one less often: each monitor has its own
`interval`. What to do about failures (restart in place, then escalate) is decided by
`drorch.decide.recovery`, not here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum


class CheckStatus(StrEnum):
    OK = "ok"
    WARNING = "warning"  # still passing, but close to failing (e.g. a late heartbeat)
    WAITING = "waiting"  # not yet judgeable (starting up, within its grace)
    FAILED = "failed"


@dataclass(frozen=True)
class CheckResult:
    status: CheckStatus
    reason: str

    @property
    def passed(self) -> bool:
        return self.status in (CheckStatus.OK, CheckStatus.WARNING)


class Monitor(ABC):
    """One check. `check()` returns within `timeout` seconds (plus scheduling noise) and
    never raises for a failure of the monitored resource: a dead process, a refused
    connection, a wrong answer and a timeout are all FAILED results with a reason. It
    raises only for programming errors."""

    def __init__(self, name: str, level: int, timeout: float) -> None:
        if level not in (1, 2, 3):
            raise ValueError(f"monitor level must be 1, 2 or 3, not {level}")
        self.name = name
        self.level = level
        self.timeout = timeout

    @abstractmethod
    def check(self) -> CheckResult:
        """Run the check once."""

    def rearm(self) -> None:  # noqa: B027 - optional hook
        """The resource (re)starts on this node: forget what was observed before (a
        heartbeat monitor must not judge a guest just started here by the beats it
        printed at the other site into the shared log), starting a fresh start-up grace."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the monitor holds (sockets, files). Idempotent."""
