"""drorch.monitor"""
