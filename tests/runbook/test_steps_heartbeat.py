"""vm.verify_alive on a non-simulated cluster reads the guest's serial-console heartbeat
(`HEARTBEAT <n>` lines, drorch.monitor.serial_log): a migration the hypervisor reports
as done fails the step when the guest at the target has stopped beating (the lab saw
one in about fourteen). Fake hypervisors, a FakeClock whose sleeps let the guest beat."""

from __future__ import annotations

from pathlib import Path

import pytest

from drorch.environment import Environment
from drorch.model.loader import parse_cluster_text
from drorch.remote.local import LocalRunner
from drorch.runbook.steps.base import StepContext, StepFailed, bind_args, load_step_types
from drorch.testing.clock import FakeClock
from drorch.testing.fake_hypervisor import FakeHypervisor, fake_domain_xml

CLUSTER = """\
cluster: beat
primary_site: A
sites:
  A: {nodes: [{name: a1}]}
  B: {nodes: [{name: b1}]}
vms:
  - name: web
    domain: web
    monitors:
      - {name: beat, type: heartbeat, target: serial/web.log, interval: 2s, timeout: 1s,
         level: 3}
"""


class GuestClock(FakeClock):
    """Each sleep is a second of guest life: a beating guest logs one more beat."""

    def __init__(self, log: Path) -> None:
        super().__init__()
        self.log = log
        self.beating = True
        self.n = 0

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if self.beating:
            self.n += 1
            with self.log.open("a") as f:
                f.write(f"[ 1.0] HEARTBEAT {self.n}\n")


@pytest.fixture
def world(tmp_path: Path) -> tuple[StepContext, GuestClock, FakeHypervisor]:
    (tmp_path / "serial").mkdir()
    log = tmp_path / "serial" / "web.log"
    log.write_text("booting\n")
    clock = GuestClock(log)
    a, b = FakeHypervisor("A"), FakeHypervisor("B")
    a.define(fake_domain_xml("web"))
    a.start("web")
    runners = {n: LocalRunner(clock=clock, cwd=tmp_path) for n in ("a1", "b1")}
    env = Environment(
        clock=clock,
        runners=runners,
        hypervisors={"A": a, "B": b},
        base_dir=tmp_path,
        state_dir=tmp_path / "state",
    )
    cluster = parse_cluster_text(CLUSTER, "beat.yaml")[0]
    return StepContext(env, cluster), clock, b


def _run(ctx: StepContext, name: str, **raw: object) -> object:
    step = load_step_types()[name]
    args, problems = bind_args(step.params, raw)
    assert not problems
    return step.run(ctx, args)


def test_a_beating_guest_at_the_target_passes(
    world: tuple[StepContext, GuestClock, FakeHypervisor],
) -> None:
    ctx, clock, b = world
    result = _run(ctx, "vm.migrate_live", target="web", site="B", timeout=10.0)
    assert b.state("web").value == "running"
    assert ctx.facts["migration_converged"] is True
    assert any("web/beat (heartbeat serial/web.log)" in c for c in result.checked)  # type: ignore[attr-defined]
    assert clock.n >= 3


def test_a_migration_into_a_dead_guest_fails_the_step(
    world: tuple[StepContext, GuestClock, FakeHypervisor],
) -> None:
    ctx, clock, b = world
    clock.beating = False  # the kernel panicked at the destination
    with pytest.raises(StepFailed) as failed:
        _run(ctx, "vm.migrate_live", target="web", site="B", timeout=10.0)
    assert failed.value.code == "vm-not-alive"
    assert failed.value.message.startswith("web runs at B but does not heartbeat")
    assert b.state("web").value == "running"  # the hypervisor thinks all is well
    with pytest.raises(StepFailed, match="does not heartbeat"):
        _run(ctx, "vm.verify_alive", target="web", site="B", timeout=5.0)
