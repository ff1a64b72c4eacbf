"""DRBD status parsing: how fast drorch reads what drbdsetup prints.

An agent follows `drbdsetup events2` on every node and reads `drbdsetup status --json`
each loop, so parsing must stay far below the loop period. Figures, each next to its
target, with the ratio to a peer measured in the same run:

- events2: change lines folded per second (target >= 100,000/s; a resync on a busy node
  prints a few hundred per second). Peer: splitting the same lines into key:value pairs
  with nothing else (the floor any parser pays).
- status --json: median time to parse one resource and map it to the shared status
  (target <= 1 ms). Peer: `json.loads` of the same text.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from drorch.replication.drbd.events2 import Events2State
from drorch.replication.drbd.state import to_status
from drorch.replication.drbd.status_json import find_resource

FIXTURES = Path(__file__).resolve().parents[1] / "drbd" / "fixtures"
TARGET_LINES_PER_S = 100_000
TARGET_JSON_MS = 1.0
LINES = 200_000
ROUNDS = 2_000


def _events2_lines() -> list[str]:
    head = (FIXTURES / "events2-sync-source.txt").read_text().splitlines()
    body = [
        "change peer-device name:r0 peer-node-id:1 conn-name:b1 volume:0 "
        f"out-of-sync:{LINES - i} done:{100 * i / LINES:.2f} eta:{(LINES - i) // 1000}"
        for i in range(LINES)
    ]
    return head + body


def bench_events2() -> tuple[float, float]:
    lines = _events2_lines()
    started = time.perf_counter()
    st = Events2State()
    for line in lines:
        st.feed(line)
    state = st.state("r0")
    assert state is not None and to_status(state, "sync").out_of_sync_bytes == 1024
    ours = len(lines) / (time.perf_counter() - started)
    started = time.perf_counter()
    for line in lines:
        dict(tok.partition(":")[::2] for tok in line.split()[2:])
    peer = len(lines) / (time.perf_counter() - started)
    return ours, peer


def bench_status_json() -> tuple[float, float]:
    text = (FIXTURES / "status-sync-target.json").read_text()
    ours, peer = [], []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        state = find_resource(text, "r0")
        assert state is not None
        to_status(state, "sync")
        t1 = time.perf_counter()
        json.loads(text)
        t2 = time.perf_counter()
        ours.append(t1 - t0)
        peer.append(t2 - t1)
    return statistics.median(ours) * 1000, statistics.median(peer) * 1000


def main() -> int:
    ok = True
    rate, split_rate = bench_events2()
    good = rate >= TARGET_LINES_PER_S
    ok &= good
    print(
        f"events2 fold: {rate:,.0f} lines/s (target >= {TARGET_LINES_PER_S:,}) "
        f"{'OK' if good else 'MISS'}; bare split {split_rate:,.0f} lines/s, "
        f"ratio {rate / split_rate:.2f}"
    )
    ms, json_ms = bench_status_json()
    good = ms <= TARGET_JSON_MS
    ok &= good
    print(
        f"status --json parse+map: median {ms * 1000:.1f} us (target <= {TARGET_JSON_MS} ms) "
        f"{'OK' if good else 'MISS'}; json.loads alone {json_ms * 1000:.1f} us, "
        f"ratio {ms / json_ms:.1f}x"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
