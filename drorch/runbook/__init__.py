"""Runbooks: YAML files of steps that the engine carries out through the `Environment`.

`drorch.runbook.steps` holds the step types (one family per module), the format,
validation and engine live beside it.
"""
