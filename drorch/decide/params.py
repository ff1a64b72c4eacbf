"""The typed parameters of each plan `Action`: what a step carries besides its reason.

A `Step` has `target`, `site` and `node`; everything else an executor needs (the quorum
epoch of a promotion, the takeover wait, where a domain's XML comes from, a VM's volumes,
the nodes of a hand-over) is in `Step.params`, checked against `ACTION_PARAMS` when the
step is made. A planner that forgets a required parameter, or passes one of the wrong type,
fails at once instead of producing a step an executor would have to guess at.

Values are `str`, `int`, `float`, `bool` or `tuple[str, ...]` only, so a step serialises
to JSON/YAML as is and binds to a runbook step type's declared params.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import cast

from drorch.decide.actions import Action

ParamValue = str | int | float | bool | tuple[str, ...]


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its type (`str`, `int`, `float`, `bool` or `tuple` of str), whether
    every step of the action has it, and what it means."""

    kind: type
    doc: str
    required: bool = True


def _p(kind: type, doc: str, required: bool = True) -> ParamSpec:
    return ParamSpec(kind, doc, required)


_DOMAIN = _p(str, "the libvirt domain name of the VM")
_AFTER = _p(tuple, "resources this one starts after (its dependencies), in start order")

ACTION_PARAMS: Mapping[Action, Mapping[str, ParamSpec]] = MappingProxyType(
    {
        Action.STOP_SERVICE: {"before": _p(tuple, "dependents stopped before this one")},
        Action.SHUTDOWN_VM: {
            "domain": _DOMAIN,
            "before": _p(tuple, "dependents stopped before this one"),
        },
        Action.WAIT_IN_SYNC: {
            "mode": _p(str, "the volume's replication mode: sync or async"),
            "source_site": _p(str, "the site the data comes from"),
            "behind_bytes": _p(int, "how far the target replica was behind when planned"),
        },
        Action.DEMOTE: {},
        Action.PROMOTE: {
            "epoch": _p(int, "the quorum epoch the promotion takes (fences older writers)"),
            "second_primary": _p(bool, "promoted beside a primary, for a live hand-over"),
            "disk": _p(str, "the replica's disk state when planned (UpToDate, Outdated, ...)"),
        },
        Action.ALLOW_TWO_PRIMARIES: {
            "vm": _p(str, "the VM whose live hand-over needs both sites open"),
            "nodes": _p(tuple, "the two nodes that may both be primary (source, target)"),
        },
        Action.MIGRATE_LIVE: {
            "domain": _DOMAIN,
            "from_site": _p(str, "the site the VM runs at now"),
            "max_downtime": _p(float, "the pause budget, seconds"),
            "volumes": _p(tuple, "the VM's replicated volumes, open at both sites"),
        },
        Action.FORBID_TWO_PRIMARIES: {
            "vm": _p(str, "the VM whose hand-over is over"),
            "nodes": _p(tuple, "the two nodes of the hand-over (source, target)"),
            "primary_site": _p(str, "the only site that may write afterwards"),
        },
        Action.RELOCATE_SERVICE: {
            "from_site": _p(str, "the site the service runs at now"),
            "from_node": _p(str, "the node the service runs on now"),
        },
        Action.DEFINE_VM: {
            "domain": _DOMAIN,
            "xml_source": _p(str, "where the domain XML comes from: file or saved"),
            "xml_path": _p(str, "the domain XML file (xml_source file)", required=False),
            "from_site": _p(str, "the site whose saved XML is used (xml_source saved)"),
        },
        Action.START_VM: {
            "domain": _DOMAIN,
            "volumes": _p(tuple, "the replicated volumes it boots from"),
            "after": _AFTER,
        },
        Action.START_SERVICE: {"after": _AFTER},
        Action.VERIFY_MONITOR: {
            "resource": _p(str, "the VM or service the monitor checks"),
            "monitor": _p(str, "the monitor's name"),
            "type": _p(str, "process, tcp, http, command or heartbeat"),
            "check": _p(str, "what the monitor probes"),
            "level": _p(int, "1 alive, 2 API sane, 3 heartbeat"),
            "timeout": _p(float, "seconds it has to pass"),
        },
        Action.CONFIRM_FENCED: {
            "confirmed": _p(bool, "fencing was confirmed when planned"),
            "how": _p(str, "how it was confirmed", required=False),
        },
        Action.WAIT_TAKEOVER: {
            "seconds": _p(float, "takeover_wait: lease_timeout + switch_delay"),
            "lease_timeout": _p(float, "the witness lease, seconds"),
            "switch_delay": _p(float, "the margin for the lost site's watchdog, seconds"),
        },
    }
)


def _fits(value: object, spec: ParamSpec) -> bool:
    if spec.kind is tuple:
        return isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    if spec.kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if spec.kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, spec.kind)


def check_params(action: Action, params: Mapping[str, object]) -> Mapping[str, ParamValue]:
    """`params` frozen, or TypeError naming what does not fit `ACTION_PARAMS[action]`.
    A float parameter given as an int is stored as a float."""
    spec = ACTION_PARAMS[action]
    problems = [f"unknown parameter {k!r}" for k in params if k not in spec]
    problems += [f"missing {k!r}" for k, s in spec.items() if s.required and k not in params]
    out: dict[str, ParamValue] = {}
    for key, value in params.items():
        if key not in spec:
            continue
        if not _fits(value, spec[key]):
            problems.append(f"{key!r} must be {spec[key].kind.__name__}, not {value!r}")
            continue
        # _fits checked the type; a float given as an int is stored as a float
        out[key] = float(cast(float, value)) if spec[key].kind is float else cast(ParamValue, value)
    if problems:
        raise TypeError(f"{action.value} step: {'; '.join(problems)}")
    return MappingProxyType(out)
