"""Schema of the resource sections: `volumes`, `vms`, `services` and their `monitors`."""

from __future__ import annotations

from types import MappingProxyType

from drorch.model.fields import MISSING, Context, Fields, Path, content_key
from drorch.model.source import Located
from drorch.model.types import (
    VM,
    DrbdOptions,
    Driver,
    Monitor,
    MonitorType,
    PyreplOptions,
    ReplicationMode,
    Service,
    Volume,
)

DRBD_CONGESTION = ("block", "pull-ahead", "disconnect")
PYREPL_CONGESTION = ("block", "pull-ahead")
FENCING = ("resource-only", "dont-care")
AFTER_SB_0PRI = ("disconnect", "discard-younger-primary", "discard-older-primary",
                 "discard-zero-changes", "discard-least-changes")  # fmt: skip
AFTER_SB_1PRI = ("disconnect", "consensus", "discard-secondary", "call-pri-lost-after-sb")
AFTER_SB_2PRI = ("disconnect", "call-pri-lost-after-sb")
# Defaults read from one instance each (frozen), not from a new one per resource read.
_DRBD, _PYREPL = DrbdOptions(), PyreplOptions()
_MONITOR = Monitor("", MonitorType.PROCESS, "")
_VM = VM("", "")


def parse_drbd(loc: Located, path: Path, ctx: Context) -> DrbdOptions:
    f = Fields(loc, path, ctx, "drbd")
    d = _DRBD
    opts = DrbdOptions(
        device=f.text("device", d.device),
        ping_timeout=f.duration("ping_timeout", d.ping_timeout),
        timeout=f.duration("timeout", d.timeout),
        ko_count=f.whole("ko_count", d.ko_count),
        verify_alg=f.text("verify_alg", d.verify_alg),
        csums_alg=f.text("csums_alg", d.csums_alg),
        on_congestion=f.one_of("on_congestion", DRBD_CONGESTION, d.on_congestion),
        after_sb_0pri=f.one_of("after_sb_0pri", AFTER_SB_0PRI, d.after_sb_0pri),
        after_sb_1pri=f.one_of("after_sb_1pri", AFTER_SB_1PRI, d.after_sb_1pri),
        after_sb_2pri=f.one_of("after_sb_2pri", AFTER_SB_2PRI, d.after_sb_2pri),
        quorum=f.one_of("quorum", ("off", "majority"), d.quorum),
        on_no_quorum=f.one_of("on_no_quorum", ("suspend-io", "io-error"), d.on_no_quorum),
    )
    f.done()
    return opts


def parse_pyrepl(loc: Located, path: Path, ctx: Context) -> PyreplOptions:
    f = Fields(loc, path, ctx, "pyrepl")
    d = _PYREPL
    opts = PyreplOptions(
        region_size=f.size("region_size", d.region_size),
        max_lag_bytes=f.size("max_lag", d.max_lag_bytes),
        on_congestion=f.one_of("on_congestion", PYREPL_CONGESTION, d.on_congestion),
        nbd_port=f.whole("nbd_port", None, low=1, high=65535),
        tls=f.flag("tls", d.tls),
    )
    f.done()
    return opts


def parse_volume(loc: Located, path: Path, ctx: Context) -> Volume | None:
    f = Fields(loc, path, ctx, "volume")
    name = f.name()
    driver = f.choice("driver", Driver, MISSING)
    mode = f.choice("mode", ReplicationMode, ReplicationMode.SYNC)
    size = f.size("size", MISSING)
    port = f.whole("port", MISSING, low=1, high=65535)
    paths = f.str_map("paths")
    given_fencing = f.one_of("fencing", FENCING, None)
    drbd_loc = f.node("drbd")
    pyrepl_loc = f.node("pyrepl")
    drbd = parse_drbd(drbd_loc, (*path, "drbd"), ctx) if drbd_loc else _DRBD
    pyrepl = parse_pyrepl(pyrepl_loc, (*path, "pyrepl"), ctx) if pyrepl_loc else _PYREPL
    f.done()
    if name is MISSING:
        return None
    # Already reported; placeholders keep references to this volume from cascading.
    driver = Driver.PYREPL if driver is MISSING else driver
    size = 0 if size is MISSING else size
    port = 0 if port is MISSING else port
    sync = mode is ReplicationMode.SYNC
    fencing = given_fencing or ("resource-only" if sync else "dont-care")
    if given_fencing == "resource-only" and not sync:
        ctx.error(
            "fencing-needs-sync",
            f"volume {name!r}: fencing resource-only needs mode sync (an async primary "
            "acknowledges before its peer has the write anyway)",
            ctx.where.at(*path, "fencing"),
        )
    if drbd_loc is not None and driver is not Driver.DRBD:
        ctx.error(
            "options-for-other-driver",
            f"volume {name!r} has drbd options but uses driver {driver.value}",
            f.key_pos("drbd"),
        )
    if pyrepl_loc is not None and driver is not Driver.PYREPL:
        ctx.error(
            "options-for-other-driver",
            f"volume {name!r} has pyrepl options but uses driver {driver.value}",
            f.key_pos("pyrepl"),
        )
    return Volume(
        name, driver, mode, size, port, MappingProxyType(paths), drbd, pyrepl, fencing
    )  # fmt: skip


