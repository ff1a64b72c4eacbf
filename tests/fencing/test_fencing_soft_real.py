"""The soft watchdog for real: an agent process that arms it and feeds it is killed
with -9 or frozen with SIGSTOP; the supervisor must fence the node's resource process
and run the self-fence command within the timeout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

TIMEOUT = 1.0

AGENT = textwrap.dedent(
    """
    import sys, time
    from drorch.fencing.soft import SelfFenceActions, SoftWatchdog
    victim, marker, log = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    dog = SoftWatchdog(SelfFenceActions(
        kill_pids=(victim,), commands=(f"echo fenced > {marker}",), log=log))
    dog.arm(float(sys.argv[4]))
    print(dog.pid, flush=True)
    for _ in range(600):  # bounded: 60 s of feeding
        dog.keepalive()
        time.sleep(0.1)
    dog.disarm()
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("fault", ["kill9", "sigstop"])
def test_agent_fault_fences_resources(tmp_path: Path, fault: str) -> None:
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    marker, log = tmp_path / "fenced", tmp_path / "fired.log"
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT, str(victim.pid), str(marker), str(log), str(TIMEOUT)],
        stdout=subprocess.PIPE,
        text=True,
    )
    supervisor = 0
    try:
        assert agent.stdout is not None
        supervisor = int(agent.stdout.readline())
        time.sleep(TIMEOUT * 1.5)  # fed through more than one timeout: nothing fires
        assert victim.poll() is None and not marker.exists()
        hit = time.monotonic()
        os.kill(agent.pid, signal.SIGKILL if fault == "kill9" else signal.SIGSTOP)
        victim.wait(timeout=TIMEOUT + 2)  # raises if the supervisor never fenced
        fenced_after = time.monotonic() - hit
        assert fenced_after <= TIMEOUT + 0.5, f"fenced {fenced_after:.2f}s after the fault"
        for _ in range(50):  # the command runs right after the kill
            if marker.exists() and log.exists():
                break
            time.sleep(0.05)
        assert marker.read_text().strip() == "fenced"
        record = json.loads(log.read_text().splitlines()[-1])
        assert record["killed"] == [victim.pid] and record["reason"].startswith("not fed for 1s")
    finally:
        for p in (victim, agent):
            if p.poll() is None:
                p.kill()
                p.wait(timeout=5)
        if agent.stdout is not None:
            agent.stdout.close()
        if supervisor and _alive(supervisor):
            os.kill(supervisor, signal.SIGKILL)


def test_clean_disarm_fences_nothing(tmp_path: Path) -> None:
    from drorch.fencing.soft import SelfFenceActions, SoftWatchdog

    marker = tmp_path / "fenced"
    dog = SoftWatchdog(SelfFenceActions(commands=(f"touch {marker}",)))
    dog.arm(TIMEOUT)
    dog.keepalive()
    dog.disarm()
    time.sleep(TIMEOUT * 1.5)
    assert not marker.exists()


def test_sigterm_to_supervisor_fences(tmp_path: Path) -> None:
    from drorch.fencing.soft import SelfFenceActions, SoftWatchdog

    marker = tmp_path / "fenced"
    dog = SoftWatchdog(SelfFenceActions(commands=(f"touch {marker}",)))
    dog.arm(30)
    assert dog.pid is not None
    os.kill(dog.pid, signal.SIGTERM)
    assert dog.wait_fired(timeout=5) == 2
    assert marker.exists()
    dog.close()
