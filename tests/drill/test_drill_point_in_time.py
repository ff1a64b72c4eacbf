"""The test-recovery copy on real `drorch repl serve` processes (a sync primary at A, its
secondary at B) with real qemu-nbd, qemu-img and qemu-io, while production keeps writing
and replication keeps running:

- the copy at B boots from a qcow2 overlay on a read-only export of a point-in-time view
  of B's replica: it sees the data as it was when the view was taken, not what
  production wrote afterwards (which B's replica does receive);
- the copy's writes land only in its overlay; neither the view nor its export takes one;
- production's replica is byte for byte what production wrote (sha256 of B's replica =
  sha256 of A's = the sha256 of the expected bytes), before, during and after;
- cleanup (the drill's own step, and `drorch drill cleanup` after the drill died) leaves
  no view, store, export process, overlay, socket or namespace behind."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drorch.drill.cleanup import cleanup_run
from drorch.envbuild import build_environment_report
from drorch.environment import Environment
from drorch.model.loader import parse_cluster_text
from drorch.model.types import Cluster
from drorch.replication.pyrepl.driver import PyreplReplicator
from drorch.runbook.steps.base import StepContext
from drorch.runbook.steps.recovery import Boot, Cleanup, Prepare, Verify
from drorch.testing.clock import FakeClock
from drorch.virt.testcopy import copy_domain, netns_name, socket_dir, workdir
from tests.drill.test_drill_test_recovery import nbd_pids, netns
from tests.pyrepl.conftest import ServeProcess, wait_until

MiB = 1 << 20
SIZE = 8 * MiB
# qemu-nbd/qemu-img/qemu-io (qemu-utils) and ip (iproute2) come from
# tests/system-packages.txt, which `make test` installs: no skip hides a missing install


def cluster_yaml(a: ServeProcess, b: ServeProcess) -> str:
    return f"""\
cluster: pit
primary_site: A
sites:
  A: {{nodes: [{{name: a1, address: local}}]}}
  B: {{nodes: [{{name: b1, address: local}}]}}
volumes:
  - {{name: vol, driver: pyrepl, mode: sync, size: 8MiB, port: 7700,
      paths: {{a1: {a.backing}, b1: {b.backing}}}}}
vms:
  - {{name: app, domain: pit-app, volumes: [vol], migratable: false, memory: 128MiB}}
