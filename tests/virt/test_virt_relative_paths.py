"""The repository's lab files name no one machine's paths: relative paths (libvirt
sockets included) are resolved against the config file's folder."""

from __future__ import annotations

import re
from pathlib import Path

from drorch.lab.cluster_config import lab_cluster_yaml
from drorch.lab.layout import LabLayout
from drorch.virt.libvirt_conn import socket_relative_to


def test_lab_files_hold_no_absolute_paths(repo_root: Path) -> None:
    for f in sorted((repo_root / "lab").glob("*.yaml")):
        body = "\n".join(ln for ln in f.read_text().splitlines() if not ln.lstrip().startswith("#"))
        found = re.findall(r"(?<![\w:/])/(?:work|root|home|tmp)/\S*", body)
        found += re.findall(r"socket=/\S*", body)
        assert not found, f"{f.name} names paths of one machine: {found}"


def test_lab_libvirt_yaml_is_the_generated_one(repo_root: Path) -> None:
    layout = LabLayout(root=repo_root / ".cache" / "lab", name="default")
    expected = lab_cluster_yaml(layout, relative_to=repo_root / "lab")
    assert (repo_root / "lab" / "libvirt.yaml").read_text() == expected


def test_socket_relative_to() -> None:
    def absolute(p: str) -> str:
        return f"/etc/drorch/{p}"

    assert socket_relative_to("qemu+unix:///system?socket=run/sock", absolute) == (
        "qemu+unix:///system?socket=/etc/drorch/run/sock"
    )
    assert socket_relative_to("qemu+unix:///system?socket=/abs/sock", absolute) == (
        "qemu+unix:///system?socket=/abs/sock"
    )
    assert socket_relative_to("qemu:///system", absolute) == "qemu:///system"
    assert socket_relative_to("qemu+unix:///system?mode=x&socket=s", absolute) == (
        "qemu+unix:///system?mode=x&socket=/etc/drorch/s"
    )
