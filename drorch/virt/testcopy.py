"""Test copies for the test-recovery drill: boot production's VMs at the DR site from a
copy of its replica, on an isolated network, and remove every trace afterwards.

For each volume, on the DR node:

- a point-in-time view of the secondary replica, when its driver has one (pyrepl:
  `repl pit-take`, a read-only NBD export `VOLUME@LABEL` frozen when taken, while
  replication keeps writing the replica; drorch.replication.capabilities.PointInTime).
  A driver without views (DRBD, the simulator) exports the live replica file: blocks
  replicated during the test then show through where the copy has not written;
- `qemu-nbd --read-only` re-exports that view (or the replica file) on a unix socket, so
  the copy reaches its disk from inside the isolated network. Read-only, twice over, is
  the guarantee that nothing the test copy does can reach production's replica;
- a qcow2 overlay backed by that export takes every write of the booted copy;
- the copies join an isolated network: a network namespace with nothing but loopback,
  so no route leads to the production site or the WAN.

Every trace is recorded in a manifest *before* it is made (write-ahead), so `cleanup`
can remove all of them after a crash at any point: processes by their pid (checked
against their command line first, so a reused pid is never killed), namespaces, domains,
files. Cleanup is idempotent.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from drorch.remote.base import CommandRunner
from drorch.replication.base import ReplicationError
from drorch.replication.capabilities import PointInTime
from drorch.replication.pyrepl.errors import ControlUnreachable

MANIFEST = "manifest.json"


def workdir(state_dir: Path, run_id: str) -> Path:
    return state_dir / "test-recovery" / run_id


def socket_dir(run_id: str) -> Path:
    """Where the exports' unix sockets live: short, because a socket path must stay
    under 108 bytes however deep the state directory is."""
    return Path("/tmp") / f"drtr-{hashlib.sha256(run_id.encode()).hexdigest()[:10]}"


def netns_name(run_id: str) -> str:
    """Short and unique per run (namespace names live in /run/netns)."""
    return "drtr-" + hashlib.sha256(run_id.encode()).hexdigest()[:10]


def copy_domain(run_id: str, domain: str) -> str:
    return f"drtr-{hashlib.sha256(run_id.encode()).hexdigest()[:6]}-{domain}"


@dataclass
class Trace:
    kind: str  # pit nbd overlay netns libvirt-net domain dir
    node: str
    name: str  # pid file, path, namespace, domain name
    extra: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "node": self.node, "name": self.name, "extra": self.extra}


@dataclass
class Manifest:
    """The traces of one test recovery, in the order they were (to be) made."""

    path: Path
    run_id: str
    traces: list[Trace] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        raw = json.loads(path.read_text())
        traces = [Trace(t["kind"], t["node"], t["name"], dict(t.get("extra", {})))
                  for t in raw["traces"]]  # fmt: skip
        return cls(path, str(raw["run_id"]), traces)

    def add(self, trace: Trace) -> Trace:
        """Record `trace` durably before it is made."""
        if trace not in self.traces:
            self.traces.append(trace)
            self._save()
        return trace

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        data = {"run_id": self.run_id, "traces": [t.as_dict() for t in self.traces]}
        with tmp.open("w") as out:
            json.dump(data, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)


def open_manifest(state_dir: Path, run_id: str) -> Manifest:
    path = workdir(state_dir, run_id) / MANIFEST
    return Manifest.load(path) if path.exists() else Manifest(path, run_id)


class TestCopyError(RuntimeError):
    pass


def _run(
    runner: CommandRunner, argv: list[str], timeout: float = 60.0, stdin: str | None = None
) -> str:
    result = runner.run(argv, timeout=timeout, input=stdin)
    if not result.ok:
        msg = result.stderr.strip() or result.stdout.strip() or "(no output)"
        raise TestCopyError(f"{' '.join(argv)} exited {result.returncode}: {msg}")
    return result.stdout


def point_in_time(
    m: Manifest, runner: CommandRunner, view: PointInTime, node: str, work: Path, volume: str
) -> str:
    """A point-in-time view of the replica of `volume` on `node`; returns its NBD URI."""
    label = netns_name(m.run_id)  # short, unique per run; the export is VOLUME@LABEL
    store = work / f"{volume}.pit"
    m.add(Trace("pit", node, label, {"volume": volume, "store": str(store)}))
    _run(runner, ["mkdir", "-p", "-m", "0700", str(work)])
    try:
        return view.take_point_in_time(label, str(store))
    except ReplicationError as exc:
        raise TestCopyError(f"{volume}@{node}: no point-in-time view: {exc}") from exc


def export_readonly(
    m: Manifest, runner: CommandRunner, node: str, replica: str, work: Path, volume: str
) -> str:
    """A read-only NBD export of `replica` (a file, or an NBD URI such as a point-in-time
    view's) on a unix socket; returns the socket path."""
    sockets = socket_dir(m.run_id)
    m.add(Trace("dir", node, str(sockets)))
    sock = sockets / f"{hashlib.sha256(volume.encode()).hexdigest()[:8]}.sock"
    pid = work / f"nbd-{volume}.pid"
    m.add(Trace("nbd", node, str(pid), {"socket": str(sock), "volume": volume}))
    if _alive(runner, pid, str(sock)):
        return str(sock)  # already exported (a resumed run)
    _run(runner, ["mkdir", "-p", "-m", "0700", str(work), str(sockets)])
    _run(runner, [
        "qemu-nbd", "--read-only", "--persistent", "--shared=8", "--format=raw",
        f"--socket={sock}", f"--pid-file={pid}", "--fork", replica,
    ])  # fmt: skip
    return str(sock)


def overlay(
    m: Manifest, runner: CommandRunner, node: str, socket: str, work: Path, volume: str
) -> str:
    """A qcow2 overlay over the NBD export: the copy's writes land only here."""
    path = work / f"{volume}.qcow2"
    m.add(Trace("overlay", node, str(path)))
    if _run(runner, ["sh", "-c", f"test -e '{path}' && echo yes || true"]).strip() != "yes":
        _run(runner, ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
                      "-b", f"nbd+unix:///?socket={socket}", str(path)])  # fmt: skip
    return str(path)


