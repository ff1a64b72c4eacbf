"""drorch: a disaster-recovery site failover orchestrator for two-site clusters."""

__version__ = "0.1.0"