def parse_monitor(loc: Located, path: Path, ctx: Context) -> Monitor | None:
    """A monitor; one whose content was read before without a report is that one again
    (monitors are often written out the same for many VMs and services), with the same
    positions recorded as reading it gives."""
    content = content_key("monitor", loc)
    known = ctx.by_content.get(content) if content is not None else None
    if known is not None:
        record = ctx.where.positions.setdefault
        record(path, loc.position)
        values: dict[str, Located] = loc.value
        for key in known[1]:
            record((*path, key), values[key].position)
        return known[0]  # type: ignore[no-any-return]
    reports = len(ctx.reports)
    monitor, f = _read_monitor(loc, path, ctx)
    if content is not None and monitor is not None and len(ctx.reports) == reports:
        ctx.by_content[content] = (monitor, tuple(k for k in f.allowed if k in f.values))
    return monitor


def _read_monitor(loc: Located, path: Path, ctx: Context) -> tuple[Monitor | None, Fields]:
    f = Fields(loc, path, ctx, "monitor")
    name = f.name()
    mtype = f.choice("type", MonitorType, MISSING)
    target = f.text("target", required=True)
    d = _MONITOR
    monitor = Monitor(
        name=name,
        type=mtype,
        target=target,
        interval=f.duration("interval", d.interval),
        timeout=f.duration("timeout", d.timeout),
        level=f.whole("level", d.level, low=1, high=3),
        expect=f.text("expect", None),
    )
    f.done()
    if MISSING in (name, mtype, target):
        return None, f
    return monitor, f


def parse_monitors(f: Fields, ctx: Context) -> tuple[Monitor, ...]:
    out: list[Monitor] = []
    for _, item in f.items("monitors"):
        m = parse_monitor(item, (*f.path, "monitors", len(out)), ctx)
        if m is not None:
            out.append(m)
    return tuple(out)


def parse_vm(loc: Located, path: Path, ctx: Context) -> VM | None:
    f = Fields(loc, path, ctx, "vm")
    name = f.name()
    d = _VM
    vm = VM(
        name=name,
        domain=f.text("domain", name),
        xml=f.text("xml", None),
        volumes=f.names("volumes"),
        migratable=f.flag("migratable", d.migratable),
        depends_on=f.names("depends_on"),
        monitors=parse_monitors(f, ctx),
        memory_mib=_mib(f.size("memory", d.memory_mib * 2**20)),
        dirty_rate_mibps=f.number("dirty_rate_mibps", d.dirty_rate_mibps),
    )
    f.done()
    return None if name is MISSING else vm


def _mib(size: int) -> int:
    return max(1, size // 2**20)


def parse_service(loc: Located, path: Path, ctx: Context) -> Service | None:
    f = Fields(loc, path, ctx, "service")
    name = f.name()
    start = f.text("start", required=True)
    stop = f.text("stop", required=True)
    service = Service(
        name=name,
        start=start,
        stop=stop,
        migratable=f.flag("migratable", False),
        depends_on=f.names("depends_on"),
        monitors=parse_monitors(f, ctx),
        placement=MappingProxyType(f.str_map("placement")),
    )
    f.done()
    if name is MISSING:
        return None
    return service