def isolated_network(m: Manifest, runner: CommandRunner, node: str, name: str) -> str:
    """A network namespace with only loopback (up): no route to anything else."""
    m.add(Trace("netns", node, name))
    names = _run(runner, ["ip", "netns", "list"]).split()
    if name not in names:
        _run(runner, ["ip", "netns", "add", name])
    _run(runner, ["ip", "-n", name, "link", "set", "lo", "up"])
    return name


def libvirt_network(m: Manifest, runner: CommandRunner, node: str, uri: str, work: Path) -> str:
    """An isolated libvirt network for the copies' NICs at the site (no <forward>: its
    bridge reaches nothing but the copies), defined and started through `virsh`."""
    name = netns_name(m.run_id)
    m.add(Trace("libvirt-net", node, name, {"uri": uri}))
    if name in _networks(runner, uri):
        return name  # a resumed run
    xml = work / "network.xml"
    bridge = f"drb{hashlib.sha256(m.run_id.encode()).hexdigest()[:8]}"
    _run(runner, ["mkdir", "-p", "-m", "0700", str(work)])
    _run(
        runner,
        ["sh", "-c", f"cat > '{xml}'"],
        stdin=(f"<network><name>{name}</name><bridge name='{bridge}' stp='off'/></network>\n"),
    )
    _run(runner, ["virsh", "-c", uri, "net-define", str(xml)])
    _run(runner, ["virsh", "-c", uri, "net-start", name])
    return name


def _networks(runner: CommandRunner, uri: str) -> list[str]:
    """The libvirt networks defined at `uri`, active or not."""
    return _run(runner, ["virsh", "-c", uri, "net-list", "--all", "--name"]).split()


def routes(runner: CommandRunner, name: str) -> list[str]:
    """The namespace's routes other than loopback's (must be none)."""
    out = _run(runner, ["ip", "-n", name, "-o", "route", "show", "table", "all"])
    return [ln for ln in out.splitlines() if ln.strip() and " dev lo " not in f" {ln} "]


