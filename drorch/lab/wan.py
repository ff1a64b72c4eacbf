"""WAN impairment for the lab, as data: the links, the delay/jitter/loss, the partitions.

The kernel here has no netem, so `drorch.lab.wan_proxy` forwards every inter-site TCP
link (replication, membership, witness) through a userspace proxy that applies these
settings. This module is the sans-I/O half: the settings, their JSON state file (the
proxy re-reads it whenever it changes, so `drorch lab wan` acts on a running proxy),
and `Schedule`, which decides when each forwarded chunk may be delivered.

Semantics, per direction of every connection:

* `delay` is ONE-WAY, applied in both directions (like netem on each site's WAN port):
  a request/answer exchange costs at least `2 * delay` more. `jitter` adds a uniform
  [-jitter, +jitter] per chunk; chunks are never reordered (TCP would not deliver them
  out of order either), so a late chunk holds back the ones behind it.
* `loss` is the probability that a chunk is "lost". TCP hides loss from applications
  by retransmitting, so by default (`loss_mode: stall`) a lost chunk is delivered one
  retransmission timeout (`stall`, 200 ms = Linux's TCP_RTO_MIN) late, with
  head-of-line blocking behind it. `loss_mode: reset` instead resets the connection
  (what an application sees when loss persists until a middlebox gives up).
* a partition of a link group (`A-B`, `A-witness`, `B-witness`) is `drop` (a black
  hole: nothing is forwarded either way, senders block once buffers fill, new
  connections are accepted but never answered; data queued during it flows after
  `heal`, as TCP's retransmissions would deliver it) or `reset` (every connection is
  reset at once and new ones are reset on accept, like a firewall REJECT).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from drorch.durable import write_text_atomic
from drorch.model.timing import FIBRE_KM_PER_S

LossMode = Literal["stall", "reset"]
PartitionKind = Literal["drop", "reset"]
LOSS_MODES: tuple[LossMode, ...] = ("stall", "reset")
PARTITION_KINDS: tuple[PartitionKind, ...] = ("drop", "reset")
#: Linux's minimum TCP retransmission timeout: what one lost segment costs at least.
TCP_RTO_MIN = 0.2


class WanError(ValueError):
    """Bad WAN settings or state file; the message says what is wrong."""


@dataclass(frozen=True)
class Impairment:
    delay: float = 0.0  # one-way seconds, each direction
    jitter: float = 0.0  # +/- seconds, uniform, per chunk
    loss: float = 0.0  # probability per chunk, 0..1
    loss_mode: LossMode = "stall"
    stall: float = TCP_RTO_MIN  # what one lost chunk costs in stall mode

    def __post_init__(self) -> None:
        if self.delay < 0 or self.jitter < 0 or self.stall < 0:
            raise WanError("delay, jitter and stall cannot be negative")
        if self.jitter > self.delay:
            raise WanError(
                f"jitter {self.jitter * 1000:g} ms exceeds delay {self.delay * 1000:g} ms"
                " (a chunk cannot arrive before it was sent)"
            )
        if not 0.0 <= self.loss <= 1.0:
            raise WanError(f"loss must be between 0% and 100%, got {self.loss * 100:g}%")
        if self.loss_mode not in LOSS_MODES:
            raise WanError(f"loss mode must be one of {', '.join(LOSS_MODES)}")

    @property
    def round_trip(self) -> float:
        """The least extra time of one request/answer exchange."""
        return 2 * (self.delay - self.jitter)

    def describe(self) -> str:
        if self == Impairment():
            return "no impairment"
        parts = [f"delay {self.delay * 1000:g} ms one-way"]
        if self.jitter:
            parts.append(f"jitter ±{self.jitter * 1000:g} ms")
        if self.loss:
            parts.append(f"loss {self.loss * 100:g}% ({self.loss_mode})")
        return ", ".join(parts)


@dataclass(frozen=True)
class WanLink:
    """One proxied TCP link: connections to `listen` are forwarded to `target`.
    `group` names the pair of places it joins (`A-B`, `A-witness`, `B-witness`): the
    unit of `partition`."""

    name: str
    group: str
    listen: tuple[str, int]
    target: tuple[str, int]


@dataclass(frozen=True)
class WanState:
    links: tuple[WanLink, ...] = ()
    impairment: Impairment = field(default_factory=Impairment)
    partitions: Mapping[str, PartitionKind] = field(default_factory=dict)

    @property
    def groups(self) -> list[str]:
        return sorted({link.group for link in self.links})

    def partition(self, group: str, kind: PartitionKind = "drop") -> WanState:
        self._known(group)
        if kind not in PARTITION_KINDS:
            raise WanError(f"partition kind must be one of {', '.join(PARTITION_KINDS)}")
        return replace(self, partitions={**self.partitions, group: kind})

    def heal(self, group: str | None = None) -> WanState:
        if group is None:
            return replace(self, partitions={})
        self._known(group)
        return replace(self, partitions={g: k for g, k in self.partitions.items() if g != group})

    def _known(self, group: str) -> None:
        if group not in self.groups:
            known = ", ".join(self.groups) or "none"
            raise WanError(f"no WAN link group {group!r} (groups: {known})")

    def to_json(self) -> str:
        data = {
            "links": [
                {**asdict(link), "listen": list(link.listen), "target": list(link.target)}
                for link in self.links
            ],
            "impairment": asdict(self.impairment),
            "partitions": dict(self.partitions),
        }
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "WAN state") -> WanState:
        try:
            data = json.loads(text)
            links = tuple(
                WanLink(
                    name=str(raw["name"]),
                    group=str(raw["group"]),
                    listen=(str(raw["listen"][0]), int(raw["listen"][1])),
                    target=(str(raw["target"][0]), int(raw["target"][1])),
                )
                for raw in data.get("links", [])
            )
            imp = Impairment(**data.get("impairment", {}))
            parts: dict[str, Any] = dict(data.get("partitions", {}))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise WanError(f"{where}: unreadable ({exc})") from None
        for group, kind in parts.items():
            if kind not in PARTITION_KINDS:
                raise WanError(f"{where}: partition of {group} is {kind!r}, not drop/reset")
        return cls(links, imp, parts)


class WanStateFile:
    """The JSON file the proxy watches. Written atomically, so the proxy never reads
    half a file. Each version is known by the SHA-256 of its bytes (its fingerprint):
    the proxy compares fingerprints rather than inode and mtime, which a quick second
    write within one timestamp tick (or a reused inode number) can leave unchanged, and
    it acknowledges each version it has put in effect in `applied_path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.applied_path = path.with_name(path.name + ".applied")

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> WanState:
        return self.read_versioned()[0]

    def read_versioned(self) -> tuple[WanState, str]:
        """The state and the fingerprint of the bytes it was parsed from."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            raise WanError(f"{self.path}: no WAN state (is the WAN proxy set up?)") from None
        return WanState.from_json(data.decode("utf-8", "replace"), str(self.path)), _digest(data)

    def write(self, state: WanState) -> str:
        """Replace the file with `state`; returns the new version's fingerprint."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = state.to_json()
        write_text_atomic(self.path, text, mode=0o644)
        return _digest(text.encode("utf-8"))

    def fingerprint(self) -> str | None:
        try:
            return _digest(self.path.read_bytes())
        except OSError:
            return None

    def mark_applied(self, fingerprint: str) -> None:
        """The proxy: this version is in effect (listeners up, settings used)."""
        write_text_atomic(self.applied_path, fingerprint + "\n", mode=0o644)

    def applied(self) -> str | None:
        try:
            return self.applied_path.read_text().strip() or None
        except OSError:
            return None


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Schedule:
    """When each chunk of one direction of one connection may be delivered (sans-I/O).

    `release(now)` is called as a chunk is read; it returns the time it may be written,
    or None when the chunk is lost and the connection must be reset. Release times never
    go backwards, so jitter never reorders the byte stream."""

    def __init__(self, impairment: Impairment, rng: random.Random) -> None:
        self.impairment = impairment
        self.rng = rng
        self._last = float("-inf")

    def release(self, now: float) -> float | None:
        imp = self.impairment
        when = now + imp.delay
        if imp.jitter:
            when += self.rng.uniform(-imp.jitter, imp.jitter)
        if imp.loss and self.rng.random() < imp.loss:
            if imp.loss_mode == "reset":
                return None
            when += imp.stall
        self._last = max(self._last, when)
        return self._last


# ------------------------------------------------------------------ parsing helpers
_PERCENT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$")


def parse_percent(value: str) -> float:
    """`1%`, `0.5%` or a bare `1` (percent) -> a fraction 0..1."""
    m = _PERCENT_RE.match(value)
    if not m:
        raise WanError(f"expected a percentage like 1% or 0.5%, got {value!r}")
    fraction = float(m.group(1)) / 100
    if fraction > 1:
        raise WanError(f"loss cannot exceed 100%, got {value!r}")
    return fraction


def equivalent_distance_km(one_way_delay: float) -> float:
    """The fibre distance whose propagation delay is `one_way_delay` (what a cluster
    file's `distance_km` should say for the validator to predict the same round trip)."""
    return one_way_delay * FIBRE_KM_PER_S
