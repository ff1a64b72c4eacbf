"""A torture run that does not recover says why: each agent's decisions, read from its
control socket (a real unix socket here, answering as the agent does)."""

from __future__ import annotations

import json
import socket
import tempfile
import threading
from pathlib import Path

from drorch.lab.cluster_full import NODES, LabFiles
from drorch.lab.layout import LabLayout
from drorch.lab.torture_diagnose import agent_decisions

STATUS = {
    "quorum": {"held": True, "reason": "majority: 2 of 2 nodes are members"},
    "start": {"action": "none", "reason": "the cluster runs (or may run) somewhere"},
    "takeover": {"action": "none", "reason": "site siteA is a member: nothing to take over"},
    "replicas": {"vm1-disk": {"role": "secondary", "disk": "UpToDate",
                              "connection": "StandAlone", "action": "blocked",
                              "reason": "split brain"}},
}  # fmt: skip


def _serve(path: Path, answer: dict[str, object]) -> threading.Thread:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(str(path))
        srv.listen(1)
    except OSError:
        srv.close()
        raise

    def one() -> None:
        with srv:
            conn, _ = srv.accept()
            with conn:
                assert json.loads(conn.recv(65536)) == {"op": "status"}
                conn.sendall(json.dumps(answer).encode() + b"\n")

    t = threading.Thread(target=one, daemon=True)
    t.start()
    return t


def test_each_agents_decisions_or_why_it_cannot_say() -> None:
    # a short root: a unix socket path holds 107 bytes (pytest's tmp_path can be longer)
    with tempfile.TemporaryDirectory(prefix="td", dir="/tmp") as root:
        files = LabFiles(LabLayout(name="t", prefix="x", subnet="10.9.8", root=Path(root)))
        files.drorch_state.mkdir(parents=True)
        served = _serve(files.drorch_state / f"agent-lab-t-{NODES['siteA']}.sock", STATUS)
        lines = agent_decisions(files, ["siteA", "siteB"])
        served.join(5)
    assert lines == [
        "siteA's agent: quorum True (majority: 2 of 2 nodes are members)",
        "siteA's agent: start none: the cluster runs (or may run) somewhere",
        "siteA's agent: takeover none: site siteA is a member: nothing to take over",
        "siteA's agent: vm1-disk secondary/UpToDate/StandAlone: blocked: split brain",
        "siteB's agent: no control socket",
    ]
