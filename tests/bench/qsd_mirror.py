"""QEMU's own replication as a peer for pyrepl: a primary `qemu-storage-daemon` exporting
its disk over NBD and mirroring it (`blockdev-mirror`) to a secondary
`qemu-storage-daemon` over NBD, both from Debian's qemu-system-common.

- `copy-mode=write-blocking` (active mirror): once the job is READY, a guest write
  completes only after it is written to both the source and the target (what a user
  picks instead of pyrepl sync);
- `copy-mode=background`: writes complete locally and the job copies dirty regions later
  (the counterpart of pyrepl async).

What "written to the target" means: a FUA write from the NBD client reaches the source
file as a write + flush, but the mirror sends it on to the target without FUA and
flushes only the source (measured with strace: 1,000 FUA writes, 1,000 fdatasync calls
at the primary, none at the secondary; a guest's explicit flush reaches only the source
too). As shipped, the guest is told a write is done while the target holds it in its
page cache: lost if the secondary loses power before its own writeback, which pyrepl
sync (DRBD's protocol C) does not allow.
`durable_target=True` gives the secondary's export `writethrough=on`, so every write
the target receives is flushed before it answers: the same promise as pyrepl sync,
durable at both sites before the acknowledgement (1,000 fdatasync calls at each).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_path(path: Path, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"qemu-storage-daemon exited {proc.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"{path} did not appear")


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"qemu-storage-daemon exited {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


class Qmp:
    """A minimal QMP client (one command at a time, events kept aside)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(30)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rwb")
        self._read()  # greeting
        self.command("qmp_capabilities")

    def _read(self) -> dict[str, object]:
        line = self.file.readline()
        if not line:
            raise RuntimeError("QMP closed")
        msg: dict[str, object] = json.loads(line)
        return msg

    def command(self, name: str, **args: object) -> object:
        self.file.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        self.file.flush()
        for _ in range(10_000):  # bounded: events may come before the reply
            msg = self._read()
            if "return" in msg:
                return msg["return"]
            if "error" in msg:
                raise RuntimeError(f"QMP {name}: {msg['error']}")
        raise RuntimeError(f"QMP {name}: no reply")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


@contextmanager
def qsd_mirror(
    root: Path,
    label: str,
    copy_mode: str,
    size_mib: int,
    secondary_dir: Path | None = None,
    *,
    durable_target: bool = False,
) -> Iterator[tuple[str, tuple[int, int]]]:
    """Yield (the primary's NBD URI, (primary pid, secondary pid)) with the mirror job
    READY (in sync). `copy_mode`: write-blocking | background."""
    primary_img = root / f"{label}-primary.img"
    secondary_img = (secondary_dir or root) / f"{label}-secondary.img"
    for img in (primary_img, secondary_img):
        with open(img, "wb") as f:
            f.truncate(size_mib * 1024 * 1024)
    sec_port, pri_port = _free_port(), _free_port()
    log = open(root / f"{label}.log", "ab")  # noqa: SIM115 - closed below
    secondary = subprocess.Popen(
        [
            "qemu-storage-daemon",
            "--blockdev", f"driver=file,filename={secondary_img},node-name=sec-file",
            "--blockdev", "driver=raw,file=sec-file,node-name=sec",
            "--nbd-server", f"addr.type=inet,addr.host=127.0.0.1,addr.port={sec_port}",
            "--export",
            "type=nbd,id=sec-export,node-name=sec,name=sec,writable=on"
            + (",writethrough=on" if durable_target else ""),
        ],
        stdout=log,
        stderr=log,
    )  # fmt: skip
    procs = [secondary]
    qmp_path = root / f"{label}.qmp"
    try:
        _wait_port(sec_port, secondary)
        primary = subprocess.Popen(
            [
                "qemu-storage-daemon",
                "--blockdev", f"driver=file,filename={primary_img},node-name=pri-file",
                "--blockdev", "driver=raw,file=pri-file,node-name=pri",
                "--blockdev",
                f"driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={sec_port},"
                "export=sec,node-name=target",
                "--nbd-server", f"addr.type=inet,addr.host=127.0.0.1,addr.port={pri_port}",
                "--export", "type=nbd,id=pri-export,node-name=pri,name=pri,writable=on",
                "--chardev", f"socket,path={qmp_path},server=on,wait=off,id=qmp",
                "--monitor", "chardev=qmp",
            ],
            stdout=log,
            stderr=log,
        )  # fmt: skip
        procs.append(primary)
        _wait_path(qmp_path, primary)
        _wait_port(pri_port, primary)
        qmp = Qmp(qmp_path)
        try:
            qmp.command(
                "blockdev-mirror",
                **{
                    "job-id": "mirror",
                    "device": "pri",
                    "target": "target",
                    "sync": "full",
                    "copy-mode": copy_mode,
                },
            )
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                jobs = qmp.command("query-block-jobs")
                assert isinstance(jobs, list)
                if jobs and jobs[0].get("ready"):
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError(f"{label}: the mirror job never became ready")
        finally:
            qmp.close()
        yield f"nbd://127.0.0.1:{pri_port}/pri", (primary.pid, secondary.pid)
    finally:
        for proc in reversed(procs):
            _stop(proc)
        log.close()


