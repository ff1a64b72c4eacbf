"""drorch.lab"""
