"""Automatic failover and the watchdog's deadline with real processes on loopback.

The cluster of tests/agent/realproc.py (`drorch quorumd`, one `drorch agent run` per
site with its soft watchdog, cuttable TCP proxies, simulated guests; member_timeout 1s,
lease 3s, switch_delay 0.5s, takeover_wait 3.5s, watchdog 1.5s), ROUNDS times each:

1. partition A from B and the witness: when A's guest stops (target: before its lease
   runs out, 3 s) and when B's guest runs (target: no sooner than member_timeout +
   takeover_wait = 4.5 s, and within 2 s after that);
2. kill -9 of A's agent: when its soft watchdog fires (target: <= watchdog_timeout) and
   when B's guest runs;
3. the watchdog slack while healthy (min and median of what was left at each feed).

`python -m tests.bench agent`.
"""

from __future__ import annotations

import signal
import statistics
import tempfile
import time
from pathlib import Path

from tests.agent.realproc import TAKEOVER_WAIT, WATCHDOG_TIMEOUT, RealCluster, until

ROUNDS = 3
MEMBER_TIMEOUT = 1.0
LEASE = 3.0


def _partition() -> tuple[float, float, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as d:
        c = RealCluster(Path(d))
        try:
            c.start_all()
            time.sleep(3.0)  # some healthy feeds to measure the slack on
            w = (c.status("a1") or {}).get("watchdog", {})
            slack = {
                "min": float(w.get("min_slack") or 0),
                "median": float(w.get("median_slack") or 0),
            }
            for name in ("ab", "ba", "aw"):
                c.proxies[name].cut()
            fenced = until(lambda: c.vm("A") != "running", 15, "A to self-fence")
            taken = fenced + until(lambda: c.vm("B") == "running", 20, "B to take over")
            return fenced, taken, slack
        finally:
            c.close()


def _kill9() -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as d:
        c = RealCluster(Path(d))
        try:
            c.start_all()
            killed = time.time()
            c.signal("a1", signal.SIGKILL)
            until(lambda: c.softdog_fired("a1") is not None, 10, "A's watchdog to fire")
            fired = float((c.softdog_fired("a1") or {})["at"]) - killed
            until(lambda: c.vm("B") == "running", 20, "B to take over")
            return fired, time.time() - killed
        finally:
            c.close()


def _line(what: str, values: list[float], target: str) -> None:
    print(
        f"{what:44s} median {statistics.median(values):6.2f} s"
        f"  min {min(values):6.2f}  max {max(values):6.2f}   {target}"
    )


def main() -> int:
    parts = [_partition() for _ in range(ROUNDS)]
    kills = [_kill9() for _ in range(ROUNDS)]
    fenced, taken = [p[0] for p in parts], [p[1] for p in parts]
    floor = MEMBER_TIMEOUT + TAKEOVER_WAIT
    _line("partition: A's guest stopped after the cut", fenced, f"target < lease {LEASE:g} s")
    _line("partition: B's guest running after the cut", taken, f"target {floor:g}..{floor + 2:g} s")
    _line("kill -9: A's watchdog fired after the kill", [k[0] for k in kills],
          f"target <= watchdog_timeout {WATCHDOG_TIMEOUT:g} s")  # fmt: skip
    _line("kill -9: B's guest running after the kill", [k[1] for k in kills],
          f"takeover_wait {TAKEOVER_WAIT:g} s")  # fmt: skip
    _line("watchdog slack while healthy: min", [p[2]["min"] for p in parts],
          f"of {WATCHDOG_TIMEOUT:g} s; warns below {0.4 * WATCHDOG_TIMEOUT:g} s")  # fmt: skip
    _line("watchdog slack while healthy: median", [p[2]["median"] for p in parts], "")
    ok = (
        max(fenced) < LEASE
        and min(taken) >= floor
        and max(taken) <= floor + 2
        and max(k[0] for k in kills) <= WATCHDOG_TIMEOUT + 0.1
    )
    print("ok" if ok else "TARGET MISSED")
    return 0 if ok else 1
