"""Step types for engine tests: a toy family that records what it did into a shared
ledger (a JSON file, so a killed subprocess's effects survive), plus the real registry."""

from __future__ import annotations
