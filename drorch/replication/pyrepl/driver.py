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
import shlex
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
from drorch.replication.pyrepl.control_path import short_control_path
from drorch.wait import wait_until

if TYPE_CHECKING:
    from drorch.environment import Environment
    from drorch.model.types import Node, Volume

STATE_SUBDIR = Path(".drorch-state") / "pyrepl"
UP_WAIT = 15.0
SET_MODE_WAIT = 600.0  # an async -> sync drain: the backlog must reach the peer
_FLAGS = {
    "max_lag_bytes": "--max-lag",
    "on_congestion": "--on-congestion",
    "fencing": "--fencing",
    "fence_peer_cmd": "--fence-peer-cmd",
    "unfence_peer_cmd": "--unfence-peer-cmd",
}


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


# the `drorch repl` commands that ask a person first (drorch.cli.flags)
ASKS = frozenset(
    {
        "promote",
        "demote",
        "resolve",
        "disconnect",
        "shutdown",
        "outdate_peer",
        "allow_two_primaries",
        "set_mode",
    }
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
        if control is None and not self._remote_node:  # too long for sun_path: a stand-in
            self.control = short_control_path(self.control)
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
        command = {"shutdown": "stop"}.get(op, op).replace("_", "-")
        argv = ["drorch", "repl", command, "--control", str(self.control), "--format", "json"]
        if op in ASKS:
            argv.append("--yes")  # the caller decided; nobody is there to ask
        if op == "promote":
            if args.get("epoch") is not None:
                argv += ["--epoch", str(args["epoch"])]
            if args.get("force"):
                argv += ["--force", "--accept-data-loss"]
        if op in ("connect", "resolve"):
            argv.append("--no-wait")
        if op == "resolve":
            argv.append("--discard-local")
        if op in ("pit_take", "pit_drop"):
            argv += ["--label", str(args["label"])]
            if args.get("store"):
                argv += ["--store", str(args["store"])]
        if op == "set_mode":
            argv[3:3] = [str(args["mode"])]
            argv.append("--no-wait")  # the driver follows the drain itself
            for key, flag in _FLAGS.items():
                if args.get(key) is not None:
                    argv += [flag, str(args[key])]
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
        ]
        if opts.nbd_port is not None:
            argv += ["--nbd", f"{listen.rpartition(':')[0]}:{opts.nbd_port + index}"]
        # only the options of the volume's mode: `repl serve` refuses the others
        for key, value in self._mode_options(self.volume.mode.value).items():
            argv += [_FLAGS[key], str(value)]
        return argv

    def _mode_options(self, mode: str) -> dict[str, Any]:
        """The engine options of `mode` for this replica. async: the send queue. sync:
        `fencing:` of the volume (resource-only, the sync default, for a volume
        configured async and switched live); with resource-only and a known cluster
        file, the fence-peer hook asks the witness (`drorch repl fence-peer`) and the
        unfence hook clears its record once the peer is UpToDate again."""
        opts = self.volume.pyrepl
        if mode == "async":
            return {"max_lag_bytes": opts.max_lag_bytes, "on_congestion": opts.on_congestion}
        configured_sync = self.volume.mode.value == "sync"
        fencing = self.volume.fencing if configured_sync else "resource-only"
        out: dict[str, Any] = {"fencing": fencing}
        config = self.env.config_file
        if fencing != "resource-only" or config is None:
            return out
        drorch = "drorch" if self._remote_node else f"{shlex.quote(sys.executable)} -m drorch"
        where = f"-c {shlex.quote(str(config))} --volume {self.volume.name} --node {self.node.name}"
        out["fence_peer_cmd"] = f"{drorch} repl fence-peer {where}"
        out["unfence_peer_cmd"] = f"{drorch} repl unfence-peer {where}"
        return out

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
        why = "" if self._remote_node else _last_line(log_path)
        raise ReplicationError(
            f"pyrepl daemon for {self.name} did not start{': ' + why if why else ''}; "
            f"see {log_path}"
        )

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

    # ------------------------------------------------------------------ capabilities
    # drorch.replication.capabilities.DualPrimary (pyrepl/dual.py: sync only, in sync)
    def two_primaries_allowed(self) -> bool:
        data = self.status().extra.get("two_primaries")
        return isinstance(data, dict) and data.get("allowed") is True

    def allow_two_primaries(self) -> None:
        self._call("allow_two_primaries")

    def forbid_two_primaries(self) -> None:
        self._call("forbid_two_primaries")

    # drorch.replication.capabilities.PointInTime (pyrepl/pointintime.py)
    def take_point_in_time(self, label: str, store: str) -> str:
        data = self._call("pit_take", label=label, store=store)
        if not isinstance(data, dict) or not data.get("uri"):
            raise ReplicationError(f"{self.name}@{self.node.name}: no NBD export to view")
        return str(data["uri"])

    def drop_point_in_time(self, label: str) -> bool:
        data = self._call("pit_drop", label=label)
        return isinstance(data, dict) and str(data.get("message", "")).startswith("dropped")

    # drorch.replication.capabilities.ModeSwitch (pyrepl/modeswitch.py)
    def set_mode(self, mode: str, *, wait: bool = True) -> None:
        """Switch this replica; on a primary, async -> sync returns once drained (every
        later write acknowledged sync), or raises ReplicationError after SET_MODE_WAIT
        (the switch goes on); with wait=False at once (status() shows the drain:
        `extra.mode_switch`, lag_bytes, out_of_sync_bytes). A secondary follows its
        primary over the link; asking it directly gives it this node's fencing options
        for the day it is promoted."""
        if mode not in ("sync", "async"):
            raise ValueError(f"mode must be sync or async, not {mode!r}")
        reply = self._call("set_mode", mode=mode, **self._mode_options(mode))
        if not wait:
            return

        def switched() -> bool:
            st = self.status()
            return st.mode == mode and not st.extra.get("mode_switch")

        clock = self.env.clock
        if wait_until(clock, switched, clock.monotonic() + SET_MODE_WAIT, interval=0.2):
            done = self.status().extra.get("mode_last_switch") or {}
            drained = isinstance(reply, dict) and reply.get("mode_switch")
            if drained and done.get("confirmed") is False:
                raise ReplicationError(
                    f"{self.name}@{self.node.name}: sync from now on, but not drained: "
                    f"{done.get('finished')}"
                )
            return
        sw = self.status().extra.get("mode_switch") or {}
        raise ReplicationError(
            f"{self.name}@{self.node.name}: still draining to {mode} after "
            f"{SET_MODE_WAIT:g} s, waiting for {sw.get('waiting_for')}"
        )


def _last_line(log: Path) -> str:
    """The last non-empty line of a daemon's log (its own error message), or ""."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1].removeprefix("drorch: ").removeprefix("error: ")[:300] if lines else ""
