"""What a runbook run ends with: its summary, and which failures are refusals (a step
that refused as unsafe: the run exits 3, like every other refusal)."""

from __future__ import annotations

from dataclasses import dataclass

REFUSALS = (
    "plan-blocked", "data-loss-not-acknowledged", "unknown-site",
    # a step that refused as unsafe (the run exits 3, like every other refusal)
    "no-quorum", "quorum-held-elsewhere", "not-fenced", "lost-site-answers",
    "promote-refused", "stale-epoch",
    "split-brain", "vm-refused", "vm-running-twice", "volume-in-use",
)  # fmt: skip


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    status: str  # succeeded failed rolled-back rollback-failed declined dry-run dry-run-failed
    message: str
    failed_code: str = ""

    @property
    def refused(self) -> bool:
        return self.failed_code in REFUSALS
