"""Why a torture run did not recover: each agent's own decisions, read from its control
socket before the lab is rebuilt (the rebuild truncates the logs, and an agent logs a
decision that stays `none` only once)."""

from __future__ import annotations

from collections.abc import Sequence

from drorch.lab.cluster_full import NODES, LabFiles


def agent_decisions(files: LabFiles, sites: Sequence[str]) -> list[str]:
    """One line per fact: quorum, the start and takeover decisions, each replica's row."""
    from drorch.agent.control import ask

    out = []
    for site in sites:
        socks = sorted(files.drorch_state.glob(f"agent-*-{NODES[site]}.sock"))
        try:
            st = ask(socks[0], {"op": "status"}, timeout=3.0) if socks else None
        except (OSError, ValueError) as exc:
            out.append(f"{site}'s agent: does not answer: {exc}")
            continue
        if st is None:
            out.append(f"{site}'s agent: no control socket")
            continue
        quorum = st.get("quorum") or {}
        out.append(f"{site}'s agent: quorum {quorum.get('held')} ({quorum.get('reason')})")
        for key in ("start", "takeover"):
            d = st.get(key) or {}
            out.append(f"{site}'s agent: {key} {d.get('action')}: {d.get('reason')}")
        for vol, row in sorted((st.get("replicas") or {}).items()):
            out.append(
                f"{site}'s agent: {vol} {row.get('role')}/{row.get('disk')}/"
                f"{row.get('connection')}: {row.get('action')}: {row.get('reason')}"
            )
    return out
