"""What must hold before a VM is cold-started at a site (`vm failover-start`) or
live-migrated to one (`vm migrate`): the same checks for the real run and its dry run,
as coded refusals; `--force` with `--accept-data-loss` overrides only the forceable ones."""

from __future__ import annotations

from dataclasses import dataclass

from drorch.environment import Environment
from drorch.model.types import VM, Cluster
from drorch.virt.base import VMState

ACTIVE = (VMState.RUNNING, VMState.PAUSED)


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str
    forceable: bool

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "forceable": self.forceable}


def failover_refusals(
    cluster: Cluster, env: Environment, vm: VM, to: str, states: dict[str, VMState | str]
) -> list[Refusal]:
    out: list[Refusal] = []
    for site, state in states.items():
        if site == to:
            continue
        if state in ACTIVE:
            out.append(
                Refusal(
                    "vm-running-elsewhere",
                    f"{vm.name} is {state} at site {site}: a second copy would corrupt its"
                    f" disks; stop it there first",
                    False,
                )
            )
        elif not isinstance(state, VMState):
            out.append(
                Refusal(
                    "site-unconfirmed",
                    f"cannot confirm {vm.name} is stopped at site {site} ({state}); only if that"
                    " site is surely down or fenced, repeat with --force --accept-data-loss",
                    True,
                )
            )
    advice = f"promote it first (`drorch repl promote` or `drorch failover --to {to}`)"
    out += volume_refusals(cluster, env, vm, to, f"{vm.name} would boot from", advice)
    return out


def migrate_refusals(cluster: Cluster, env: Environment, vm: VM, to: str) -> list[Refusal]:
    """A live migration hands the running guest its disks at `to`: each volume must be
    primary there already, beside the source's primary (a dual-primary hand-over that
    `drorch migrate` opens). Onto a secondary the guest would resume on a disk that
    site may not write: refused, not forceable."""
    advice = (
        f"open a hand-over first: `drorch migrate --to {to}` moves the site (each VM with"
        f" its volumes); by hand, `drorch repl allow-two-primaries` at the source, then"
        f" `drorch repl promote` at {to}"
    )
    return volume_refusals(cluster, env, vm, to, f"{vm.name} would resume on", advice)


def volume_refusals(
    cluster: Cluster, env: Environment, vm: VM, to: str, what: str, advice: str
) -> list[Refusal]:
    """Each of `vm`'s volumes that is not primary at `to` (not forceable), or that no
    one could ask there (forceable)."""
    out: list[Refusal] = []
    nodes = {n.name for n in cluster.site(to).nodes}
    for vol_name in vm.volumes:
        vol = cluster.volume(vol_name)
        node = next((n for n in vol.paths if n in nodes), None)
        rep = env.replicators.get((vol_name, node)) if node else None
        if rep is None:
            out.append(
                Refusal(
                    "volume-unobserved",
                    f"volume {vol_name} at {to} cannot be asked (no replicator): is it primary?",
                    True,
                )
            )
            continue
        try:
            role = rep.status().role.value
        except Exception as exc:  # an unanswering driver is a refusal, never a crash
            out.append(Refusal("volume-unobserved", f"volume {vol_name} at {to}: {exc}", True))
            continue
        if role != "primary":
            out.append(
                Refusal(
                    "volume-not-primary",
                    f"volume {vol_name} is {role} at {to}: {what} a disk that is not this"
                    f" site's to write; {advice}",
                    False,
                )
            )
    return out
