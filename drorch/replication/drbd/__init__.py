"""drorch.replication.drbd"""
