"""The cluster model: frozen dataclasses plus the YAML loader and validator."""
