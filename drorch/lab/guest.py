"""Lab guests: domain XML for the heartbeat guest and reading its serial log.

The guest boots the cached kernel and initramfs directly (no bootloader, no NIC) under
TCG (`<domain type='qemu'>`: KVM guests hang on this host, see LAB-NOTES). Its serial
console is a file that both sites append to, so the heartbeat continues in one log
across a migration or failover.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from drorch.clock import Clock
from drorch.lab.image import GuestImage
from drorch.wait import wait_until

_HEARTBEAT = re.compile(rb"HEARTBEAT (\d+)")


@dataclass(frozen=True)
class GuestSpec:
    name: str
    memory_mib: int = 128
    #: extra kernel command line, e.g. "dirty=48" or "disk=1"
    cmdline: str = ""
    #: a complete <disk> element, or None for a disk-less guest
    disk_xml: str | None = None
    virt_type: str = "qemu"
    #: False: no ACPI, so the guest ignores a graceful shutdown request
    acpi: bool = True


def domain_xml(spec: GuestSpec, image: GuestImage, serial_log: Path) -> str:
    log = quoteattr(str(serial_log))
    cmdline = escape(f"console=ttyS0 panic=-1 quiet labvm={spec.name} {spec.cmdline}".strip())
    disk = f"\n    {spec.disk_xml}" if spec.disk_xml else ""
    return f"""<domain type={quoteattr(spec.virt_type)}>
  <name>{escape(spec.name)}</name>
  <memory unit='MiB'>{spec.memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(str(image.kernel))}</kernel>
    <initrd>{escape(str(image.initrd))}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features>{"<acpi/>" if spec.acpi else ""}</features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>{disk}
    <serial type='file'>
      <source path={log} append='on'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path={log} append='on'/>
      <target type='serial' port='0'/>
    </console>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def last_heartbeat(serial_log: Path) -> int | None:
    """The highest `HEARTBEAT n` in the log, or None before the first one."""
    try:
        data = serial_log.read_bytes()
    except FileNotFoundError:
        return None
    found = _HEARTBEAT.findall(data)
    return max(int(n) for n in found) if found else None


def wait_heartbeat(serial_log: Path, clock: Clock, *, above: int = 0, timeout: float = 30.0) -> int:
    """Wait until the log shows a heartbeat greater than `above`; return it.
    TimeoutError names the last heartbeat seen."""
    seen: int | None = None

    def beat() -> bool:
        nonlocal seen
        seen = last_heartbeat(serial_log)
        return seen is not None and seen > above

    if wait_until(clock, beat, clock.monotonic() + timeout, interval=0.1) and seen is not None:
        return seen
    raise TimeoutError(
        f"{serial_log}: no heartbeat above {above} within {timeout:g} s (last seen: {seen})"
    )
