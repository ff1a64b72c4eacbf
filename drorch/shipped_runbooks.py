"""Where drorch's own runbooks are (site failover, the hurricane migration, failback, the
drills): inside the installed package, `drorch/runbooks/` (the wheel build copies the
checkout's top-level `runbooks/` there: setup.py), else the source checkout's
`runbooks/` beside the package (an editable install, or PYTHONPATH on a checkout).

Every place that looks for a shipped runbook asks here: `drorch runbook list|run`, the
`migrate`/`failover`/`failback` shortcuts, the drills and the agent's takeover runbook.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_runbooks_dir() -> Path | None:
    """The folder of the shipped runbooks, or None when neither layout has one."""
    packaged = resources.files("drorch") / "runbooks"
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / "runbooks"
    return checkout if checkout.is_dir() else None
