"""drorch.quorum"""
