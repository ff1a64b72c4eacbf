"""Plans for moving the cluster between sites. Pure: a snapshot in, ordered steps out.

plan_migration(snapshot, "B")   # hurricane warning: both sites up, least downtime
plan_failover(snapshot, "B")    # site A is lost: fence-safe takeover at B
"""

from __future__ import annotations

from drorch.decide.failover import plan_failover
from drorch.decide.migration import plan_migration
from drorch.decide.steps import Action, Plan, Step

__all__ = ["Action", "Plan", "Step", "plan_failover", "plan_migration"]