def mirror_idle(label: str, root: Path) -> None:
    """Wait until the mirror has nothing left to copy (background mode lags behind)."""
    qmp = Qmp(root / f"{label}.qmp")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            jobs = qmp.command("query-block-jobs")
            assert isinstance(jobs, list)
            if not jobs or jobs[0].get("offset") == jobs[0].get("len"):
                return
            time.sleep(0.05)
    finally:
        qmp.close()


def mirror_checks(results: dict[str, dict[str, float]]) -> list[tuple[str, float, float, bool]]:
    """Print pyrepl against QEMU's mirror (same client, same run); the checks to grade.
    pyrepl sync is graded against the mirror that promises what it promises (the target
    durable too); the mirror as shipped is printed beside it, with its flush count."""
    sync = results["pyrepl sync"]
    durable = results["qemu mirror write-blocking, durable target"]
    shipped = results["qemu mirror write-blocking"]
    asyn, background = results["pyrepl async"], results["qemu mirror background"]
    ratio = sync["sync4k_us"] / durable["sync4k_us"]
    print(
        f"pyrepl sync vs QEMU active mirror (copy-mode=write-blocking) with a durable target "
        f"(the secondary's export writethrough=on), 4KiB FUA writes: "
        f"{sync['sync4k_us']:.0f} us vs {durable['sync4k_us']:.0f} us = {ratio:.2f}x "
        f"(target <= 1.0x); device flushes per write {sync['flushes_per_write']:.2f} vs "
        f"{durable['flushes_per_write']:.2f}"
    )
    print(
        f"QEMU active mirror as shipped (the target's export writeback, the default): "
        f"{shipped['sync4k_us']:.0f} us, {shipped['flushes_per_write']:.2f} device flushes "
        f"per write: the FUA reaches the source only, the target is not flushed before the "
        f"write completes (not the same promise: pyrepl sync is "
        f"{sync['sync4k_us'] / shipped['sync4k_us']:.2f}x its latency)"
    )
    print(
        f"pyrepl async vs QEMU mirror copy-mode=background: 4KiB FUA "
        f"{asyn['sync4k_us']:.0f} us vs {background['sync4k_us']:.0f} us = "
        f"{asyn['sync4k_us'] / background['sync4k_us']:.2f}x; 1MiB seq "
        f"{asyn['seq_mibps']:.0f} vs {background['seq_mibps']:.0f} MiB/s = "
        f"{asyn['seq_mibps'] / background['seq_mibps']:.2f}x"
    )
    return [
        (
            "pyrepl sync 4KiB latency <= 1.0x QEMU write-blocking mirror, durable target",
            ratio,
            1.0,
            False,
        ),
        (
            "pyrepl sync makes both sites durable: >= 2 device flushes per write (shared disk)",
            sync["flushes_per_write"],
            1.9,
            True,
        ),
    ]
