"""The lab guest image: the Debian cloud kernel plus a busybox initramfs.

The kernel comes from `apt-get download linux-image-<abi>-cloud-amd64` (falling back to a
copy already in /var/cache/apt/archives) and is unpacked with `dpkg-deb -x`. The initramfs
holds a static busybox, a few kernel modules (virtio_blk, softdog) and `init.sh`, which
prints `HEARTBEAT n` on the serial console. Both are cached in the lab's image directory;
the initramfs is keyed by a digest of what went into it, so editing init.sh rebuilds it.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from drorch.remote.base import CommandRunner

KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
APT_ARCHIVES = Path("/var/cache/apt/archives")
BUSYBOX = Path("/bin/busybox")
APPLETS = (
    *("sh", "echo", "sleep", "mount", "cat", "cut", "date", "uptime", "hostname", "ip"),
    *("insmod", "dd", "head", "tr", "grep", "sync", "ls", "poweroff", "awk", "acpid", "mkdir"),
    *("printf", "chmod"),
)
# Kernel modules the initramfs carries, relative to lib/modules/<version>/kernel/drivers.
MODULES = (
    "virtio/virtio_ring",
    "virtio/virtio",
    "virtio/virtio_pci_legacy_dev",
    "virtio/virtio_pci_modern_dev",
    "virtio/virtio_pci",
    "block/virtio_blk",
    "watchdog/watchdog",
    "watchdog/softdog",
    "acpi/button",
    "input/evdev",
)


class ImageError(Exception):
    """The guest image could not be built (the message says which step failed)."""


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initrd: Path


def init_script() -> str:
    return resources.files("drorch.lab").joinpath("init.sh").read_text()


class ImageBuilder:
    def __init__(
        self, image_dir: Path, runner: CommandRunner, archives: Path = APT_ARCHIVES
    ) -> None:
        self.image_dir = image_dir
        self.runner = runner
        self.archives = archives  # where apt keeps downloaded .debs (the offline fallback)

    def ensure(self) -> GuestImage:
        """Build what is missing; return the cached image."""
        self.image_dir.mkdir(parents=True, exist_ok=True)
        kernel_tree = self._kernel_tree()
        kernel = self.image_dir / "vmlinuz"
        if not kernel.exists():
            found = sorted((kernel_tree / "boot").glob("vmlinuz-*"))
            if not found:
                raise ImageError(f"no boot/vmlinuz-* in {kernel_tree}")
            shutil.copyfile(found[-1], kernel)
        return GuestImage(kernel=kernel, initrd=self._initramfs(kernel_tree))

    # --- kernel --------------------------------------------------------------------
    def _kernel_tree(self) -> Path:
        tree = self.image_dir / "kernel"
        if (tree / "boot").is_dir():
            return tree
        deb = self.kernel_deb()
        partial = self.image_dir / "kernel.partial"
        shutil.rmtree(partial, ignore_errors=True)
        self.runner.run(["dpkg-deb", "-x", str(deb), str(partial)], timeout=300, check=True)
        partial.rename(tree)
        return tree

    def kernel_deb(self) -> Path:
        """The kernel .deb: cached, else downloaded, else apt's archive (offline)."""
        debs = self.image_dir / "debs"
        debs.mkdir(exist_ok=True)
        cached = sorted(debs.glob("linux-image-*-cloud-amd64_*.deb"))
        if cached:
            return cached[-1]
        package = self.kernel_package()
        download = f"cd {shlex.quote(str(debs))} && apt-get download {shlex.quote(package)}"
        got = self.runner.run(["sh", "-c", download], timeout=600)
        cached = sorted(debs.glob("linux-image-*-cloud-amd64_*.deb"))
        if got.ok and cached:
            return cached[-1]
        archived = sorted(glob.glob(str(self.archives / "linux-image-*-cloud-amd64_*.deb")))
        if archived:
            return Path(archived[-1])
        raise ImageError(
            f"apt-get download {package} failed ({got.stderr.strip() or got.returncode}) and "
            f"no linux-image-*-cloud-amd64 .deb is in {self.archives}"
        )

    def kernel_package(self) -> str:
        """The versioned package the meta package depends on, e.g.
        linux-image-6.1.0-56-cloud-amd64."""
        out = self.runner.run(["apt-cache", "depends", KERNEL_META_PACKAGE], check=True).stdout
        for line in out.splitlines():
            dep = line.strip().removeprefix("Depends:").strip()
            if line.strip().startswith("Depends:") and dep.startswith("linux-image-"):
                return dep
        raise ImageError(f"apt-cache depends {KERNEL_META_PACKAGE} names no linux-image package")

    # --- initramfs -----------------------------------------------------------------
    def _initramfs(self, kernel_tree: Path) -> Path:
        module_root = self._module_root(kernel_tree)
        script = init_script()
        digest = hashlib.sha256()
        digest.update(script.encode())
        digest.update(BUSYBOX.read_bytes())
        for m in MODULES:
            digest.update((module_root / f"{m}.ko").read_bytes())
        out = self.image_dir / f"initramfs-{digest.hexdigest()[:12]}.cpio.gz"
        if out.exists():
            return out
        with tempfile.TemporaryDirectory(dir=self.image_dir) as tmp:
            root = Path(tmp) / "root"
            for d in ("bin", "proc", "sys", "dev", "tmp", "mod"):
                (root / d).mkdir(parents=True)
            shutil.copy2(BUSYBOX, root / "bin" / "busybox")
            for applet in APPLETS:
                (root / "bin" / applet).symlink_to("busybox")
            for m in MODULES:
                shutil.copyfile(module_root / f"{m}.ko", root / "mod" / f"{Path(m).name}.ko")
            init = root / "init"
            init.write_text(script)
            init.chmod(0o755)
            self.runner.run(
                ["sh", "-c", f"cd {root} && find . | cpio -o -H newc --quiet > ../initramfs.cpio"],
                timeout=60,
                check=True,
            )
            raw = (Path(tmp) / "initramfs.cpio").read_bytes()
            partial = out.with_suffix(".partial")
            partial.write_bytes(gzip.compress(raw, compresslevel=6))
            partial.rename(out)
        return out

    @staticmethod
    def _module_root(kernel_tree: Path) -> Path:
        versions = sorted((kernel_tree / "lib" / "modules").glob("*"))
        if not versions:
            raise ImageError(f"no lib/modules/<version> in {kernel_tree}")
        root = versions[-1] / "kernel" / "drivers"
        missing = [m for m in MODULES if not (root / f"{m}.ko").exists()]
        if missing:
            raise ImageError(f"kernel package lacks modules: {', '.join(missing)}")
        return root
