"""What the lab cluster's processes and guests are doing (`drorch lab status`).

`stack_status` makes the rows `LabStack.status` returns: the WAN proxy, every process with
a PID file under `labs/<name>/pids/` (for a replication daemon, what its control socket
says) and every guest with its last heartbeat and last acknowledged counter. Also the
small readers of /proc and of a guest's serial log that those rows are made of.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from drorch.lab.cluster_full import LabFiles
from drorch.lab.lab import Lab
from drorch.lab.processes import live_pid
from drorch.replication.pyrepl.control_path import replica_control_path


def stack_status(lab: Lab, files: LabFiles) -> list[dict[str, Any]]:
    """One row per process and guest of the lab cluster (empty before `up --vms`)."""
    from drorch.lab.cluster_config import guest_serial_log
    from drorch.lab.guest import last_heartbeat
    from drorch.replication.pyrepl.control import ControlClient, ControlUnreachable

    layout = lab.layout
    rows: list[dict[str, Any]] = []
    proxy = lab.wan.pid()
    if lab.wan.file.exists():
        rows.append(
            {
                "part": "wan-proxy",
                "where": layout.wan_netns,
                "pid": proxy,
                "state": lab.wan.state().impairment.describe() if proxy else "down",
            }
        )
    pids = files.root / "pids"
    for pid_file in sorted(pids.glob("*.pid")) if pids.exists() else []:
        what = pid_file.stem
        expect = (
            "agent run"
            if what.startswith("agent-")
            else ("repl serve" if what.startswith("repl-") else "quorumd")
        )
        pid = live_pid(pid_file, expect)
        state = _proc_state(pid) if pid else "down"
        if pid and what.startswith("repl-"):
            volume, _, node = what[len("repl-") :].partition("@")
            ctl = replica_control_path(files.root, volume, node)
            try:
                st = ControlClient(ctl, timeout=3).call("status")
                state = f"{st['role']}, {st['disk']}, {st['connection']}"
            except (ControlUnreachable, OSError, KeyError, TypeError) as exc:
                state = f"not answering ({exc})"
        rows.append(
            {"part": what, "where": _netns_of(pid) if pid else "", "pid": pid, "state": state}
        )
    guests = sorted(
        {p.stem for s in layout.sites for p in (layout.run_dir(s.name) / "qemu").glob("*.pid")}
    )
    for vm in [g for g in guests if g != "driver"]:  # driver.pid: libvirt's own
        where = [
            s.name
            for s in layout.sites
            if live_pid(layout.run_dir(s.name) / "qemu" / f"{vm}.pid", "qemu")
        ]
        log = Path(guest_serial_log(layout, vm))
        rows.append(
            {
                "part": f"guest {vm}",
                "where": ", ".join(where) or "-",
                "pid": None,
                "state": f"heartbeat {last_heartbeat(log)}, acked {last_acked(log)}",
            }
        )
    return rows


def _proc_state(pid: int) -> str:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return "gone"
    return {"T": "frozen (SIGSTOP)", "t": "frozen (traced)", "Z": "zombie"}.get(state, "running")


def last_acked(serial_log: Path) -> int | None:
    """The last counter value the guest logged after its disk acknowledged it."""
    try:
        text = serial_log.read_bytes()
    except OSError:
        return None
    values = [int(m) for m in re.findall(rb"ACKED (\d+)", text)]
    return values[-1] if values else None


def _netns_of(pid: int) -> str:
    try:
        target = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return "?"
    for entry in Path("/run/netns").glob("*"):
        try:
            st = os.stat(entry)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            return entry.name
    return "host"
