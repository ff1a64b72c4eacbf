"""The simulated hypervisor: its state files and its pre-copy model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drorch.environment import Environment
from drorch.model.types import VM
from drorch.testing.clock import FakeClock
from drorch.testing.fake_hypervisor import FakeHypervisor
from drorch.virt.base import (
    HypervisorError,
    MigrationFailed,
    MigrationOptions,
    MigrationProgress,
    VMRunningElsewhere,
    VMState,
)
from drorch.virt.sim import SIM_NS, SimGuest, SimHypervisor, SimSiteDown
from drorch.virt.sim_store import SimStateError

from .conftest import sim_pair, two_site_cluster

MIB = 1024 * 1024


def guest_xml(name: str, memory_mib: int, dirty: float, working_set_mib: int = 0) -> str:
    ws = f" working_set_mib='{working_set_mib}'" if working_set_mib else ""
    return (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>{memory_mib}</memory>"
        f"<features><acpi/></features><metadata><sim:guest xmlns:sim='{SIM_NS}' "
        f"dirty_rate_mibps='{dirty}'{ws}/></metadata></domain>"
    )


def running_pair(env: Environment, xml: str) -> tuple[SimHypervisor, SimHypervisor, str]:
    a, b = sim_pair(two_site_cluster(), env)
    name = a.define(xml)
    a.start(name)
    return a, b, name


# -- state files --------------------------------------------------------------------------


def test_virt_sim_first_use_runs_cluster_vms_at_primary(env: Environment) -> None:
    cluster = two_site_cluster(VM("web", "web-dom"), VM("db", "db-dom", memory_mib=512))
    a, b = sim_pair(cluster, env)
    assert a.list() == ["db-dom", "web-dom"]
    assert a.state("web-dom") == VMState.RUNNING
    assert b.list() == []
    data = json.loads((env.base_dir / "state" / "sim-A.json").read_text())
    assert data["format"] == 1 and data["site"] == "A"
    assert SimGuest.from_xml(a.export_xml("db-dom")).memory == 512 * MIB


def test_virt_sim_state_is_created_once(env: Environment) -> None:
    cluster = two_site_cluster(VM("web", "web"))
    a, b = sim_pair(cluster, env)
    a.migrate_live("web", b, MigrationOptions())
    again_a, again_b = sim_pair(cluster, env)  # a new process opening the same state
    assert again_a.list() == [] and again_b.state("web") == VMState.RUNNING


def test_virt_sim_initial_xml_from_file(env: Environment) -> None:
    (env.base_dir / "web.xml").write_text(guest_xml("web", 64, 1))
    a, _ = sim_pair(two_site_cluster(VM("web", "web", xml="web.xml")), env)
    assert SimGuest.from_xml(a.export_xml("web")).memory == 64 * MIB


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": 99, "vms": {}}', "not a drorch sim state file"),
        ('{"format": 1, "vms": {"x": {"state": "running"}}}', "malformed 'vms' table"),
        ('{"format": 1, "vms": {"x": {"xml": "", "state": "zombie"}}}', "malformed 'vms'"),
    ],
)
def test_virt_sim_rejects_a_bad_state_file(env: Environment, content: str, message: str) -> None:
    state = env.base_dir / "state"
    state.mkdir()
    (state / "sim-A.json").write_text(content)
    a, _ = sim_pair(two_site_cluster(), env)
    with pytest.raises(SimStateError, match=message) as err:
        a.list()
    assert "sim-A.json" in str(err.value)
    assert (state / "sim-A.json").read_text() == content  # nothing overwritten


def test_virt_sim_writes_atomically_and_leaves_no_temp_files(env: Environment) -> None:
    a, _ = sim_pair(two_site_cluster(VM("web", "web")), env)
    with pytest.raises(RuntimeError), a.store.update() as records:
        records.clear()
        raise RuntimeError("crash in the middle of an update")
    assert a.list() == ["web"]
    leftovers = [p.name for p in (env.base_dir / "state").iterdir()]
    assert sorted(leftovers) == ["sim-A.json", "sim-A.lock", "sim-B.json", "sim-B.lock"]


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        ("<memory>131072</memory>", 128 * MIB),
        ("<memory unit='GiB'>2</memory>", 2048 * MIB),
        ("<memory unit='MiB'>64</memory>", 64 * MIB),
    ],
)
def test_virt_sim_memory_units(memory: str, expected: int) -> None:
    guest = SimGuest.from_xml(f"<domain><name>g</name>{memory}</domain>")
    assert guest.memory == expected


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<domain><name>g</name><memory unit='parsec'>1</memory></domain>", "unknown memory"),
        ("<domain><name>g</name><memory>lots</memory></domain>", "not a number"),
        ("<domain><memory>1</memory></domain>", "no <domain><name>"),
        ("<vm><name>g</name></vm>", "no <domain><name>"),
    ],
)
def test_virt_sim_rejects_bad_xml(env: Environment, xml: str, message: str) -> None:
    a, _ = sim_pair(two_site_cluster(), env)
    with pytest.raises(HypervisorError, match=message):
        a.define(xml)
    assert a.list() == []


def test_virt_sim_start_refused_while_running_at_other_site(env: Environment) -> None:
    a, b, name = running_pair(env, guest_xml("web", 128, 1))
    b.define(a.export_xml(name))
    with pytest.raises(VMRunningElsewhere, match="running at site A"):
        b.start(name)
    assert b.state(name) == VMState.SHUTOFF


def test_virt_sim_shutdown_takes_the_guest_time(env: Environment, clock: FakeClock) -> None:
    a, _, name = running_pair(env, guest_xml("web", 128, 1))
    before = clock.monotonic()
    result = a.shutdown(name, 30)
    assert result.graceful and result.seconds == 1.0
    assert clock.monotonic() - before == pytest.approx(1.0)


# -- pre-copy -----------------------------------------------------------------------------


def test_virt_sim_small_guest_converges(env: Environment, clock: FakeClock) -> None:
    a, b, name = running_pair(env, guest_xml("web", 1024, 200))
    samples: list[MigrationProgress] = []
    before = clock.monotonic()
    result = a.migrate_live(name, b, MigrationOptions(), samples.append)
    assert result.converged and not result.postcopy
    assert result.downtime_ms is not None and result.downtime_ms <= 300
    assert result.reason.startswith(f"converged after {result.iterations} iteration")
    assert {s.iteration for s in samples} == set(range(1, result.iterations + 1))
    assert samples[-1].data_remaining == 0
    assert result.data_transferred > 1024 * MIB  # memory plus what was re-sent
    assert clock.monotonic() - before == pytest.approx(result.total_seconds)  # speedup 1


def test_virt_sim_speedup_paces_the_clock(env: Environment, clock: FakeClock) -> None:
    cluster = two_site_cluster()
    a = SimHypervisor(cluster, cluster.sites[0], env, speedup=20.0)
    b = SimHypervisor(cluster, cluster.sites[1], env, speedup=20.0)
    a.define(guest_xml("web", 2048, 100))
    a.start("web")
    before = clock.monotonic()
    result = a.migrate_live("web", b, MigrationOptions())
    assert clock.monotonic() - before == pytest.approx(result.total_seconds / 20.0)


def test_virt_sim_bandwidth_option_overrides_the_link(env: Environment) -> None:
    a, b, name = running_pair(env, guest_xml("web", 512, 1))
    fast = a.migrate_live(name, b, MigrationOptions())
    slow = b.migrate_live(name, a, MigrationOptions(bandwidth_mibps=100))
    # one pass of 512 MiB, then the ~1 % dirtied meanwhile in the pause, plus 10 ms hand-over
    assert fast.total_seconds == pytest.approx(0.512 + 0.0005 + 0.01, abs=0.001)
    assert slow.total_seconds == pytest.approx(5.12 + 0.0512 + 0.01, abs=0.001)


def test_virt_sim_non_convergence_aborts_and_keeps_vm_at_source(env: Environment) -> None:
    a, b, name = running_pair(env, guest_xml("hot", 4096, 3000))
    options = MigrationOptions(deadline=30, adaptive=False, auto_converge=False)
    with pytest.raises(MigrationFailed, match="migration did not converge before the 30s") as e:
        a.migrate_live(name, b, options)
    result = e.value.result
    assert result is not None and not result.converged and result.downtime_ms is None
    assert result.total_seconds <= 30
    assert a.state(name) == VMState.RUNNING and b.state(name) == VMState.UNDEFINED


HOT_WORKING_SET = guest_xml("dd", 2048, 3000, working_set_mib=1024)


def test_virt_sim_adaptive_downtime_makes_a_hot_guest_converge(env: Environment) -> None:
    a, b, name = running_pair(env, HOT_WORKING_SET)
    samples: list[MigrationProgress] = []
    result = a.migrate_live(name, b, MigrationOptions(deadline=120), samples.append)
    assert result.converged
    assert result.final_max_downtime_ms == 1150  # two steps of (2000 - 300) / 4
    assert 300 < (result.downtime_ms or 0) <= 1150
    assert [s.max_downtime_ms for s in samples][-1] == 1150
    assert b.state(name) == VMState.RUNNING


def test_virt_sim_same_hot_guest_without_adaptive_does_not_converge(env: Environment) -> None:
    a, b, name = running_pair(env, HOT_WORKING_SET)
    options = MigrationOptions(deadline=120, adaptive=False, auto_converge=False)
    with pytest.raises(MigrationFailed, match="did not converge") as e:
        a.migrate_live(name, b, options)
    assert e.value.result is not None and e.value.result.final_max_downtime_ms == 300
    assert a.state(name) == VMState.RUNNING


def test_virt_sim_auto_converge_throttles_the_guest(env: Environment) -> None:
    a, b, name = running_pair(env, HOT_WORKING_SET)
    samples: list[MigrationProgress] = []
    options = MigrationOptions(deadline=300, adaptive=False)
    result = a.migrate_live(name, b, options, samples.append)
    assert result.converged and (result.downtime_ms or 0) <= 300
    throttled = [s for s in samples if s.auto_converge]
    assert throttled, "auto-converge was turned on"
    assert throttled[-1].dirty_rate < samples[0].dirty_rate / 2


def test_virt_sim_postcopy_before_the_deadline(env: Environment) -> None:
    a, b, name = running_pair(env, guest_xml("hot", 4096, 3000))
    samples: list[MigrationProgress] = []
    options = MigrationOptions(deadline=30, allow_postcopy=True, adaptive=False)
    result = a.migrate_live(name, b, options, samples.append)
    assert result.postcopy and not result.converged
    assert "switching to post-copy" in result.reason
    assert samples[-1].postcopy and samples[-1].data_remaining == 0
    assert result.downtime_ms is not None and result.downtime_ms < 50
    assert result.total_seconds < 30 + 4096 / 1000 + 1
    assert b.state(name) == VMState.RUNNING and a.state(name) == VMState.UNDEFINED


def test_virt_sim_refuses_foreign_or_same_destination(env: Environment) -> None:
    a, _, name = running_pair(env, guest_xml("web", 128, 1))
    with pytest.raises(MigrationFailed, match="FakeHypervisor"):
        a.migrate_live(name, FakeHypervisor("B"), MigrationOptions())
    with pytest.raises(MigrationFailed, match="both site A"):
        a.migrate_live(name, a, MigrationOptions())
    assert a.state(name) == VMState.RUNNING


def test_virt_sim_refuses_dest_xml_for_another_domain(env: Environment) -> None:
    a, b, name = running_pair(env, guest_xml("web", 128, 1))
    with pytest.raises(MigrationFailed, match="another domain"):
        a.migrate_live(name, b, MigrationOptions(dest_xml=guest_xml("other", 128, 1)))
    assert b.list() == []


def test_virt_sim_dest_xml_is_what_dest_defines(env: Environment, tmp_path: Path) -> None:
    a, b, name = running_pair(env, guest_xml("web", 128, 1))
    remapped = guest_xml("web", 128, 1).replace(
        "<features>", "<description>B</description><features>"
    )
    a.migrate_live(name, b, MigrationOptions(dest_xml=remapped))
    assert "<description>B</description>" in b.export_xml(name)


def test_virt_sim_concurrent_writers_lose_nothing(env: Environment) -> None:
    import threading

    cluster = two_site_cluster()
    sites = [SimHypervisor(cluster, cluster.sites[0], env) for _ in range(2)]  # two "processes"

    def define_many(hv: SimHypervisor, prefix: str) -> None:
        for i in range(25):
            hv.define(guest_xml(f"{prefix}{i:02d}", 64, 1))

    threads = [
        threading.Thread(target=define_many, args=(hv, p))
        for hv, p in zip(sites, "xy", strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(sites[0].list()) == 50


class MeddlingClock(FakeClock):
    """Another operator destroys the VM at the source while the migration copies."""

    def __init__(self, meddle: SimHypervisor, vm: str) -> None:
        super().__init__()
        self.meddle, self.vm, self.done = meddle, vm, False

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if not self.done:
            self.done = True
            self.meddle.destroy(self.vm)


def test_virt_sim_vm_stopped_during_migration_is_not_moved(tmp_path: Path) -> None:
    cluster = two_site_cluster()
    setup_env = Environment(clock=FakeClock(), base_dir=tmp_path)
    other_a, _ = sim_pair(cluster, setup_env)
    other_a.define(guest_xml("web", 2048, 100))
    other_a.start("web")
    env = Environment(clock=MeddlingClock(other_a, "web"), base_dir=tmp_path)
    a, b = sim_pair(cluster, env)
    with pytest.raises(MigrationFailed, match="web stopped at site A during migration"):
        a.migrate_live("web", b, MigrationOptions())
    assert a.state("web") == VMState.SHUTOFF and b.state("web") == VMState.UNDEFINED


def test_virt_sim_refuses_to_migrate_onto_a_running_copy(env: Environment) -> None:
    a, b, name = running_pair(env, guest_xml("web", 128, 1))
    b.store.create_if_missing({})
    with b.store.update() as records:  # a split brain made by hand
        records[name] = {"xml": a.export_xml(name), "state": "running"}
    with pytest.raises(MigrationFailed, match="already running at site B"):
        a.migrate_live(name, b, MigrationOptions())
    assert a.state(name) == VMState.RUNNING


def test_virt_sim_unreadable_destination_fails_the_migration(env: Environment) -> None:
    a, b, name = running_pair(env, guest_xml("web", 128, 1))
    b.store.path.write_text("{torn")
    with pytest.raises(MigrationFailed, match=r"cannot use site B: .*not valid JSON"):
        a.migrate_live(name, b, MigrationOptions())
    assert a.state(name) == VMState.RUNNING


def test_virt_sim_power_loss_and_cold_failover(env: Environment) -> None:
    a, b, name = running_pair(env, guest_xml("db", 128, 1))
    xml = a.export_xml(name)
    assert a.power_loss() == [name]
    for call in (a.list, lambda: a.state(name), lambda: a.start(name)):
        with pytest.raises(SimSiteDown, match="site A is down"):
            call()
    result = b.cold_start(xml, [a])
    assert result.unreachable_sites == ("A",) and b.state(name) == VMState.RUNNING
    a.power_restore()
    assert a.state(name) == VMState.SHUTOFF  # back, but nothing autostarts
    with pytest.raises(VMRunningElsewhere, match="running at site B"):
        a.start(name)


class PartitionClock(FakeClock):
    """Loses a site at the first pause of the copy loop."""

    def __init__(self, lose: SimHypervisor) -> None:
        super().__init__()
        self.lose = lose

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if not self.lose.store.is_down:
            self.lose.power_loss()


@pytest.mark.parametrize(
    ("lost", "message", "source_state"),
    [
        ("B", "lost site B .* into the migration: web keeps running at A", VMState.RUNNING),
        ("A", "site A was lost .* into the migration: web is down", VMState.SHUTOFF),
    ],
)
def test_virt_sim_site_lost_during_migration(
    tmp_path: Path, lost: str, message: str, source_state: VMState
) -> None:
    cluster = two_site_cluster()
    setup_a, setup_b = sim_pair(cluster, Environment(clock=FakeClock(), base_dir=tmp_path))
    setup_a.define(guest_xml("web", 4096, 100))
    setup_a.start("web")
    victim = setup_a if lost == "A" else setup_b
    a, b = sim_pair(cluster, Environment(clock=PartitionClock(victim), base_dir=tmp_path))
    with pytest.raises(MigrationFailed, match=message):
        a.migrate_live("web", b, MigrationOptions())
    victim.power_restore()
    assert a.state("web") == source_state and b.state("web") == VMState.UNDEFINED


WRITER = """
import sys
from pathlib import Path
from drorch.environment import Environment
from drorch.model.types import Cluster, Hypervisors, Node, Site
from drorch.virt.sim import SimHypervisor
cluster = Cluster("lab", (Site("A", (Node("a1"),)), Site("B", (Node("b1"),))), "A",
                  hypervisor=Hypervisors(state_dir="state"))
