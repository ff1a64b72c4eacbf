"""Shipped fakes (clock, scripted runner, fake hypervisor, in-memory replicator) and the
contract tests every real driver must pass."""
