"""drorch.fencing"""
