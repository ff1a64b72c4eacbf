"""The role log: every change of what is primary on a node, appended as one JSON line
with a wall-clock timestamp, so that a test, the lab or an auditor can prove that no two
sites were ever primary at once."""

from __future__ import annotations

import json
from pathlib import Path

from drorch.clock import Clock


class RoleLog:
    def __init__(self, path: Path | None, clock: Clock, node: str, site: str) -> None:
        self.path, self.clock, self.node, self.site = path, clock, node, site
        self._last: tuple[str, ...] | None = None

    def record(self, primary: tuple[str, ...], quorum: bool) -> None:
        """Append a line when `primary` differs from the last one recorded."""
        if primary == self._last:
            return
        self._last = primary
        if self.path is None:
            return
        line = {
            "at": self.clock.now(),
            "node": self.node,
            "site": self.site,
            "primary": list(primary),
            "quorum": quorum,
        }
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
