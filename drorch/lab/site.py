"""One lab site: a libvirtd and a virtlogd inside the site's network namespace and a
private mount namespace, so each site has its own /etc, /run, /var/lib, /var/cache and
/var/log libvirt.

The private directories are created once and kept (libvirt's QEMU capability cache makes
the next start fast); the configuration is regenerated at every start from the host's
pristine copy plus the lab overrides, so changing the layout takes effect.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from drorch.clock import Clock
from drorch.lab.layout import LabLayout
from drorch.lab.processes import live_pid, stop_pid
from drorch.remote.base import CommandRunner
from drorch.wait import wait_until


class SiteError(Exception):
    """A site daemon could not be started or stopped."""


def libvirtd_overrides(address: str, layout: LabLayout) -> str:
    interval, count = layout.p2p_keepalive
    return "\n".join(
        [
            f"keepalive_interval = {interval}",
            f"keepalive_count = {count}",
            "# --- drorch lab overrides ---",
            "listen_tls = 0",
            "listen_tcp = 1",
            f'listen_addr = "{address}"',
            'auth_tcp = "none"',
            'auth_unix_rw = "none"',
            'unix_sock_group = "root"',
            'unix_sock_rw_perms = "0770"',
            'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"',
            "",
        ]
    )


def qemu_overrides(address: str, layout: LabLayout) -> str:
    lo, hi = layout.migration_ports
    interval, count = layout.p2p_keepalive
    return "\n".join(
        [
            "# --- drorch lab overrides (see LAB-NOTES: root, no cgroups, no labels) ---",
            'user = "root"',
            'group = "root"',
            "dynamic_ownership = 0",
            "cgroup_controllers = [ ]",
            'security_driver = "none"',
            f'migration_address = "{address}"',
            f'migration_host = "{address}"',
            f"migration_port_min = {lo}",
            f"migration_port_max = {hi}",
            f"keepalive_interval = {interval}",
            f"keepalive_count = {count}",
            "",
        ]
    )


class LabSiteDaemons:
    def __init__(self, layout: LabLayout, site: str, runner: CommandRunner, clock: Clock) -> None:
        self.layout = layout
        self.site = layout.site(site)
        self.runner = runner
        self.clock = clock
        self.dirs = layout.private_dirs(site)
        self.run_dir = layout.run_dir(site)

    @property
    def pid_files(self) -> dict[str, Path]:
        return {d: self.run_dir / f"{d}.pid" for d in ("libvirtd", "virtlogd")}

    def pids(self) -> dict[str, int | None]:
        return {name: live_pid(f, name) for name, f in self.pid_files.items()}

    def is_up(self) -> bool:
        return all(self.pids().values()) and self.layout.socket(self.site.name).exists()

    def prepare(self) -> None:
        etc = self.dirs["/etc/libvirt"]
        if not (etc / ".drorch-lab").exists():
            shutil.rmtree(etc, ignore_errors=True)
            shutil.copytree("/etc/libvirt", etc, symlinks=True)
            for pattern in ("qemu/*.xml", "qemu/autostart/*", "qemu/networks/autostart/*"):
                for stale in etc.glob(pattern):
                    stale.unlink()
            for name in ("libvirtd.conf", "qemu.conf"):
                shutil.copyfile(etc / name, etc / f"{name}.pristine")
            # an empty /var/lib/libvirt: libvirtd creates what it needs (the host's may
            # hold gigabytes of images, never copied)
            self.dirs["/var/lib/libvirt"].mkdir(parents=True, exist_ok=True)
            (etc / ".drorch-lab").write_text("private /etc/libvirt of a drorch lab site\n")
        for d in self.dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        address = self.site.address
        (etc / "libvirtd.conf").write_text(
            (etc / "libvirtd.conf.pristine").read_text() + libvirtd_overrides(address, self.layout)
        )
        (etc / "qemu.conf").write_text(
            (etc / "qemu.conf.pristine").read_text() + qemu_overrides(address, self.layout)
        )

    def up(self, timeout: float = 60.0) -> None:
        """Start the daemons unless they already run; wait until libvirtd answers."""
        if self.is_up():
            return
        self.down()
        self.prepare()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        targets = " ".join(self.dirs)
        binds = " && ".join(f"mount --bind {host} {target}" for target, host in self.dirs.items())
        mounts = f"mkdir -p {targets} && {binds}"
        script = (
            f"{mounts} && virtlogd -d --pid-file /run/libvirt/virtlogd.pid"
            " && libvirtd -d --listen --pid-file /run/libvirt/libvirtd.pid"
        )
        in_site = ["ip", "netns", "exec", self.site.netns, "unshare", "-m"]
        self.runner.run(
            [*in_site, "--propagation", "private", "sh", "-c", script],
            timeout=timeout,
            check=True,
        )
        uri = self.layout.local_uri(self.site.name)
        last = ""

        def answers() -> bool:
            nonlocal last
            if not self.layout.socket(self.site.name).exists():
                return False
            probe = self.runner.run(["virsh", "-c", uri, "uri"], timeout=timeout)
            last = probe.stderr.strip()
            return probe.ok

        if wait_until(self.clock, answers, self.clock.monotonic() + timeout, interval=0.2):
            return
        log = self.dirs["/var/log/libvirt"] / "libvirtd.log"
        raise SiteError(
            f"{self.site.name}: libvirtd did not answer on {uri} within {timeout:g} s"
            f" ({last or 'no socket'}); see {log}"
        )

    def down(self) -> list[str]:
        """Destroy running guests, stop QEMU, libvirtd and virtlogd - by PID only."""
        done: list[str] = []
        pids = self.pids()
        if pids["libvirtd"] and self.layout.socket(self.site.name).exists():
            uri = self.layout.local_uri(self.site.name)
            listed = self.runner.run(["virsh", "-c", uri, "list", "--name"], timeout=15)
            for dom in listed.stdout.split() if listed.ok else []:
                self.runner.run(["virsh", "-c", uri, "destroy", dom], timeout=15)
                done.append(f"destroyed guest {dom}")
        for pid_file in sorted((self.run_dir / "qemu").glob("*.pid")):
            pid = live_pid(pid_file, "qemu-system")
            if pid:
                done.append(stop_pid(pid, "qemu-system", self.clock, grace=5.0))
        for name in ("libvirtd", "virtlogd"):
            pid = pids[name]
            if pid:
                done.append(stop_pid(pid, name, self.clock))
        return done
