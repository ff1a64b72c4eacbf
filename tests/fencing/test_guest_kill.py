"""The self-fence SIGKILLs the guest's QEMU itself (libvirt's destroy waits 10 s on a
SIGTERM a QEMU stuck on a frozen disk cannot honour)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from drorch.fencing import guest_kill
from drorch.fencing.guest_kill import kill_guest, qemu_pids


def fake_proc(tmp_path: Path, procs: dict[int, list[str]]) -> Path:
    for pid, argv in procs.items():
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (tmp_path / "self").mkdir()  # no ns/net in the fake tree: every process counts
    return tmp_path


PROCS = {
    101: ["/usr/bin/qemu-system-x86_64", "-name", "guest=vm1,debug-threads=on", "-m", "128"],
    102: ["/usr/bin/qemu-system-x86_64", "-name", "guest=vm10,debug-threads=on"],
    103: ["/usr/bin/python3", "-name", "guest=vm1"],  # not a QEMU
    104: ["qemu-system-x86_64", "-name", "guest=vm1"],
}


def test_only_the_named_guests_qemu_is_found(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, PROCS)
    assert qemu_pids("vm1", proc) == [101, 104]
    assert qemu_pids("vm10", proc) == [102]
    assert qemu_pids("vm2", proc) == []


def test_kill_guest_sends_sigkill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[int, int]] = []

    def kill(pid: int, sig: int) -> None:
        if pid == 104:
            raise ProcessLookupError  # exited meanwhile
        sent.append((pid, sig))

    monkeypatch.setattr(guest_kill.os, "kill", kill)
    assert kill_guest("vm1", fake_proc(tmp_path, PROCS)) == [101]
    assert sent == [(101, signal.SIGKILL)]
