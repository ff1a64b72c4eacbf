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


def test_monitor_verify_passes_on_a_beating_guest(
    world: tuple[StepContext, GuestClock, FakeHypervisor],
) -> None:
    ctx, _, _ = world
    result = _run(ctx, "monitor.verify", target="web/beat", site="A", timeout=30.0)
    assert result.data["verified"] is True  # type: ignore[attr-defined]


@pytest.mark.parametrize("how", ["destroyed", "undefined"])
def test_a_heartbeat_of_a_guest_that_is_not_running_fails_at_once(
    world: tuple[StepContext, GuestClock, FakeHypervisor], how: str
) -> None:
    """A shut-off (or undefined) domain cannot beat: the check fails at its first miss
    with the domain's state, not after the whole timeout."""
    ctx, clock, _ = world
    clock.beating = False
    site = "A" if how == "destroyed" else "B"
    if how == "destroyed":
        ctx.env.hypervisors["A"].destroy("web")
    started = clock.monotonic()
    with pytest.raises(StepFailed) as failed:
        _run(ctx, "monitor.verify", target="web/beat", site=site, timeout=60.0)
    assert failed.value.code == "monitor-failed"
    state = "shutoff" if how == "destroyed" else "undefined"
    assert f"domain web is {state} at {site}: no heartbeat can come" in failed.value.message
    assert clock.monotonic() - started < 2.0


def test_a_heartbeat_keeps_its_timeout_while_the_guest_runs_or_cannot_be_asked(
    world: tuple[StepContext, GuestClock, FakeHypervisor],
) -> None:
    """Running but silent (a hung application) or a hypervisor that does not answer:
    the domain's state says nothing for sure, so the check waits its whole timeout."""
    ctx, clock, _ = world
    clock.beating = False
    hypervisor = ctx.env.hypervisors["A"]
    assert isinstance(hypervisor, FakeHypervisor)
    for unreachable in (False, True):
        hypervisor.unreachable = unreachable
        started = clock.monotonic()
        with pytest.raises(StepFailed) as failed:
            _run(ctx, "monitor.verify", target="web/beat", site="A", timeout=8.0)
        assert "no heartbeat can come" not in failed.value.message
        assert clock.monotonic() - started >= 8.0
