"""drorch.replication.pyrepl"""
