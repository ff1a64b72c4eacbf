"""Hypothesis: any valid model -> normalised YAML -> loader gives the same model."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drorch.model.dump import cluster_to_dict, cluster_to_yaml
from drorch.model.loader import parse_cluster_text
from drorch.model.rules_drbd import drbd_only
from drorch.model.types import (
    VM,
    Cluster,
    DrbdOptions,
    Drill,
    DrillKind,
    Driver,
    Fencing,
    Hypervisors,
    MigrationPolicy,
    Monitor,
    MonitorType,
    Node,
    PyreplOptions,
    QuorumTimings,
    ReplicationMode,
    SelfFence,
    Service,
    Site,
    Volume,
    WatchdogKind,
    Witness,
)

NAME = st.from_regex(r"\A[a-z][a-z0-9-]{0,7}\Z")
MS = st.integers(min_value=1, max_value=600_000).map(lambda ms: ms / 1000)
ODD_SECONDS = st.floats(min_value=0.001, max_value=1e4, allow_nan=False).map(lambda x: round(x, 6))
DURATION = st.one_of(MS, ODD_SECONDS)
DRBD_TIMEOUT = st.integers(min_value=100, max_value=60_000).map(lambda ms: ms / 1000)  # 0.1s..60s
SIZE = st.one_of(
    st.integers(min_value=1, max_value=2**40),
    st.integers(min_value=1, max_value=4096).map(lambda n: n * 2**20),
)
TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=20
).filter(lambda s: s.strip() != "")


def _unique_names(draw: st.DrawFn, n: int, taken: set[str]) -> list[str]:
    out = []
    for _ in range(n):
        name = draw(NAME.filter(lambda x: x not in taken))
        taken.add(name)
        out.append(name)
    return out


@st.composite
def monitors(draw: st.DrawFn) -> tuple[Monitor, ...]:
    names = _unique_names(draw, draw(st.integers(0, 2)), set())
    out = []
    for name in names:
        mtype = draw(st.sampled_from(list(MonitorType)))
        if mtype is MonitorType.TCP:
            target = f"127.0.0.{draw(st.integers(1, 254))}:{draw(st.integers(1, 65535))}"
        elif mtype is MonitorType.HTTP:
            target = f"http://127.0.0.1:{draw(st.integers(1, 65535))}/health"
        else:
            target = draw(TEXT)
        interval = draw(st.integers(2, 3600))
        timeout = draw(st.integers(1, interval - 1)) / 2
        expect = draw(st.one_of(st.none(), TEXT))
        out.append(
            Monitor(name, mtype, target, float(interval), timeout, draw(st.integers(1, 3)), expect)
        )
    return tuple(out)


@st.composite
def clusters(draw: st.DrawFn) -> Cluster:
    taken: set[str] = set()
    site_names = _unique_names(draw, 2, taken)
    sites = []
    for sname in site_names:
        nodes = []
        for nname in _unique_names(draw, draw(st.integers(1, 2)), taken):
            address = draw(
                st.sampled_from(["local", f"root@{nname}.example.net:22", "ops@[::1]:2222"])
            )
            uri = draw(st.one_of(st.none(), st.just("qemu:///system")))
            repl = draw(st.one_of(st.none(), st.ip_addresses().map(str)))
            mig = draw(st.one_of(st.none(), st.just(f"qemu+tcp://{nname}/system")))
            nodes.append(Node(nname, address, uri, replication_address=repl, migration_uri=mig))
        sites.append(Site(sname, tuple(nodes)))
    volumes = []
    for i, vname in enumerate(_unique_names(draw, draw(st.integers(0, 3)), taken)):
        driver = draw(st.sampled_from(list(Driver)))
        mode = draw(st.sampled_from(list(ReplicationMode)))
        paths = {draw(st.sampled_from(s.nodes)).name: f"/srv/{vname}-{s.name}.img" for s in sites}
        congestion = (
            "block"
            if mode is ReplicationMode.SYNC
            else draw(st.sampled_from(["block", "pull-ahead"]))
        )
        drbd, pyrepl = DrbdOptions(), PyreplOptions()
        if driver is Driver.DRBD:
            drbd = DrbdOptions(
                device=f"/dev/drbd{i}",
                timeout=draw(
                    st.integers(min_value=100, max_value=60_000).map(lambda ms: ms / 1000)
                ),
                ko_count=draw(st.integers(0, 20)),
                on_congestion=congestion,
            )
            draft = Volume(vname, driver, mode, 1, 7789 + 2 * i, MappingProxyType(paths), drbd)
            stub = Cluster("stub", (sites[0], sites[1]), sites[0].name)
            if drbd_only(stub, draft):  # nodes DRBD cannot use (host names, mixed families)
                driver, drbd = Driver.PYREPL, DrbdOptions()
        if driver is Driver.PYREPL:
            pyrepl = PyreplOptions(
                region_size=draw(SIZE),
                on_congestion=congestion,
                nbd_port=draw(st.one_of(st.none(), st.just(10809 + 2 * i))),  # local: +index
                tls=draw(st.booleans()),
            )
        fencing = (
            draw(st.sampled_from(["resource-only", "dont-care"]))
            if mode is ReplicationMode.SYNC
            else "dont-care"
        )
        port = 7789 + 2 * i
        size = draw(SIZE)
        volume = Volume(vname, driver, mode, size, port, MappingProxyType(paths), drbd, pyrepl)
        volumes.append(replace(volume, fencing=fencing))
    resources: list[tuple[str, bool]] = []
    vms = []
    for vname in _unique_names(draw, draw(st.integers(0, 3)), taken):
        migratable = draw(st.booleans())
        deps = _deps(draw, resources, migratable)
        vols = (
            tuple(
                draw(st.lists(st.sampled_from([v.name for v in volumes]), unique=True, max_size=2))
            )
            if volumes
            else ()
        )
        vms.append(
            VM(
                vname,
                draw(NAME),
                draw(st.one_of(st.none(), st.just(f"/etc/drorch/{vname}.xml"))),
                vols,
                migratable,
                deps,
                draw(monitors()),
                draw(st.integers(1, 65536)),
                float(draw(st.integers(0, 500))),
            )
        )
        resources.append((vname, migratable))
    services = []
    for sname in _unique_names(draw, draw(st.integers(0, 3)), taken):
        migratable = draw(st.booleans())
        deps = _deps(draw, resources, migratable)
        placement = {s.name: s.nodes[-1].name for s in sites if draw(st.booleans())}
        services.append(
            Service(
                sname,
                draw(TEXT),
                draw(TEXT),
                migratable,
                deps,
                draw(monitors()),
                MappingProxyType(placement),
            )
        )
        resources.append((sname, migratable))
    lease = draw(st.integers(3_000, 120_000)) / 1000
    switch = draw(st.integers(0, 60_000)) / 1000
    fencing = Fencing(
        watchdog=draw(st.sampled_from(list(WatchdogKind))),
        watchdog_timeout=lease / 2,
        margin=draw(st.integers(0, 1000)) / 1000,
        self_fence=draw(st.sampled_from(list(SelfFence))),
    )
    quorum = QuorumTimings(
        lease / 4, lease, switch, lease + switch + draw(st.integers(0, 5000)) / 1000
    )
    witness = draw(
        st.one_of(
            st.none(), st.just(Witness("127.0.0.1:7443", "ab" * 32, "/etc/drorch/client.pem", None))
        )
    )
    drills = tuple(
        Drill(
            n,
            draw(st.sampled_from(list(DrillKind))),
            draw(st.sampled_from(["@weekly", "0 3 * * sun", "*/15 2-4 1,15 jan-mar mon-fri"])),
            draw(st.sampled_from(site_names)),
        )
        for n in _unique_names(draw, draw(st.integers(0, 2)), set())
    )
    max_downtime = draw(MS)
    return Cluster(
        name=draw(NAME),
        sites=(sites[0], sites[1]),
        primary_site=draw(st.sampled_from(site_names)),
        witness=witness,
        volumes=tuple(volumes),
        vms=tuple(vms),
        services=tuple(services),
        fencing=fencing,
        quorum=quorum,
        migration=MigrationPolicy(
            max_downtime,
            max_downtime + draw(MS),
            draw(st.integers(1, 10)),
            draw(st.integers(1, 10)),
            draw(st.booleans()),
            draw(st.booleans()),
            draw(st.integers(0, 10_000)),
            draw(MS),
        ),
        hypervisor=Hypervisors(
            draw(st.sampled_from(["sim", "libvirt"])),
            draw(st.sampled_from([".drorch-state", "/var/lib/drorch"])),
            float(draw(st.integers(1, 10_000))),
        ),
        distance_km=draw(st.one_of(st.none(), st.integers(0, 5000).map(float))),
        write_latency_budget=draw(MS),
        drills=drills,
    )


def _deps(draw: st.DrawFn, resources: list[tuple[str, bool]], migratable: bool) -> tuple[str, ...]:
    allowed = [name for name, m in resources if m or not migratable]
    if not allowed:
        return ()
    return tuple(draw(st.lists(st.sampled_from(allowed), unique=True, max_size=2)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters())
def test_model_yaml_model_round_trip(cluster: Cluster) -> None:
    text = cluster_to_yaml(cluster)
    loaded, _warnings = parse_cluster_text(text, "roundtrip.yaml")
    assert loaded == cluster
    assert cluster_to_dict(loaded) == cluster_to_dict(cluster)
