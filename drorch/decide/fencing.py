"""Is a lost site confirmed fenced, by the witness's word? (pure)

The witness grants a site the lease only when no other site holds a live one, and after
another site's lease ends it waits `switch_delay` more before granting anyone else. A
site that loses its lease stops renewing its watchdog, which fires within
`watchdog_timeout + margin <= lease_timeout` (checked at load). So when the witness
says site S holds the lease, every other site's lease ended at least `switch_delay` ago
and its watchdog has fired: it is fenced — provided it has a watchdog. With
`fencing.watchdog: none` nothing makes a site that lost its lease stop writing, and the
witness's grant proves nothing about it. A site that does not answer counts as lost;
one that answers counts as fenced only when it is seen to run nothing (no primary
replica, no running guest, every one of them observed: `idle`) — the state its
self-fence leaves when a partition cut it off from its peer and the witness but not
from the observer. A site that answers and runs resources while another holds the lease
is a `quorum-elsewhere` problem for a person, never a confirmed fence.
"""

from __future__ import annotations

from collections.abc import Mapping

from drorch.decide.snapshot import WitnessView
from drorch.model.types import Cluster, WatchdogKind


def fenced_by_witness(
    cluster: Cluster,
    views: Mapping[str, WitnessView],
    reachable: Mapping[str, bool],
    idle: Mapping[str, bool] | None = None,
) -> tuple[dict[str, bool], dict[str, str]]:
    """The sites the witness's grant to another site confirms fenced (unreachable, or
    answering and seen to run nothing), and why."""
    fenced: dict[str, bool] = {}
    reasons: dict[str, str] = {}
    if cluster.fencing.watchdog is WatchdogKind.NONE:
        return fenced, reasons
    holders = sorted(site for site, view in views.items() if view.granted)
    if len(holders) != 1:
        return fenced, reasons
    holder = holders[0]
    q = cluster.quorum
    for site in cluster.sites:
        if site.name == holder:
            continue
        answers = reachable.get(site.name, True)
        if answers and not (idle or {}).get(site.name):
            continue
        fenced[site.name] = True
        reasons[site.name] = (
            f"the witness granted {holder} the lease (epoch {views[holder].epoch}), which it"
            f" does only switch_delay {q.switch_delay:g}s after {site.name}'s lease ended; its"
            f" {cluster.fencing.watchdog.value} watchdog ({cluster.fencing.watchdog_timeout:g}s)"
            " has fired"
        )
        if answers:
            reasons[site.name] += (
                f", and {site.name} answers and runs nothing (no primary replica, no running"
                " guest): it has stopped writing"
            )
    return fenced, reasons
