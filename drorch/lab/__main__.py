"""`python -m drorch.lab ...` is `drorch lab ...` (see drorch/cli/lab_cmd.py)."""

from __future__ import annotations

from drorch.cli.lab_cmd import lab

if __name__ == "__main__":
    lab(prog_name="python -m drorch.lab")
