"""The `Hypervisor` seam: VMs at one site (libvirt, simulated, or the test fake).

Every driver passes `drorch.testing.contracts` (the hypervisor contract).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class VMState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    SHUTOFF = "shutoff"
    CRASHED = "crashed"
    UNDEFINED = "undefined"


@dataclass(frozen=True)
class MigrationOptions:
    """How to live-migrate. Times in seconds; bandwidth in MiB/s (0 = unlimited)."""

    max_downtime: float = 0.3
    downtime_ceiling: float = 2.0
    downtime_steps: int = 4
    stall_iterations: int = 3
    auto_converge: bool = True
    adaptive: bool = True
    allow_postcopy: bool = False
    bandwidth_mibps: int = 0
    deadline: float = 600.0
    dest_xml: str | None = None
    dest_uri: str | None = None
    shared_storage: bool = True


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


class MigrationFailed(HypervisorError):
    """The migration was aborted or failed; the VM still runs at the source (the driver
    checked). `result` describes what happened when known."""

    def __init__(self, message: str, result: MigrationResult | None = None) -> None:
        super().__init__(message)
        self.result = result


ProgressCallback = Callable[[MigrationProgress], None]


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
        """Define (or redefine) a persistent VM from domain XML; return its name."""

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

    @abstractmethod
    def migrate_live(
        self,
        vm: str,
        dest: Hypervisor,
        options: MigrationOptions,
        progress: ProgressCallback | None = None,
    ) -> MigrationResult:
        """Live-migrate a running VM to `dest`. On success the VM runs (and is defined)
        only at dest. On failure MigrationFailed is raised and the VM still runs at the
        source, defined once. Never blocks past options.deadline plus a short abort."""

    @abstractmethod
    def export_xml(self, vm: str) -> str:
        """The persistent domain XML, for defining the VM at the other site."""
