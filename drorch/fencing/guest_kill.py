"""SIGKILL a guest's QEMU process directly: the fast half of a self-fence.

libvirt's destroy sends SIGTERM first and waits up to 10 s before SIGKILL. A QEMU whose
disk is a frozen NBD export (a sync primary that lost its peer and the witness) cannot
finish its SIGTERM shutdown, since it drains the in-flight I/O first, so the guest kept
running for those 10 s. In the lab that was past the moment the witness let the other
site take the lease (tests/virt_lab/test_virt_lab_e2e_faults.py). A fence must not wait
for the thing it fences. So the self-fence first SIGKILLs every QEMU process of this
network namespace whose `-name guest=DOMAIN` names the guest, and then lets libvirt
clean up.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def qemu_pids(domain: str, proc: Path = Path("/proc")) -> list[int]:
    """QEMU processes in this process's network namespace that run `domain`."""
    try:
        mine = os.stat(proc / "self" / "ns" / "net")
    except OSError:
        mine = None
    want = f"guest={domain}".encode()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if mine is not None:
                ns = os.stat(entry / "ns" / "net")
                if (ns.st_dev, ns.st_ino) != (mine.st_dev, mine.st_ino):
                    continue
        except OSError:
            continue
        if not argv or b"qemu" not in os.path.basename(argv[0]):
            continue
        names = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == b"-name"]
        if any(n == want or n.startswith(want + b",") for n in names):
            found.append(int(entry.name))
    return sorted(found)


def kill_guest(domain: str, proc: Path = Path("/proc")) -> list[int]:
    """SIGKILL the guest's QEMU processes; the PIDs signalled."""
    killed = []
    for pid in qemu_pids(domain, proc):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
        killed.append(pid)
    return killed
