"""Lab layout and network commands, checked without touching the machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from drorch.lab.layout import LabLayout
from drorch.lab.network import LabNetwork
from drorch.lab.site import libvirtd_overrides, qemu_overrides
from drorch.testing.runner import Expect, ScriptedRunner


def test_layout_derives_names_addresses_and_uris(tmp_path: Path) -> None:
    lay = LabLayout(name="t", prefix="x", subnet="10.9.8", root=tmp_path)
    a, b = lay.sites
    assert (a.netns, a.address, a.veth) == ("xsiteA", "10.9.8.1", "xv-siteA")
    assert b.address == "10.9.8.2" and lay.wan_netns == "xwan"
    assert lay.socket("siteB") == tmp_path / "labs/t/sites/siteB/run/libvirt-sock"
    assert lay.local_uri("siteA") == f"qemu+unix:///system?socket={lay.socket('siteA')}"
    assert lay.peer_uri("siteB") == "qemu+tcp://10.9.8.2/system"
    assert lay.migration_uri("siteB") == "tcp://10.9.8.2"
    assert lay.image_dir == tmp_path / "images"  # shared by every lab instance
    with pytest.raises(KeyError, match="no site 'siteC'"):
        lay.site_dir("siteC")


def test_interface_names_must_fit_the_kernel_limit(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exceeds 15 characters"):
        LabLayout(prefix="much-too-long-", root=tmp_path)


def test_lab_dir_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DRORCH_LAB_DIR", str(tmp_path))
    assert LabLayout().image_dir == tmp_path / "images"


def test_site_configuration_has_the_lab_notes_settings(tmp_path: Path) -> None:
    lay = LabLayout(root=tmp_path, p2p_keepalive=(3, 4))
    qemu = qemu_overrides("10.77.0.2", lay)
    for line in (
        'user = "root"',
        "dynamic_ownership = 0",
        "cgroup_controllers = [ ]",
        'security_driver = "none"',
        'migration_address = "10.77.0.2"',
        "keepalive_interval = 3",
        "keepalive_count = 4",
    ):
        assert line in qemu.splitlines()
    daemon = libvirtd_overrides("10.77.0.2", lay).splitlines()
    assert 'listen_addr = "10.77.0.2"' in daemon and 'auth_tcp = "none"' in daemon


def rules(peer: str, verdict: str) -> str:
    return (
        "table inet drorch_partition {\n"
        "  chain out {\n"
        "    type filter hook output priority 0; policy accept;\n"
        f"    ip daddr {peer} meta l4proto tcp {verdict}\n"
        f"    ip daddr {peer} drop\n"
        "  }\n"
        "  chain in {\n"
        "    type filter hook input priority 0; policy accept;\n"
        f"    ip saddr {peer} drop\n"
        "  }\n"
        "}\n"
    )


@pytest.mark.parametrize(
    ("mode", "verdict"), [("reject", "reject with tcp reset"), ("drop", "drop")]
)
def test_nft_partition_cuts_both_sites_from_each_other(
    tmp_path: Path, mode: str, verdict: str
) -> None:
    lay = LabLayout(root=tmp_path, subnet="10.1.2")
    delete = ["nft", "delete", "table", "inet", "drorch_partition"]
    runner = ScriptedRunner(
        [
            Expect(["ip", "netns", "exec", "siteA", *delete], returncode=1),
            Expect(["ip", "netns", "exec", "siteA", "nft", "-f", "-"],
                   input=rules("10.1.2.2", verdict)),
            Expect(["ip", "netns", "exec", "siteB", *delete], returncode=1),
            Expect(["ip", "netns", "exec", "siteB", "nft", "-f", "-"],
                   input=rules("10.1.2.1", verdict)),
        ]
    )  # fmt: skip
    LabNetwork(lay, runner).partition(mode)  # type: ignore[arg-type]
    runner.assert_done()


def test_link_partition_takes_the_sites_wan_ports_down_and_heal_undoes_everything(
    tmp_path: Path,
) -> None:
    lay = LabLayout(root=tmp_path, prefix="p")
    delete = ["nft", "delete", "table", "inet", "drorch_partition"]
    runner = ScriptedRunner(
        [
            Expect(["ip", "-n", "pwan", "link", "set", "pv-siteA", "down"]),
            Expect(["ip", "-n", "pwan", "link", "set", "pv-siteB", "down"]),
            Expect(["ip", "netns", "exec", "psiteA", *delete], returncode=1),
            Expect(["ip", "-n", "pwan", "link", "set", "pv-siteA", "up"]),
            Expect(["ip", "netns", "exec", "psiteB", *delete], returncode=1),
            Expect(["ip", "-n", "pwan", "link", "set", "pv-siteB", "up"]),
        ]
    )
    net = LabNetwork(lay, runner)
    net.partition("link")
    net.heal()
    runner.assert_done()


def test_unknown_partition_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown partition mode 'flaky'"):
        LabNetwork(LabLayout(root=tmp_path), ScriptedRunner()).partition("flaky")  # type: ignore[arg-type]
