"""Steps shared by migration and failover: bring resources up at the target, verify them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from drorch.decide.order import start_order
from drorch.decide.snapshot import Snapshot
from drorch.decide.steps import Action, Step
from drorch.model.states import VMState
from drorch.model.types import VM, Cluster, Service


def service_node(cluster: Cluster, service: Service, site: str) -> str:
    """Where `service` runs at `site`: its placement there, else the site's first node."""
    return service.placement.get(site) or cluster.site(site).nodes[0].name


def _after(res: VM | Service) -> str:
    if not res.depends_on:
        return ""
    return f" after {', '.join(res.depends_on)} (its dependencies)"


def define_step(vm: VM, snapshot: Snapshot, from_site: str, to_site: str) -> Step | None:
    if snapshot.vm_state(vm.domain, to_site) != VMState.UNDEFINED:
        return None
    saved = snapshot.saved_xml_for(vm.name, to_site)
    params: dict[str, object] = {"domain": vm.domain, "from_site": from_site}
    if saved is not None:  # saved for this site, mapped for it (disks, networks, URIs)
        source = f"the XML saved for {to_site} from {saved.from_site}'s definition ({saved.path})"
        params |= {"xml_source": "saved", "xml_path": saved.path, "from_site": saved.from_site}
    elif vm.xml:
        source = f"its domain XML {vm.xml} (mapped for {to_site})"
        params |= {"xml_source": "file", "xml_path": str(vm.xml)}
    else:
        source = f"the XML saved from {from_site}"
        params["xml_source"] = "saved"
    return Step(
        Action.DEFINE_VM,
        vm.name,
        f"{vm.name} is not defined at {to_site}: define it from {source}",
        site=to_site,
        params=params,
    )


def start_vm_steps(
    snapshot: Snapshot,
    names: Iterable[str],
    from_site: str,
    to_site: str,
    why: str,
    why_by_name: Mapping[str, str] | None = None,
) -> list[Step]:
    """Define (if needed) and start each VM at `to_site`, dependencies first. `why` is a
    template with `{name}`; `why_by_name` overrides it for particular VMs."""
    c = snapshot.cluster
    steps: list[Step] = []
    for res in start_order(c, names):
        if not isinstance(res, VM):
            continue
        if snapshot.vm_state(res.domain, to_site) == VMState.RUNNING:
            continue
        define = define_step(res, snapshot, from_site, to_site)
        if define:
            steps.append(define)
        disks = f" from its replicated disks ({', '.join(res.volumes)})" if res.volumes else ""
        steps.append(
            Step(
                Action.START_VM,
                res.name,
                f"{(why_by_name or {}).get(res.name, why.format(name=res.name))}:"
                f" start it at {to_site}{disks}{_after(res)}",
                site=to_site,
                params={
                    "domain": res.domain,
                    "volumes": tuple(res.volumes),
                    "after": tuple(res.depends_on),
                },
            )
        )
    return steps


def start_service_steps(snapshot: Snapshot, names: Iterable[str], to_site: str) -> list[Step]:
    c = snapshot.cluster
    steps: list[Step] = []
    for res in start_order(c, names):
        if not isinstance(res, Service):
            continue
        node = service_node(c, res, to_site)
        steps.append(
            Step(
                Action.START_SERVICE,
                res.name,
                f"start {res.name} on {node}{_after(res) or ' (it depends on nothing)'}",
                site=to_site,
                node=node,
                params={"after": tuple(res.depends_on)},
            )
        )
    return steps


def verify_steps(cluster: Cluster, to_site: str) -> list[Step]:
    steps: list[Step] = []
    for res in start_order(cluster):
        for m in res.monitors:
            node = service_node(cluster, res, to_site) if isinstance(res, Service) else None
            steps.append(
                Step(
                    Action.VERIFY_MONITOR,
                    f"{res.name}/{m.name}",
                    f"confirm {res.name} works at {to_site}: {m.type.value} check"
                    f" {m.target!r} (level {m.level}) must pass within {m.timeout:g}s",
                    site=to_site,
                    node=node,
                    params={
                        "resource": res.name,
                        "monitor": m.name,
                        "type": m.type.value,
                        "check": str(m.target),
                        "level": m.level,
                        "timeout": m.timeout,
                    },
                )
            )
    return steps
