"""`PyreplReplicator`: the `Replicator` seam for config-driven pyrepl volumes.

Each (volume, node) pair runs one `drorch repl serve` daemon, the same engine as the
low-level CLI. The driver talks to it over its control socket: directly when the node
is local, or through the node's CommandRunner (`drorch repl ... --format json`) when it
is reached over SSH. `up()` starts the daemon when none answers.

Layout under `<config dir>/.drorch-state/pyrepl/`: `<volume>@<node>.ctl` (control
socket), `.meta` (metadata sidecar), `.log` (daemon log). Replication addresses: the
node's `replication_address` at `port` when set; else a local node listens on
127.0.0.1:`port + i` (i = the node's index in `paths`, so two local replicas do not
collide) and a remote node on its SSH host at `port`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drorch.replication.base import (
    ConnState,
    DiskState,
    ReplicationError,
    ReplicationStatus,
    Replicator,
    Role,
    VerifyResult,
)
from drorch.replication.pyrepl.control import ControlClient, ControlUnreachable, raise_error
from drorch.wait import wait_until

if TYPE_CHECKING:
    from drorch.environment import Environment
    from drorch.model.types import Node, Volume

STATE_SUBDIR = Path(".drorch-state") / "pyrepl"
UP_WAIT = 15.0


def _host_of(node: Node) -> str:
    target = node.address.rpartition("@")[2]
    return target.rsplit(":", 1)[0] if target.count(":") == 1 else target


def status_from_dict(data: dict[str, Any]) -> ReplicationStatus:
    return ReplicationStatus(
        name=str(data["name"]),
        role=Role(data["role"]),
        disk=DiskState(data["disk"]),
        connection=ConnState(data["connection"]),
        mode=str(data["mode"]),
        peer_disk=DiskState(data.get("peer_disk", DiskState.UNKNOWN.value)),
        peer_role=Role(data.get("peer_role", Role.UNKNOWN.value)),
        out_of_sync_bytes=int(data.get("out_of_sync_bytes", 0)),
        lag_bytes=int(data.get("lag_bytes", 0)),
        percent_in_sync=float(data.get("percent_in_sync", 100.0)),
        resync_eta_seconds=data.get("resync_eta_seconds"),
        epoch=int(data.get("epoch", 0)),
        generation=dict(data.get("generation") or {}),
        nbd=data.get("nbd"),
        extra=dict(data.get("extra") or {})
        | {k: data[k] for k in ("listen", "peer", "control", "pid") if k in data},
    )


class PyreplReplicator(Replicator):
    def __init__(
        self,
        volume: Volume,
        node: Node,
        env: Environment,
        *,
        control: Path | None = None,
        peer_address: str | None = None,
    ) -> None:
        if node.name not in volume.paths:
            raise ReplicationError(f"volume {volume.name} has no replica on node {node.name}")
        if len(volume.paths) != 2:
            raise ReplicationError(f"volume {volume.name} needs exactly two replicas")
        self.name = volume.name
        self.volume = volume
        self.node = node
        self.env = env
        self.state_dir = env.base_dir / STATE_SUBDIR
        self.control = control or self.state_dir / f"{volume.name}@{node.name}.ctl"
        # the peer's replication host, when the caller knows it (the Node of the other
        # replica is not passed to drivers); otherwise the peer's node name is dialled
        self.peer_address = peer_address
        self._client = ControlClient(self.control)

    # ------------------------------------------------------------------ transport
    @property
    def _remote_node(self) -> bool:
        return not self.node.is_local and self.node.name in self.env.runners

    def _call(self, op: str, **args: Any) -> Any:
        if not self._remote_node:
            return self._client.call(op, **args)
        return self._remote(op, args)

    def _remote(self, op: str, args: dict[str, Any]) -> Any:
        command = {"shutdown": "stop"}.get(op, op)
        argv = ["drorch", "repl", command, "--control", str(self.control), "--format", "json"]
        if op == "promote":
            if args.get("epoch") is not None:
                argv += ["--epoch", str(args["epoch"])]
            if args.get("force"):
                argv += ["--force", "--accept-data-loss"]
        if op in ("connect", "resolve"):
            argv.append("--no-wait")
        if op == "resolve":
            argv.append("--discard-local")
        result = self.env.runner(self.node.name).run(argv, timeout=120.0)
        try:
            data = json.loads(result.stdout) if result.stdout.strip() else None
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            raise_error(data["error"])
        if result.returncode != 0 and data is None:
            kind = {3: "UnsafeOperation", 4: "SplitBrain", 5: "StaleEpoch"}
            raise_error(
                {
                    "type": kind.get(result.returncode, "ReplicationError"),
                    "message": result.stderr.strip() or f"exit {result.returncode}",
                }
            )
        return data

    # ------------------------------------------------------------------ seam
    def status(self) -> ReplicationStatus:
        return status_from_dict(self._call("status"))

    def _serve_argv(self) -> list[str]:
        names = list(self.volume.paths)
        index = names.index(self.node.name)
        peer_node = names[1 - index]
        if self.node.replication_address:
            listen = f"{self.node.replication_address}:{self.volume.port}"
            peer = f"{self.peer_address or peer_node}:{self.volume.port}"
        elif self.node.is_local:
            listen = f"127.0.0.1:{self.volume.port + index}"
            peer = f"127.0.0.1:{self.volume.port + 1 - index}"
        else:
            listen = f"{_host_of(self.node)}:{self.volume.port}"
            peer = f"{self.peer_address or peer_node}:{self.volume.port}"
        opts = self.volume.pyrepl
        argv = [
            sys.executable,
            "-m",
            "drorch",
            "repl",
            "serve",
            "--name",
            self.volume.name,
            "--backing",
            self.volume.paths[self.node.name],
            "--size",
            str(self.volume.size),
            "--role",
            "secondary",
            "--mode",
            self.volume.mode.value,
            "--listen",
            listen,
            "--peer",
            peer,
            "--control",
            str(self.control),
            "--meta",
            str(self.state_dir / f"{self.volume.name}@{self.node.name}.meta"),
            "--region-size",
            str(opts.region_size),
            "--max-lag",
            str(opts.max_lag_bytes),
            "--on-congestion",
            opts.on_congestion,
        ]
        if opts.nbd_port is not None:
            argv += ["--nbd", f"{listen.rpartition(':')[0]}:{opts.nbd_port + index}"]
        return argv

    def up(self) -> None:
        try:
            self._call("status")
            return
        except ControlUnreachable:
            pass
        log_path = self.state_dir / f"{self.volume.name}@{self.node.name}.log"
        # detach: sh backgrounds a setsid'd daemon and exits at once
        script = 'mkdir -p "$STATE" && cd "$BASE" && setsid "$@" </dev/null >>"$LOG" 2>&1 &'
        argv = self._serve_argv()
        if self._remote_node:
            argv[:3] = ["drorch"]  # the node's own installation, not this interpreter
            env_words = [f"STATE={self.state_dir}", f"BASE={self.env.base_dir}", f"LOG={log_path}"]
            self.env.runner(self.node.name).run(
                ["env", *env_words, "sh", "-c", script, "sh", *argv], timeout=30.0, check=True
            )
        else:
            subprocess.run(
                ["sh", "-c", script, "sh", *argv],
                env={
                    **os.environ,
                    "STATE": str(self.state_dir),
                    "BASE": str(self.env.base_dir),
                    "LOG": str(log_path),
                },
                check=True,
                timeout=30,
            )

        def answers() -> bool:
            try:
                self._call("status")
            except ControlUnreachable:
                return False
            return True

        clock = self.env.clock
        if wait_until(clock, answers, clock.monotonic() + UP_WAIT, interval=0.1):
            return
        raise ReplicationError(f"pyrepl daemon for {self.name} did not start; see {log_path}")

    def down(self) -> None:
        try:
            st = self.status()
        except ControlUnreachable:
            return
        if st.role == Role.PRIMARY:
            raise ReplicationError(f"{self.name} is primary on {self.node.name}; demote first")
        self._call("shutdown")

    def promote(
        self, epoch: int | None = None, *, force: bool = False, accept_data_loss: bool = False
    ) -> None:
        self._call("promote", epoch=epoch, force=force, accept_data_loss=accept_data_loss)

    def demote(self) -> None:
        self._call("demote")

    def connect(self) -> None:
        self._call("connect")

    def disconnect(self) -> None:
        self._call("disconnect")

    def verify(self) -> VerifyResult:
        data = self._call("verify")
        return VerifyResult(
            regions_checked=int(data["regions_checked"]),
            out_of_sync=tuple(int(o) for o in data["out_of_sync"]),
            region_size=int(data["region_size"]),
        )

    def resolve_discard_local(self) -> None:
        self._call("resolve", discard_local=True)
