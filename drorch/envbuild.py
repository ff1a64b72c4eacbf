"""Build the `Environment` for a cluster: runners per node, hypervisors per site, replicators.

    env = build_environment(cluster, base_dir=config_path.parent)

`local` nodes get a LocalRunner, `user@host:port` nodes an SSHRunner (connected lazily,
on the first command). Hypervisors come from `drorch.virt.drivers` by
`hypervisor.driver`. With the `sim` driver the replicators are SimReplicators sharing
the sim state dir; otherwise each volume's driver (`drbd`, `pyrepl`) is opened per node.
Drivers are imported lazily, so `libvirt` is only needed when the cluster uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from drorch.clock import Clock, SystemClock
from drorch.environment import Environment
from drorch.model.types import Cluster, Node, Volume
from drorch.remote.base import CommandRunner
from drorch.remote.local import LocalRunner

if TYPE_CHECKING:
    from drorch.replication.base import Replicator


@dataclass(frozen=True)
class SshSettings:
    """How to reach `user@host:port` nodes. `key_filename=None` uses the agent and the
    default keys; `known_hosts=None` uses ~/.ssh/known_hosts."""

    key_filename: str | None = None
    known_hosts: str | None = None
    accept_new: bool = False
    connect_deadline: float = 30.0


@dataclass(frozen=True)
class BuildProblem:
    """A driver that could not be set up: its `kind` (runner, hypervisor, replicator),
    the `subject` it is for (node, site, VOLUME@NODE), and why."""

    kind: str
    subject: str
    message: str

    @property
    def what(self) -> str:
        """The driver, named for the operator (`hypervisor B`)."""
        return f"{self.kind} {self.subject}"

    def __str__(self) -> str:
        return f"{self.what}: {self.message}"


class EnvironmentBuildError(RuntimeError):
    """build_environment(strict=True) hit problems; `problems` lists each."""

    def __init__(self, problems: list[BuildProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def make_runner(node: Node, clock: Clock, ssh: SshSettings, cwd: Path) -> CommandRunner:
    if node.is_local:
        return LocalRunner(clock=clock, cwd=cwd)
    from drorch.remote.ssh import SSHRunner  # paramiko only when a node is remote

    return SSHRunner(
        node.address,
        key_filename=ssh.key_filename,
        known_hosts=ssh.known_hosts,
        accept_new=ssh.accept_new,
        connect_deadline=ssh.connect_deadline,
        clock=clock,
    )


def _primary_node(cluster: Cluster, volume: Volume) -> str | None:
    try:
        site = cluster.site(cluster.primary_site)
    except KeyError:
        return None
    for node in site.nodes:
        if node.name in volume.paths:
            return node.name
    return None


def open_volume_replicator(
    cluster: Cluster, volume: Volume, node: Node, env: Environment
) -> Replicator:
    """The replicator of `volume` on `node` as the cluster configures it: with the `sim`
    hypervisor a SimReplicator sharing the sim state dir (unless `hypervisor.replication:
    real`), else the volume's driver."""
    if cluster.hypervisor.simulates_replication:
        from drorch.replication.sim import SimReplicator, resolve_state_dir

        return SimReplicator(
            volume,
            node,
            env,
            state_dir=resolve_state_dir(env, cluster.hypervisor.state_dir),
            primary_node=_primary_node(cluster, volume),
            sites={n.name: s.name for s in cluster.sites for n in s.nodes},
        )
    from drorch.replication.drivers import open_replicator

    return open_replicator(volume, node, env)


def _add_replicators(cluster: Cluster, env: Environment, problems: list[BuildProblem]) -> None:
    for volume in cluster.volumes:
        for node_name in volume.paths:
            try:
                _, node = cluster.node(node_name)
                env.replicators[(volume.name, node_name)] = open_volume_replicator(
                    cluster, volume, node, env
                )
            except Exception as exc:  # any driver failure is reported, not fatal
                problems.append(BuildProblem("replicator", f"{volume.name}@{node_name}", str(exc)))


def build_environment_report(
    cluster: Cluster,
    base_dir: str | Path,
    clock: Clock | None = None,
    *,
    ssh: SshSettings | None = None,
) -> tuple[Environment, list[BuildProblem]]:
    """The environment, plus every driver that could not be set up (skipped)."""
    clock = clock or SystemClock()
    base = Path(base_dir).resolve()
    env = Environment(clock=clock, base_dir=base)
    settings = ssh or SshSettings()
    problems: list[BuildProblem] = []
    for site in cluster.sites:
        for node in site.nodes:
            try:
                env.runners[node.name] = make_runner(node, clock, settings, base)
            except ValueError as exc:
                problems.append(BuildProblem("runner", node.name, str(exc)))
    from drorch.virt.drivers import open_hypervisor

    for site in cluster.sites:
        try:
            env.hypervisors[site.name] = open_hypervisor(cluster, site, env)
        except Exception as exc:  # any driver failure is reported, not fatal
            problems.append(BuildProblem("hypervisor", site.name, f"{type(exc).__name__}: {exc}"))
    _add_replicators(cluster, env, problems)
    return env, problems


def build_environment(
    cluster: Cluster,
    base_dir: str | Path,
    clock: Clock | None = None,
    *,
    ssh: SshSettings | None = None,
) -> Environment:
    """The environment; raises EnvironmentBuildError if any runner or driver failed."""
    env, problems = build_environment_report(cluster, base_dir, clock, ssh=ssh)
    if problems:
        env.close()
        raise EnvironmentBuildError(problems)
    return env
