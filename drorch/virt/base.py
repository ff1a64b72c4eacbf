"""The `Hypervisor` seam: VMs at one site (libvirt, simulated, or the test fake).

Every driver passes `drorch.testing.contracts` (the hypervisor contract).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from drorch.model.states import VMState as VMState  # re-exported; defined there
from drorch.model.types import MigrationPolicy


@dataclass(frozen=True)
class MigrationOptions(MigrationPolicy):
    """How to live-migrate: the cluster's `MigrationPolicy` (the config's `migration:`,
    one definition of each setting and its default) plus what one call decides. Times in
    seconds; bandwidth in MiB/s (0 = unlimited).

    Convergence (see `drorch.virt.convergence.ConvergencePolicy`): start at `max_downtime`;
    when the data remaining has not fallen for `stall_iterations` iterations, raise the
    allowed downtime in `downtime_steps` equal steps up to `downtime_ceiling` (only when
    `adaptive`), then turn on auto-converge (when `auto_converge`). When `deadline` is about
    to pass (within `switch_margin` plus the expected downtime), switch to post-copy if
    `allow_postcopy`, else abort and leave the VM running at the source.
    """

    adaptive: bool = True
    dest_xml: str | None = None
    dest_uri: str | None = None
    shared_storage: bool = True
    switch_margin: float = 1.0

    @classmethod
    def from_policy(cls, policy: MigrationPolicy, **overrides: Any) -> MigrationOptions:
        """The policy's settings (every field, no copy by hand) with `overrides`."""
        base = {f.name: getattr(policy, f.name) for f in fields(MigrationPolicy)}
        return cls(**{**base, **overrides})


@dataclass(frozen=True)
class MigrationProgress:
    """One progress sample (from libvirt's jobStats or the simulation)."""

    elapsed: float
    data_processed: int
    data_remaining: int
    data_total: int
    dirty_rate: int  # bytes/s
    iteration: int
    expected_downtime_ms: int
    max_downtime_ms: int
    auto_converge: bool = False
    postcopy: bool = False


@dataclass(frozen=True)
class MigrationResult:
    """What a finished (or aborted) migration did. `converged`: pre-copy finished with a
    stop-and-copy within the allowed downtime; `postcopy`: it finished through post-copy
    instead. Times in seconds, downtime in ms (None when unknown or aborted)."""

    converged: bool
    postcopy: bool
    total_seconds: float
    downtime_ms: int | None
    final_max_downtime_ms: int
    iterations: int
    data_transferred: int
    reason: str


@dataclass(frozen=True)
class ShutdownResult:
    graceful: bool  # False: the timeout ran out and the domain was destroyed
    seconds: float


class HypervisorError(Exception):
    """Base of hypervisor failures."""


class NoSuchVM(HypervisorError):
    """The named VM is not defined at this site."""


class VMRunningElsewhere(HypervisorError):
    """Refused: the VM runs (or is paused) at another site this driver can see."""


class MigrationFailed(HypervisorError):
    """The migration was aborted or failed; the VM still runs at the source (the driver
    checked). `result` describes what happened when known."""

    def __init__(self, message: str, result: MigrationResult | None = None) -> None:
        super().__init__(message)
        self.result = result


ProgressCallback = Callable[[MigrationProgress], None]


@dataclass(frozen=True)
class ColdStartResult:
    """A cold failover start: which sites were checked for a running copy first."""

    vm: str
    site: str
    checked_sites: tuple[str, ...]
    unreachable_sites: tuple[str, ...] = field(default=())
    reason: str = ""


def domain_name(xml: str) -> str:
    """The `<name>` of a domain XML document; HypervisorError if it has none."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise HypervisorError(f"domain XML does not parse: {exc}") from None
    name = root.findtext("name")
    if root.tag != "domain" or not name or not name.strip():
        raise HypervisorError("domain XML has no <domain><name>")
    return name.strip()


class Hypervisor(ABC):
    """The VMs of one site."""

    site: str

    @abstractmethod
    def list(self) -> list[str]:
        """Names of every VM defined at this site (running or not), sorted."""

    @abstractmethod
    def state(self, vm: str) -> VMState:
        """Current state; VMState.UNDEFINED (never an exception) for an unknown VM."""

    @abstractmethod
    def define(self, xml: str) -> str:
        """Define (or redefine) a persistent VM from domain XML; return its name.
        Redefining keeps the VM's state. HypervisorError (nothing defined) if the XML
        is invalid."""

    @abstractmethod
    def start(self, vm: str) -> None:
        """Start a defined VM. NoSuchVM if undefined; no-op if already running."""

    @abstractmethod
    def shutdown(self, vm: str, timeout: float) -> ShutdownResult:
        """Ask the guest to shut down; destroy it if it is still running after `timeout`.
        Reports which of the two happened. No-op (graceful=True) if not running."""

    @abstractmethod
    def destroy(self, vm: str) -> None:
        """Power off at once. No-op if not running; NoSuchVM if undefined."""

    def undefine(self, vm: str) -> None:
        """Remove a stopped VM's definition (the test-recovery drill's copies).
        NoSuchVM if undefined; HypervisorError if running or not supported."""
        raise HypervisorError(f"{type(self).__name__} cannot undefine {vm}")

    @abstractmethod
    def migrate_live(
        self,
        vm: str,
        dest: Hypervisor,
        options: MigrationOptions,
        progress: ProgressCallback | None = None,
    ) -> MigrationResult:
        """Live-migrate a running VM to `dest`, reporting each progress sample to
        `progress` and applying `drorch.virt.convergence.ConvergencePolicy`.

        On success the VM runs (and is defined) only at dest, and the result says how it
        finished (pre-copy converged, or post-copy) and the downtime. On failure
        MigrationFailed is raised (with `result` when a job ran) and the VM still runs at
        the source, defined once: a VM that is not running, a destination that already
        runs it, an abort at the deadline, a lost link. NoSuchVM for an unknown VM.
        Never blocks past options.deadline plus a short abort."""

    @abstractmethod
    def export_xml(self, vm: str) -> str:
        """The persistent domain XML, for defining the VM at the other site.
        NoSuchVM if undefined."""

    def cold_start(self, xml: str, elsewhere: Sequence[Hypervisor] = ()) -> ColdStartResult:
        """Cold failover: define the VM here from saved XML and start it.

        Refuses with VMRunningElsewhere (defining nothing) if any hypervisor in `elsewhere`
        reports the VM running or paused. A site that cannot be asked (HypervisorError,
        OSError) cannot be seen: it is listed in `unreachable_sites` and does not block,
        because a lost site is exactly when cold failover is used. Drivers that remap
        disk paths do so in `define`."""
        name = domain_name(xml)
        checked: list[str] = []
        unreachable: list[str] = []
        for other in elsewhere:
            try:
                other_state = other.state(name)
            except (HypervisorError, OSError):
                unreachable.append(other.site)
                continue
            checked.append(other.site)
            if other_state in (VMState.RUNNING, VMState.PAUSED):
                raise VMRunningElsewhere(
                    f"refusing to start {name} at site {self.site}: it is {other_state} at "
                    f"site {other.site}; stop it there first or fence that site"
                )
        self.define(xml)
        self.start(name)
        reason = f"started {name} at site {self.site} from saved XML"
        if checked:
            reason += f"; not running at {', '.join(checked)}"
        if unreachable:
            reason += f"; could not check {', '.join(unreachable)} (unreachable)"
        return ColdStartResult(name, self.site, tuple(checked), tuple(unreachable), reason)
