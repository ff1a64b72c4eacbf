"""Hypervisor drivers, chosen by `hypervisor.driver` in the cluster config."""
