"""Positive fencing of the lost site through a ClusterLabs fence agent (`fence_virsh`,
`fence_ipmilan`, `fence_redfish`, ... from Debian's `fence-agents`).

The fence-agents interface (the one Pacemaker's stonithd uses): options as `key=value`
lines on stdin, `action=off|status|...`. Exit codes: 0 done; for `status`, 0 means ON,
2 means OFF, anything else is a failure.

`fence_off()` asks for `off`, then asks `status` and confirms only on a clean "OFF".
Everything else — no such program, a non-zero exit, a status that still says ON or is
unreadable, the deadline passing — is *unconfirmed*, and the survivor falls back to the
full `takeover_wait`: an unconfirmed fence never shortens the wait.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass

from drorch.model.types import FenceAgent

STATUS_ON, STATUS_OFF = 0, 2


@dataclass(frozen=True)
class FenceResult:
    confirmed: bool
    reason: str
    seconds: float


def _stdin(action: str, options: Mapping[str, str]) -> str:
    lines = [f"action={action}"]
    for key, value in options.items():
        if "\n" in key or "\n" in value or "=" in key:
            raise ValueError(f"fence option {key!r}: no newlines, no '=' in the name")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def _call(argv: list[str], action: str, options: Mapping[str, str], left: float) -> tuple[int, str]:
    done = subprocess.run(
        argv,
        input=_stdin(action, options),
        capture_output=True,
        text=True,
        timeout=max(0.1, left),
        check=False,
    )
    text = (done.stdout.strip() + "\n" + done.stderr.strip()).strip()
    return done.returncode, text.splitlines()[-1] if text else ""


def fence_off(spec: FenceAgent, site: str) -> FenceResult:
    """Power `site` off through its fence agent and confirm it; never raises."""
    started = time.monotonic()
    program = shutil.which(spec.agent)

    def result(confirmed: bool, reason: str) -> FenceResult:
        return FenceResult(confirmed, reason, round(time.monotonic() - started, 3))

    if program is None:
        return result(False, f"fence agent {spec.agent} is not installed (package fence-agents)")
    deadline = started + spec.timeout
    try:
        rc, last = _call([program], "off", spec.options, deadline - time.monotonic())
        if rc != 0:
            return result(False, f"{spec.agent} action=off exited {rc}: {last}")
        rc, last = _call([program], "status", spec.options, deadline - time.monotonic())
    except subprocess.TimeoutExpired:
        return result(False, f"{spec.agent} did not answer within {spec.timeout:g}s")
    except (OSError, ValueError) as exc:
        return result(False, f"{spec.agent}: {exc}")
    if rc == STATUS_OFF:
        return result(True, f"{spec.agent} confirmed site {site} off ({last or 'Status: OFF'})")
    if rc == STATUS_ON:
        return result(False, f"{spec.agent} says site {site} is still on after off ({last})")
    return result(False, f"{spec.agent} action=status exited {rc}: {last}")