hypervisor: {{driver: sim, state_dir: sim}}
"""


def qemu_io(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-io", *args], capture_output=True, text=True, timeout=60)


def write(uri: str, pattern: int, offset: int, length: int) -> None:
    out = qemu_io("-f", "raw", "-c", f"write -P {pattern:#x} {offset} {length}", uri)
    assert out.returncode == 0 and "wrote" in out.stdout, out


def reads(path_or_uri: str, fmt: str, pattern: int, offset: int, length: int) -> bool:
    out = qemu_io("-r", "-f", fmt, "-c", f"read -P {pattern:#x} {offset} {length}", path_or_uri)
    assert out.returncode == 0, out
    return "Pattern verification failed" not in out.stdout


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Expected:
    """What production wrote: the bytes both replicas must hold."""

    def __init__(self) -> None:
        self.data = bytearray(SIZE)

    def write(self, uri: str, pattern: int, offset: int, length: int) -> None:
        write(uri, pattern, offset, length)
        self.data[offset : offset + length] = bytes([pattern]) * length

    def sha(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


Lab = tuple[ServeProcess, ServeProcess, Cluster, Callable[[], Environment], Path]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    b = ServeProcess(tmp_path, "b", "secondary", "sync", size="8MiB")
    procs = [b]
    try:
        b.wait_ready()
        a = ServeProcess(tmp_path, "a", "primary", "sync", peer=b.listen, size="8MiB")
        procs.append(a)
        a.wait_ready()
        wait_until("in sync", lambda: in_sync(a, b), timeout=30)
        cluster, reports = parse_cluster_text(cluster_yaml(a, b), "pit.yaml")
        assert not [r for r in reports if r.severity.value == "error"], reports
        state = tmp_path / "state"

        def env() -> Environment:
            e, problems = build_environment_report(cluster, tmp_path, FakeClock())
            assert not problems, problems
            e.state_dir = state
            # B's replica is the real `repl serve` daemon above (its own control socket)
            e.replicators[("vol", "b1")] = PyreplReplicator(
                cluster.volume("vol"), cluster.node("b1")[1], e, control=b.control)  # fmt: skip
            return e

        yield a, b, cluster, env, state
    finally:
        for p in procs:
            p.kill9()
        for pid in nbd_pids(str(tmp_path)):  # a failed test's exports, by pid
            subprocess.run(["kill", "-9", str(pid)], check=False)
        for run in (tmp_path / "state" / "test-recovery").glob("*"):  # a failed test's
            if netns_name(run.name) in netns():
                subprocess.run(["ip", "netns", "delete", netns_name(run.name)], check=False)
            shutil.rmtree(socket_dir(run.name), ignore_errors=True)


def in_sync(a: ServeProcess, b: ServeProcess) -> bool:
    sa, sb = a.status(), b.status()
    return (sa["connection"] == sb["connection"] == "Connected" and sb["disk"] == "UpToDate"
            and sa["out_of_sync_bytes"] == 0 and sa["lag_bytes"] == 0)  # fmt: skip


def nbd(p: ServeProcess, export: str = "vol") -> str:
    host, port = p.nbd
    return f"nbd://{host}:{port}/{export}"


def no_trace(run_id: str, state: Path, b: ServeProcess, env: Environment) -> None:
    assert not workdir(state, run_id).exists() and not socket_dir(run_id).exists()
    assert netns_name(run_id) not in netns()
    assert nbd_pids(str(state)) == []
    assert b.status()["point_in_time"] == []
    assert list(b.backing.parent.glob("*.pit*")) == [] and list(state.rglob("*.pit")) == []
    assert env.hypervisor("B").state(copy_domain(run_id, "pit-app")) == "undefined"


def test_copy_is_point_in_time_isolated_and_leaves_production_untouched(lab: Lab) -> None:
    a, b, cluster, make_env, state = lab
    production = Expected()
    production.write(nbd(a), 0x11, 0, 4 * MiB)  # what the copy must see
    wait_until("in sync", lambda: in_sync(a, b))
    assert sha(b.backing) == sha(a.backing) == production.sha()
    env = make_env()
    run_id = "20261203T140000Z-pit1"
    ctx = StepContext(env, cluster, run_id=run_id, step_id="copy")
    made = Prepare().run(ctx, {"site": "B"})
    assert made.data["point_in_time"] == {"vol": True}, made.message
    assert "point-in-time views" in made.message and "NOT" not in made.message
    Boot().run(ctx, {"site": "B"})
    Verify().run(ctx, {"site": "B"})
    overlay = workdir(state, run_id) / "vol.qcow2"
    info = subprocess.run(["qemu-img", "info", "-U", str(overlay)], capture_output=True,
                          text=True, timeout=30)  # fmt: skip
    assert "backing file format: raw" in info.stdout and "nbd+unix" in info.stdout, info.stdout
    (view,) = b.status()["point_in_time"]
    assert view["export"] == f"vol@{netns_name(run_id)}"

    # production keeps writing; replication keeps running (B's replica receives it all)
    production.write(nbd(a), 0x22, 0, 1 * MiB)
    production.write(nbd(a), 0x33, 6 * MiB, 1 * MiB)
    wait_until("in sync", lambda: in_sync(a, b))
    assert sha(b.backing) == sha(a.backing) == production.sha()
    # the copy sees the replica as it was when the view was taken
    assert reads(str(overlay), "qcow2", 0x11, 0, 4 * MiB)
    assert reads(str(overlay), "qcow2", 0x00, 6 * MiB, 1 * MiB)
    assert reads(nbd(b, view["export"]), "raw", 0x11, 0, 1 * MiB)
    assert b.status()["point_in_time"][0]["kept_bytes"] >= 2 * MiB  # the two overwrites
    # the copy writes: only its overlay changes
    wrote = qemu_io("-f", "qcow2", "-c", f"write -P 0xab {2 * MiB} {MiB}", str(overlay))
    assert wrote.returncode == 0, wrote.stderr
    assert reads(str(overlay), "qcow2", 0xAB, 2 * MiB, MiB)
    # neither the view nor its export takes a write
    refused = qemu_io("-f", "raw", "-c", "write 0 512", nbd(b, view["export"]))
    assert refused.returncode != 0 and "permission denied" in refused.stderr.lower()
    (sock,) = [p for p in socket_dir(run_id).iterdir() if p.suffix == ".sock"]
    refused = qemu_io("-f", "raw", "-c", "write 0 512", f"nbd+unix:///?socket={sock}")
    assert refused.returncode != 0 and "permission denied" in refused.stderr.lower()
    wait_until("in sync", lambda: in_sync(a, b))
    assert sha(b.backing) == sha(a.backing) == production.sha()  # no 0xab reached it

    done = Cleanup().run(ctx, {"site": "B"})
    assert done.message == "removed 6 trace(s)"  # netns, socket dir, view, export, overlay, copy
    no_trace(run_id, state, b, env)
    production.write(nbd(a), 0x44, 3 * MiB, 64 * 1024)  # still replicating after cleanup
    wait_until("in sync", lambda: in_sync(a, b))
    assert sha(b.backing) == sha(a.backing) == production.sha()


def test_drill_cleanup_after_a_crash_drops_the_view(lab: Lab) -> None:
    """The drill dies after making its copy (nothing of it runs any more); `drorch drill
    cleanup RUN_ID` (cleanup_run) removes every trace from the manifest, the view on the
    still-running secondary too."""
    a, b, cluster, make_env, state = lab
    production = Expected()
    production.write(nbd(a), 0x5A, MiB, 2 * MiB)
    wait_until("in sync", lambda: in_sync(a, b))
    run_id = "20261203T140500Z-pit2"
    Prepare().run(StepContext(make_env(), cluster, run_id=run_id, step_id="copy"),
                  {"site": "B"})  # fmt: skip
    assert len(b.status()["point_in_time"]) == 1
    production.write(nbd(a), 0x6B, MiB, 64 * 1024)  # the view keeps a chunk in its store
    wait_until("in sync", lambda: in_sync(a, b))
    lines: list[str] = []
    report = cleanup_run(cluster, make_env(), run_id, lines.append)
    assert report.problems == [], report.problems
    assert any(line.startswith("pit drtr-") and "dropped; store removed" in line
               for line in lines), lines  # fmt: skip
    no_trace(run_id, state, b, make_env())
    assert sha(b.backing) == sha(a.backing) == production.sha()
