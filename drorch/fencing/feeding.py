"""Bookkeeping of watchdog feeds: slack, late feeds, the warning sbd gives at 3/5.

The agent feeds only while healthy (its gate decides *whether* to feed); this records
*how* each feed went, for `agent status`, metrics and `watchdog test`. A feed is late
when more than `warn_fraction` of the timeout had passed since the previous one; the
fatal threshold is the timeout itself, and that is the device's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WARN_FRACTION = 0.6


@dataclass
class FeedLog:
    timeout: float
    warn_fraction: float = WARN_FRACTION
    feeds: int = 0
    late_feeds: int = 0
    min_slack: float | None = None
    last_slack: float | None = None
    last_feed_at: float | None = None
    slacks: list[float] = field(default_factory=list)
    max_kept: int = 1000

    def record(self, slack: float, at: float) -> str | None:
        """Record one feed that left `slack` seconds; returns a warning if it was late."""
        self.feeds += 1
        self.last_slack = slack
        self.last_feed_at = at
        self.min_slack = slack if self.min_slack is None else min(self.min_slack, slack)
        self.slacks.append(slack)
        if len(self.slacks) > self.max_kept:
            del self.slacks[: len(self.slacks) - self.max_kept]
        elapsed = self.timeout - slack
        if elapsed > self.warn_fraction * self.timeout:
            self.late_feeds += 1
            return (
                f"late watchdog feed: {elapsed:.2f}s of the {self.timeout:g}s timeout had"
                f" passed (warning past {self.warn_fraction * self.timeout:.2f}s);"
                f" {slack:.2f}s were left"
            )
        return None

    def median_slack(self) -> float | None:
        if not self.slacks:
            return None
        s = sorted(self.slacks)
        mid = len(s) // 2
        return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2

    def as_dict(self) -> dict[str, object]:
        return {
            "timeout": self.timeout,
            "feeds": self.feeds,
            "late_feeds": self.late_feeds,
            "min_slack": self.min_slack,
            "median_slack": self.median_slack(),
            "last_slack": self.last_slack,
            "last_feed_at": self.last_feed_at,
        }
