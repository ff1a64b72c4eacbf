"""A whole lab cluster for one end-to-end test module (`drorch lab up --vms 1`), driven
the way an operator drives it: `drorch lab ...` commands, and drorch commands typed
inside a site's namespace. Its own name, namespace prefix and subnet, so it runs beside
the session lab (`dt`), the demo test's (`dm`) and an operator's."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from drorch.cli.main import cli
from drorch.lab.cluster_config import guest_serial_log
from drorch.lab.cluster_full import NODES, LabFiles
from drorch.lab.counter import SELF_FENCE, audit_serial, size
from drorch.lab.layout import LabLayout
from drorch.lab.processes import live_pid
from drorch.lab.stack import REPO
from drorch.lab.stack_status import last_acked
from drorch.replication.pyrepl.control import ControlClient, ControlUnreachable
from drorch.replication.pyrepl.control_path import replica_control_path

_BOOT = re.compile(rb"LABVM BOOTED \S+ start_counter=(\d+)")


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the fault
    running: tuple[str, ...]  # sites where vm1's QEMU is alive
    primary: tuple[str, ...]  # sites whose vm1-disk replica is primary


@dataclass
class E2ELab:
    layout: LabLayout
    samples: list[Sample] = field(default_factory=list)

    @property
    def opts(self) -> list[str]:
        lay = self.layout
        return ["--name", lay.name, "--prefix", lay.prefix, "--subnet", lay.subnet]

    @property
    def files(self) -> LabFiles:
        return LabFiles(self.layout)

    @property
    def serial(self) -> Path:
        return Path(guest_serial_log(self.layout, "vm1"))

    # ------------------------------------------------------------------ commands
    def lab(self, *args: str) -> str:
        result = CliRunner().invoke(cli, ["lab", *args, *self.opts])
        assert result.exit_code == 0, (args, result.output)
        return result.output

    def fresh(self, mode: str) -> None:
        """Day 0: whatever an earlier case left is taken down first."""
        self.lab("down")
        self.lab("up", "--vms", "1", "--mode", mode)
        self.wait_acked(3)

    def drorch(
        self, site: str, *args: str, timeout: float = 120, config: bool = True
    ) -> tuple[int, str]:
        """`drorch ARGS -c cluster.yaml` typed in the site's namespace."""
        netns = self.layout.site(site).netns
        argv = ["ip", "netns", "exec", netns, sys.executable, "-m", "drorch", *args]
        argv += ["-c", str(self.files.cluster)] if config else []
        env = {"DRORCH_STATE_DIR": str(self.files.drorch_state), "PYTHONPATH": str(REPO)}
        done = subprocess.run(
            argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout
        )
        return done.returncode, done.stdout + done.stderr

    # ------------------------------------------------------------------ observations
    def wait_acked(self, above: int, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            acked = last_acked(self.serial)
            if acked is not None and acked >= above:
                return acked
            time.sleep(0.5)
        raise AssertionError(f"the guest acknowledged no value >= {above} in {timeout:g} s")

    def sample(self, since: float) -> Sample:
        running, primary = [], []
        for site in self.layout.sites:
            if live_pid(self.layout.run_dir(site.name) / "qemu" / "vm1.pid", "qemu"):
                running.append(site.name)
            ctl = replica_control_path(self.files.root, "vm1-disk", NODES[site.name])
            try:
                if ControlClient(ctl, timeout=2).call("status")["role"] == "primary":
                    primary.append(site.name)
            except (ControlUnreachable, OSError, KeyError, TypeError):
                pass  # a dead daemon serves no writes
        s = Sample(round(time.monotonic() - since, 1), tuple(running), tuple(primary))
        self.samples.append(s)
        return s

    def watch(self, seconds: float, since: float, interval: float = 0.5) -> list[Sample]:
        """Sample who runs the guest and who is primary for `seconds`."""
        out = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            out.append(self.sample(since))
            time.sleep(interval)
        return out

    def boot_after(self, offset: int, timeout: float) -> int | None:
        """The start_counter of the guest's first boot after byte `offset` of its log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            boots = _BOOT.findall(self.serial.read_bytes()[offset:])
            if boots:
                return int(boots[0])
            time.sleep(0.5)
        return None

    def takeover_job(self, site: str, timeout: float = 120) -> dict[str, Any]:
        """The site's agent's last site-failover job, once it finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc, out = self.drorch(site, "agent", "status", "--node", NODES[site], "--format",
                                  "json")  # fmt: skip
            try:
                job = dict(json.loads(out).get("jobs", {}).get("takeover") or {}) if rc == 0 else {}
            except ValueError:
                job = {}
            if job and not job.get("running"):
                return job
            time.sleep(1.0)
        raise AssertionError(f"{site}'s agent finished no site-failover run in {timeout:g} s")

    def run_report(self, site: str, run_id: str) -> dict[str, Any]:
        rc, out = self.drorch(site, "runbook", "show", run_id, "--format", "json", config=False)
        assert rc == 0, out
        return dict(json.loads(out[: out.rindex("}") + 1]))

    def self_fences(self, site: str, since: int = 0) -> list[str]:
        log = self.files.log(f"agent-{site}")
        text = log.read_bytes()[since:].decode(errors="replace") if log.exists() else ""
        return [line for line in text.splitlines() if SELF_FENCE in line]

    def lease_gained_at(self, site: str, since: int = 0) -> float | None:
        """Wall-clock time of the first `quorum gained` the site's agent logged after
        byte `since` of its log."""
        log = self.files.log(f"agent-{site}")
        text = log.read_bytes()[since:].decode(errors="replace") if log.exists() else ""
        m = re.search(
            r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) \S+ INFO quorum gained", text, re.M
        )
        if m is None:
            return None
        at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").astimezone()
        return at.timestamp() + int(m.group(2)) / 1000

    def wait_discarded(self, site: str, timeout: float) -> dict[str, Any]:
        """The `discarded` record of the site's replica of vm1-disk (its unshipped
        ledger, after a resync from the peer), once there is one."""
        ctl = replica_control_path(self.files.root, "vm1-disk", NODES[site])
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                last = ControlClient(ctl, timeout=2).call("status")
                d = last["extra"].get("discarded")
                if d:
                    return dict(d)
            except (ControlUnreachable, OSError, KeyError, TypeError):
                pass
            time.sleep(1.0)
        raise AssertionError(f"{site}'s replica discarded nothing in {timeout:g} s: {last}")

    def agent_log_size(self, site: str) -> int:
        return size(self.files.log(f"agent-{site}"))

    def counter_audit(self, since: int = 0) -> dict[str, object]:
        return audit_serial(self.serial, since).as_dict()
