"""The libvirt hypervisor driver (needs the `[libvirt]` extra; imported lazily).

One `LibvirtHypervisor` per site, talking to the libvirtd of the site's node:

* `uri` - how drorch reaches it (node `libvirt_uri`, default qemu:///system);
* `peer_uri` - how the *other* site's libvirtd reaches it for peer-to-peer migration
  (node `migration_uri`, else a network `libvirt_uri`);
* the memory stream goes to `tcp://<host of peer_uri>` unless `options.dest_uri` says
  otherwise (VIR_MIGRATE_PARAM_URI).

Disk paths are site-specific: a VM's volumes have one path per node (`Volume.paths`), so
XML coming from the other site (a cold failover's saved XML, or the live domain during a
migration) is rewritten to this site's paths by `localize` before it is defined.

A live migration from this site is run by `migrate_live`, whose body (the refusals, the
job, confirming the end) is in libvirt_live.py.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from drorch.clock import Clock, SystemClock
from drorch.environment import Environment
from drorch.model.types import Cluster, Site
from drorch.virt.base import (
    Hypervisor,
    HypervisorError,
    MigrationOptions,
    MigrationResult,
    NoSuchVM,
    ProgressCallback,
    ShutdownResult,
    VMState,
    domain_name,
)
from drorch.virt.libvirt_conn import (
    derived_peer_uri,
    describe,
    is_no_domain,
    libvirt_module,
    open_connection,
    site_node,
    socket_relative_to,
    translate,
)
from drorch.virt.libvirt_live import migrate_between
from drorch.virt.xmlmap import remap_disks, site_path_map, with_uuid

DEFAULT_URI = "qemu:///system"


SHUTDOWN_REPEAT = 3.0  # seconds between ACPI power-button presses during a shutdown


class LibvirtHypervisor(Hypervisor):
    def __init__(self, cluster: Cluster, site: Site, env: Environment) -> None:
        node = site_node(site)

        def absolute(path: str) -> str:  # relative paths are relative to the config file
            return path if path.startswith("/") else str(env.base_dir / path)

        uri = socket_relative_to(node.libvirt_uri or DEFAULT_URI, absolute)

        paths: dict[str, str] = {}
        for volume in cluster.volumes:
            mine = volume.paths.get(node.name)
            if mine is None:
                continue
            for other, path in volume.paths.items():
                if other != node.name:
                    paths[absolute(path)] = absolute(mine)
        # NBD exports too (pyrepl): the other site's export -> this site's, so a guest that
        # live-migrates here writes to this site's replica, not to the one being demoted
        for vm in cluster.vms:
            for other_site in cluster.sites:
                if other_site.name != site.name:
                    nbd = site_path_map(cluster, vm, other_site.name, site.name)
                    paths |= {k: v for k, v in nbd.items() if k.startswith("nbd://")}
        self._setup(
            site.name,
            uri,
            clock=env.clock,
            peer_uri=node.migration_uri or derived_peer_uri(uri),
            path_map=paths,
        )

    @classmethod
    def connect(
        cls,
        uri: str,
        site: str,
        *,
        clock: Clock | None = None,
        peer_uri: str | None = None,
        path_map: Mapping[str, str] | None = None,
        connect_timeout: float = 10.0,
        abort_grace: float = 15.0,
        poll_interval: float = 0.2,
    ) -> LibvirtHypervisor:
        """A driver without a cluster model (the lab, the tests, scripts)."""
        self = cls.__new__(cls)
        self._setup(
            site,
            uri,
            clock=clock or SystemClock(),
            peer_uri=peer_uri if peer_uri is not None else derived_peer_uri(uri),
            path_map=dict(path_map or {}),
            connect_timeout=connect_timeout,
            abort_grace=abort_grace,
            poll_interval=poll_interval,
        )
        return self

    def _setup(
        self,
        site: str,
        uri: str,
        *,
        clock: Clock,
        peer_uri: str | None,
        path_map: Mapping[str, str],
        connect_timeout: float = 10.0,
        abort_grace: float = 15.0,
        poll_interval: float = 0.2,
    ) -> None:
        self.site = site
        self.uri = uri
        self.peer_uri = peer_uri
        self.path_map = dict(path_map)
        self.clock = clock
        self.connect_timeout = connect_timeout
        self.abort_grace = abort_grace
        self.poll_interval = poll_interval
        self._lv = libvirt_module()
        self._conn: Any = None

    # --- connection ----------------------------------------------------------------
    @property
    def conn(self) -> Any:
        if self._conn is not None:
            try:
                if self._conn.isAlive():
                    return self._conn
            except self._lv.libvirtError:
                pass
            self._close_quietly()
        self._conn = open_connection(self.uri, self.clock, connect_timeout=self.connect_timeout)
        return self._conn

    def close(self) -> None:
        """Drop the connection (reopened on next use). Idempotent."""
        self._close_quietly()

    def _close_quietly(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(self._lv.libvirtError):
                conn.close()

    def __enter__(self) -> LibvirtHypervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._lv.libvirtError as exc:
            raise translate(exc, f"{self.site}: {what}") from None

    def _domain(self, vm: str) -> Any:
        return self._call(f"look up {vm}", self.conn.lookupByName, vm)

    # --- the Hypervisor contract ---------------------------------------------------
    def list(self) -> builtins.list[str]:
        domains = self._call("list domains", self.conn.listAllDomains, 0)
        return sorted(d.name() for d in domains)

    def state(self, vm: str) -> VMState:
        try:
            dom = self.conn.lookupByName(vm)
            code = dom.state()[0]
        except self._lv.libvirtError as exc:
            if is_no_domain(exc):
                return VMState.UNDEFINED
            raise translate(exc, f"{self.site}: state of {vm}") from None
        lv = self._lv
        return {
            lv.VIR_DOMAIN_RUNNING: VMState.RUNNING,
            lv.VIR_DOMAIN_BLOCKED: VMState.RUNNING,
            lv.VIR_DOMAIN_SHUTDOWN: VMState.RUNNING,  # still running, shutting down
            lv.VIR_DOMAIN_PAUSED: VMState.PAUSED,
            lv.VIR_DOMAIN_PMSUSPENDED: VMState.PAUSED,
            lv.VIR_DOMAIN_CRASHED: VMState.CRASHED,
        }.get(code, VMState.SHUTOFF)

    def localize(self, xml: str) -> tuple[str, builtins.list[str]]:
        """XML from the other site with its disk paths rewritten to this site's."""
        return remap_disks(xml, self.path_map)

    def define(self, xml: str) -> str:
        local, _ = self.localize(xml)
        try:
            existing = self.conn.lookupByName(domain_name(local))
            local = with_uuid(local, existing.UUIDString())
        except self._lv.libvirtError:
            pass  # a new domain
        dom = self._call("define", self.conn.defineXML, local)
        name: str = dom.name()
        return name

    def start(self, vm: str) -> None:
        dom = self._domain(vm)
        if self._call(f"is {vm} active", dom.isActive):
            return
        self._call(f"start {vm}", dom.create)

    def destroy(self, vm: str) -> None:
        dom = self._domain(vm)
        if not self._call(f"is {vm} active", dom.isActive):
            return
        self._call(f"destroy {vm}", dom.destroy)

    def shutdown(self, vm: str, timeout: float) -> ShutdownResult:
        """ACPI power button, pressed again every `SHUTDOWN_REPEAT` seconds (a guest still
        booting misses the first press), then destroy when `timeout` runs out."""
        dom = self._domain(vm)
        if not self._call(f"is {vm} active", dom.isActive):
            return ShutdownResult(graceful=True, seconds=0.0)
        start = self.clock.monotonic()
        pressed: float | None = None
        while self.clock.monotonic() - start < timeout:
            now = self.clock.monotonic()
            if pressed is None or now - pressed >= SHUTDOWN_REPEAT:
                pressed = now
                try:
                    dom.shutdown()
                except self._lv.libvirtError as exc:
                    if not self._call(f"is {vm} active", dom.isActive):
                        break  # it went down meanwhile
                    raise translate(exc, f"{self.site}: shut down {vm}") from None
            if not self._call(f"is {vm} active", dom.isActive):
                break
            self.clock.sleep(min(0.2, timeout))
        if self._call(f"is {vm} active", dom.isActive):
            self._call(f"destroy {vm}", dom.destroy)
            return ShutdownResult(False, self.clock.monotonic() - start)
        return ShutdownResult(True, self.clock.monotonic() - start)

    def undefine(self, vm: str) -> None:
        """Remove the persistent definition (a running VM keeps running, transient).
        NoSuchVM if undefined."""
        dom = self._domain(vm)
        if self._call(f"is {vm} persistent", dom.isPersistent):
            self._call(f"undefine {vm}", dom.undefine)

    def export_xml(self, vm: str) -> str:
        dom = self._domain(vm)
        flags = self._lv.VIR_DOMAIN_XML_INACTIVE | self._lv.VIR_DOMAIN_XML_MIGRATABLE
        xml: str = self._call(f"export {vm}", dom.XMLDesc, flags)
        return xml

    # --- live migration ------------------------------------------------------------
    def migrate_live(
        self,
        vm: str,
        dest: Hypervisor,
        options: MigrationOptions,
        progress: ProgressCallback | None = None,
    ) -> MigrationResult:
        if not isinstance(dest, LibvirtHypervisor):
            raise HypervisorError(
                f"cannot live-migrate from libvirt site {self.site} to a "
                f"{type(dest).__name__} ({dest.site})"
            )
        return migrate_between(self, vm, dest, options, progress)

    def migration_stream_uri(self) -> str:
        """Where the memory stream of a migration *to* this site goes."""
        host = urlsplit(self.peer_uri or "").hostname
        if not host:
            raise HypervisorError(f"site {self.site}: no host in peer URI {self.peer_uri!r}")
        return f"tcp://{host}"

    def is_incoming(self, vm: str) -> bool:
        """Paused because an incoming migration has not finished (the guest never ran
        here): safe to discard when the source still runs it."""
        try:
            state, reason = self.conn.lookupByName(vm).state()
        except self._lv.libvirtError:
            return False
        return bool(
            state == self._lv.VIR_DOMAIN_PAUSED
            and reason
            in (self._lv.VIR_DOMAIN_PAUSED_MIGRATION, self._lv.VIR_DOMAIN_PAUSED_STARTING_UP)
        )


__all__ = ["DEFAULT_URI", "LibvirtHypervisor", "NoSuchVM", "describe"]
