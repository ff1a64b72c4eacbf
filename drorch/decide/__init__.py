"""drorch.decide"""
