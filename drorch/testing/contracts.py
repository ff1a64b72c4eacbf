"""Contract tests every real driver must pass, re-exported from one place.

Use them by subclassing in a test module and providing the driver fixture, e.g.
`class TestSim(HypervisorContract): ...`. Each contract lives in its own module.
"""

from drorch.testing.contract_dual import DualPrimaryContract
from drorch.testing.contract_hypervisor import HypervisorContract
from drorch.testing.contract_replicator import ReplicatorContract

__all__ = ["DualPrimaryContract", "HypervisorContract", "ReplicatorContract"]
