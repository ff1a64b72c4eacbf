"""Command runners: local (subprocess) and SSH (paramiko)."""