hv = SimHypervisor(cluster, cluster.sites[0], Environment(base_dir=Path(sys.argv[1])))
for i in range(30):
    hv.define(f"<domain><name>{sys.argv[2]}{i:02d}</name><memory>65536</memory></domain>")
"""


def test_virt_sim_two_processes_share_a_site(tmp_path: Path) -> None:
    import subprocess
    import sys

    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), prefix])
        for prefix in ("p", "q")
    ]
    try:
        codes = [p.wait(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert codes == [0, 0]
    a, _ = sim_pair(two_site_cluster(), Environment(clock=FakeClock(), base_dir=tmp_path))
    assert len(a.list()) == 60


class RacingClock(FakeClock):
    """A second operator migrates the same VM to B while our migration copies."""

    def __init__(self, rival: tuple[SimHypervisor, SimHypervisor]) -> None:
        super().__init__()
        self.rival, self.done = rival, False

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if not self.done:
            self.done = True
            self.rival[0].migrate_live("web", self.rival[1], MigrationOptions())


def test_virt_sim_concurrent_migrations_of_one_vm(tmp_path: Path) -> None:
    cluster = two_site_cluster()
    rival = sim_pair(cluster, Environment(clock=FakeClock(), base_dir=tmp_path))
    rival[0].define(guest_xml("web", 2048, 100))
    rival[0].start("web")
    a, b = sim_pair(cluster, Environment(clock=RacingClock(rival), base_dir=tmp_path))
    with pytest.raises(MigrationFailed, match="web left site A during the migration"):
        a.migrate_live("web", b, MigrationOptions())
    assert b.state("web") == VMState.RUNNING and b.list().count("web") == 1
    assert a.state("web") == VMState.UNDEFINED
