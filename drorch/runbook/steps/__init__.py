"""Runbook step types, one family per module (like Ansible modules).

Each module registers its step types with `drorch.runbook.steps.base.register`;
`load_step_types()` imports every module of this package and returns the registry.
"""

from drorch.runbook.steps.base import STEP_TYPES, load_step_types

__all__ = ["STEP_TYPES", "load_step_types"]