def links(runner: CommandRunner, name: str) -> list[str]:
    out = _run(runner, ["ip", "-n", name, "-o", "link", "show"])
    return [ln.split(":")[1].strip() for ln in out.splitlines() if ":" in ln]


def _alive(runner: CommandRunner, pid_file: Path, marker: str) -> int | None:
    """The pid in `pid_file` if that process still runs and its command line names
    `marker` (never trust a bare pid: it may have been reused)."""
    text = runner.run(["cat", str(pid_file)], timeout=10).stdout.strip()
    if not text.isdigit():
        return None
    cmd = runner.run(["cat", f"/proc/{text}/cmdline"], timeout=10)
    if not cmd.ok or marker not in cmd.stdout.replace("\0", " "):
        return None
    return int(text)


def cleanup(
    m: Manifest,
    runners: Callable[[str], CommandRunner],
    undefine: Callable[[Trace], str | None],
    log: Callable[[str], None] = lambda s: None,
    views: Callable[[str, str], PointInTime | None] = lambda volume, node: None,
) -> list[str]:
    """Remove every trace in reverse order; returns the problems (empty: all gone).
    `views(volume, node)` is the driver that made a point-in-time view."""
    problems: list[str] = []
    for t in reversed(m.traces):
        try:
            if t.kind == "domain":
                done = undefine(t) or "undefined"
            elif t.kind == "pit":
                done = _drop_view(t, runners(t.node), views(t.extra.get("volume", ""), t.node))
            else:
                done = _remove(t, runners(t.node))
        except Exception as exc:  # keep going: every other trace must still go
            problems.append(f"{t.kind} {t.name}: {type(exc).__name__}: {exc}")
            continue
        log(f"{t.kind} {t.name}: {done}")
    if not problems:
        shutil.rmtree(m.path.parent, ignore_errors=True)
    return problems


def _drop_view(t: Trace, runner: CommandRunner, view: PointInTime | None) -> str:
    """Drop the view (a daemon that is down or restarted has none), then its store."""
    try:
        said = "no driver to ask" if view is None else (
            "dropped" if view.drop_point_in_time(t.name) else "not there")  # fmt: skip
    except ControlUnreachable:
        said = "its daemon does not answer (a restarted daemon has no views)"
    runner.run(["rm", "-f", t.extra.get("store", "")], timeout=10)
    return f"{said}; store removed"


def _remove(t: Trace, runner: CommandRunner) -> str:
    if t.kind == "nbd":
        pid = _alive(runner, Path(t.name), t.extra.get("socket", ""))
        if pid is not None:
            runner.run(["kill", str(pid)], timeout=10)
            for _ in range(50):  # bounded: 5 s, then SIGKILL
                if _alive(runner, Path(t.name), t.extra.get("socket", "")) is None:
                    break
                runner.run(["sleep", "0.1"], timeout=5)
            else:
                runner.run(["kill", "-9", str(pid)], timeout=10)
        runner.run(["rm", "-f", t.name, t.extra.get("socket", "")], timeout=10)
        return f"stopped (pid {pid})" if pid else "not running"
    if t.kind == "overlay":
        runner.run(["rm", "-f", t.name], timeout=10)
        return "removed"
    if t.kind == "libvirt-net":
        uri = t.extra.get("uri", "")
        if t.name not in _networks(runner, uri):
            return "absent"
        runner.run(["virsh", "-c", uri, "net-destroy", t.name], timeout=30)
        _run(runner, ["virsh", "-c", uri, "net-undefine", t.name], timeout=30)
        return "destroyed and undefined"
    if t.kind == "netns":
        if t.name in _run(runner, ["ip", "netns", "list"]).split():
            _run(runner, ["ip", "netns", "delete", t.name])
            return "deleted"
        return "absent"
    if t.kind == "dir":
        runner.run(["rm", "-rf", t.name], timeout=30)
        return "removed"
    raise TestCopyError(f"unknown trace kind {t.kind!r}")
