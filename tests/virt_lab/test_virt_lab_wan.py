"""The WAN emulator and the faults on real namespaces (no libvirtd needed): a client in
siteA reaches an echo service in siteB through the nft DNAT and the proxy in `wan`,
with the delay set by `drorch lab wan`; partitions cut one pair and leave the others;
`kill-site` kills every process in the namespace; everything is in the event log."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from drorch.cli.main import cli
from drorch.lab.lab import Lab
from drorch.lab.layout import LabLayout
from drorch.lab.wan import Impairment
from drorch.remote.local import LocalRunner

pytestmark = pytest.mark.lab

ECHO = textwrap.dedent(
    """
    import socket, sys, threading
    srv = socket.create_server((sys.argv[1], int(sys.argv[2])))
    def echo(c):
        with c:
            while d := c.recv(65536):
                c.sendall(d)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()
    """
)
CLIENT = textwrap.dedent(
    """
    import json, socket, sys, time
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        out = []
        for _ in range(4):
            t = time.monotonic(); s.sendall(b"x" * 32); got = b""
            while len(got) < 32:
                d = s.recv(64)
                if not d: raise EOFError("closed")
                got += d
            out.append(time.monotonic() - t)
        print(json.dumps({"rtts": out}))
    except Exception as e:
        print(json.dumps({"error": type(e).__name__}))
    """
)


class WanLab:
    def __init__(self, root: Path) -> None:
        self.layout = LabLayout(name="pytest-wan", prefix="dw", subnet="10.77.63", root=root)
        self.lab = Lab(self.layout, LocalRunner())
        self.procs: list[subprocess.Popen[bytes]] = []
        self.options = ["--name", "pytest-wan", "--prefix", "dw", "--subnet", "10.77.63"]

    def serve(self, place: str, address: str, port: int) -> subprocess.Popen[bytes]:
        netns = self.layout.witness.netns if place == "witness" else f"dw{place}"  # type: ignore[union-attr]
        argv = ["ip", "netns", "exec", netns, sys.executable, "-c", ECHO, address, str(port)]
        proc = subprocess.Popen(argv)
        self.procs.append(proc)
        return proc

    def call(self, site: str, address: str, port: int) -> dict[str, object]:
        argv = ["ip", "netns", "exec", f"dw{site}", sys.executable, "-c", CLIENT]
        out = subprocess.run([*argv, address, str(port)], capture_output=True, timeout=30)
        return dict(json.loads(out.stdout))

    def cli(self, *args: str) -> str:
        result = CliRunner().invoke(cli, ["lab", *args, *self.options], env={})
        assert result.exit_code == 0, result.output
        return result.stdout


@pytest.fixture
def wan_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WanLab]:
    monkeypatch.setenv("DRORCH_LAB_DIR", str(tmp_path))
    w = WanLab(tmp_path)
    w.lab.network.up()
    try:
        yield w
    finally:
        for p in w.procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
        w.lab.wan.down()
        w.lab.network.down()


def wait_echo(w: WanLab, site: str, address: str, port: int) -> dict[str, object]:
    for _ in range(50):
        got = w.call(site, address, port)
        if "rtts" in got:
            return got
    raise AssertionError(f"no echo from {address}:{port}: {got}")


def test_wan_delay_partitions_kills_and_the_event_log(wan_lab: WanLab) -> None:
    w, lay = wan_lab, wan_lab.layout
    a, b = lay.sites
    witness = lay.witness
    assert witness is not None
    w.serve("siteB", b.address, 7789)
    w.serve("witness", witness.address, 7443)

    out = w.cli("wan", "--delay", "20ms", "--format", "json")
    assert json.loads(out)["impairment"]["delay"] == pytest.approx(0.02)
    rtts = wait_echo(w, "siteA", b.address, 7789)["rtts"]
    assert min(rtts) >= 0.040, rtts  # type: ignore[type-var]
    assert w.lab.wan.state().impairment == Impairment(delay=0.02)

    w.cli("wan", "--clear")
    assert sorted(wait_echo(w, "siteA", b.address, 7789)["rtts"])[1] < 0.030  # type: ignore[type-var]

    w.cli("fault", "partition", "A-B")
    assert w.call("siteA", b.address, 7789) == {"error": "TimeoutError"}
    assert "rtts" in wait_echo(w, "siteB", witness.address, 7443)  # B-witness untouched
    assert "rtts" in wait_echo(w, "siteA", witness.address, 7443)  # A-witness untouched
    ping = ["ip", "netns", "exec", a.netns, "ping", "-c1", "-W1", b.address]
    assert subprocess.run(ping, capture_output=True, timeout=10).returncode != 0

    w.cli("fault", "partition", "B-witness", "--kind", "reset")
    assert w.call("siteB", witness.address, 7443) == {"error": "ConnectionResetError"}
    w.cli("fault", "heal")
    assert "rtts" in wait_echo(w, "siteA", b.address, 7789)
    assert "rtts" in wait_echo(w, "siteB", witness.address, 7443)

    echo_b = w.procs[0]
    w.cli("fault", "kill-site", "B")
    assert echo_b.wait(10) == -9

    events = json.loads(w.cli("events", "--format", "json"))
    kinds = [(e["kind"], e["target"]) for e in events]
    assert kinds == [
        ("wan", "all"),
        ("wan", "all"),
        ("partition", "A-B"),
        ("partition", "B-witness"),
        ("heal", "all"),
        ("kill-site", "B"),
    ]
    assert events[-1]["data"]["killed"][0].startswith(f"{echo_b.pid} ")
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    table = w.cli("events")
    assert "kill-site" in table and "SIGKILL to 1 processes" in table
