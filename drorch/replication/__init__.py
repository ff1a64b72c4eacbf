"""Block replication drivers, chosen by a volume's `driver` key (see drivers.py)."""
