"""The options that mean something in one replication mode only (DRBD: on-congestion
needs protocol A), and which values a mode runs with after a live switch
(modeswitch.py)."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

from drorch.replication.pyrepl import freeze

if TYPE_CHECKING:
    from drorch.replication.pyrepl.engine import Engine
    from drorch.replication.pyrepl.engine_config import EngineConfig

MODES = ("sync", "async")
SYNC_OPTIONS = ("fencing", "freeze_timeout", "fence_peer_cmd", "unfence_peer_cmd")
ASYNC_OPTIONS = ("max_lag_bytes", "on_congestion")


def option_keys(mode: str) -> tuple[str, ...]:
    return SYNC_OPTIONS if mode == "sync" else ASYNC_OPTIONS


def _defaults(config: EngineConfig, mode: str) -> dict[str, Any]:
    spec = {f.name: f.default for f in fields(config)}
    return {k: spec[k] for k in option_keys(mode)}


def resolve_options(engine: Engine, mode: str, given: dict[str, Any]) -> dict[str, Any]:
    """The options `mode` runs with: those given, else the ones it last ran with (live),
    else those it was started with (when started in `mode`), else the defaults.
    ValueError for an option of the other mode or a bad value."""
    if mode not in MODES:
        raise ValueError(f"mode must be sync or async, not {mode!r}")
    keys = option_keys(mode)
    foreign = sorted(k for k, v in given.items() if v is not None and k not in keys)
    if foreign:
        names = ", ".join(k.replace("_bytes", "").replace("_", "-") for k in foreign)
        raise ValueError(f"{names}: not an option of {mode} mode")
    start = engine.start_config
    base = {k: getattr(start, k) for k in keys} if start.mode == mode else _defaults(start, mode)
    if engine.meta.mode == mode and engine.meta.mode_serial:
        base |= {k: v for k, v in engine.meta.mode_options.items() if k in keys}
    out = base | {k: v for k, v in given.items() if v is not None}
    problems = option_problems(mode, out)
    if problems:
        raise ValueError("; ".join(problems))
    return out


def option_problems(mode: str, opts: dict[str, Any]) -> list[str]:
    if mode == "async":
        problems = []
        if int(opts["max_lag_bytes"]) <= 0:
            problems.append("max-lag must be positive: an async primary needs a send queue")
        if opts["on_congestion"] not in ("block", "pull-ahead"):
            problems.append("on-congestion must be block or pull-ahead")
        return problems
    problems = []
    if opts["fencing"] not in freeze.POLICIES:
        problems.append(f"fencing must be one of {', '.join(freeze.POLICIES)}")
    if float(opts["freeze_timeout"]) <= 0:
        problems.append("freeze-timeout must be positive")
    if opts["fencing"] == "dont-care" and (opts["fence_peer_cmd"] or opts["unfence_peer_cmd"]):
        problems.append("fence-peer-cmd/unfence-peer-cmd need fencing resource-only")
    return problems
