"""Rendered resource files must pass the real `drbdadm dump` and give a usable plan."""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from drorch.model.types import DrbdOptions, Node, ReplicationMode
from drorch.replication.drbd.render import RenderError, peers, render
from tests.drbd.clusters import two_site_cluster

A, S = ReplicationMode.ASYNC, ReplicationMode.SYNC


def drbdadm(res_file: Path, host: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run drbdadm as if on `host` (DRBD matches `on HOST` against the hostname)."""
    script = 'hostname "$1" && shift && exec drbdadm "$@"'
    proc = subprocess.run(
        ["unshare", "-u", "sh", "-c", script, "sh", host, "-c", str(res_file), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    # this machine has no modinfo/modprobe; drbdadm mentions it and carries on
    proc.stderr = "\n".join(ln for ln in proc.stderr.splitlines() if "modinfo: not found" not in ln)
    return proc


COMBINATIONS = {
    "sync-defaults": (S, DrbdOptions(), None, None),
    "async-pull-ahead": (A, DrbdOptions(on_congestion="pull-ahead"), None, None),
    "async-disconnect-on-congestion": (A, DrbdOptions(on_congestion="disconnect"), None, None),
    "async-block": (A, DrbdOptions(), None, None),
    "quorum-suspend-io": (S, DrbdOptions(quorum="majority"), None, None),
    "quorum-io-error": (S, DrbdOptions(quorum="majority", on_no_quorum="io-error"), None, None),
    "after-sb-automatic": (
        S,
        DrbdOptions(
            after_sb_0pri="discard-zero-changes",
            after_sb_1pri="discard-secondary",
            after_sb_2pri="call-pri-lost-after-sb",
        ),
        None,
        None,
    ),
    "after-sb-discard-local": (S, DrbdOptions(after_sb_0pri="discard-local"), None, None),
    "tuned-timeouts-algs": (
        S,
        DrbdOptions(
            device="/dev/drbd7",
            ping_timeout=1.5,
            timeout=3.0,
            ko_count=0,
            verify_alg="crc32c",
            csums_alg="md5",
        ),
        None,
        None,
    ),
    "ssh-nodes": (S, DrbdOptions(), Node("a1", "root@10.1.0.1:22"), Node("b1", "root@10.2.0.1")),
    "replication-network-ipv6": (
        S,
        DrbdOptions(),
        Node("a1", replication_address="fd00::1"),
        Node("b1", replication_address="fd00::2"),
    ),
}


@pytest.mark.parametrize("case", sorted(COMBINATIONS))
def test_render_passes_real_drbdadm_dump(case: str, tmp_path: Path) -> None:
    mode, opts, a1, b1 = COMBINATIONS[case]
    cluster = two_site_cluster(mode=mode, drbd=opts, a1=a1, b1=b1)
    text = render(cluster, cluster.volumes[0])
    res = tmp_path / "r0.res"
    res.write_text(text)
    for host in ("a1", "b1"):
        dump = drbdadm(res, host, "dump", "r0")
        assert dump.returncode == 0, dump.stderr
        assert "resource r0" in dump.stdout
    plan = drbdadm(res, "a1", "-d", "up", "r0")
    assert plan.returncode == 0, plan.stderr
    expected = [
        "--auto-promote=no",
        f"--protocol={'C' if mode is S else 'A'}",
        "--fencing=resource-only",
        f"--after-sb-0pri={opts.after_sb_0pri}",
        f"--after-sb-1pri={opts.after_sb_1pri}",
        f"--after-sb-2pri={opts.after_sb_2pri}",
        f"--ping-timeout={round(opts.ping_timeout * 10)}",
        f"--timeout={round(opts.timeout * 10)}",
        f"--verify-alg={opts.verify_alg}",
        f"--csums-alg={opts.csums_alg}",
    ]
    if opts.ko_count != 7:
        expected.append(f"--ko-count={opts.ko_count}")
    if opts.on_congestion != "block":
        expected += [f"--on-congestion={opts.on_congestion}", "--congestion-fill=64M"]
    if opts.quorum != "off":
        expected += [f"--quorum={opts.quorum}", f"--on-no-quorum={opts.on_no_quorum}"]
    for flag in expected:
        assert flag in plan.stdout, f"{flag} missing from plan:\n{plan.stdout}"
    minor = opts.device.removeprefix("/dev/drbd")
    assert f"drbdsetup new-minor r0 {minor} 0" in plan.stdout
    assert "drbdsetup attach" in plan.stdout and "/dev/vg0/r0" in plan.stdout
    assert "drbdsetup connect r0 1" in plan.stdout


def test_render_contents_sync_defaults() -> None:
    cluster = two_site_cluster()
    text = render(cluster, cluster.volumes[0], config_path="/etc/drorch/c1.yaml")
    for line in (
        "resource r0 {",
        "protocol C;",
        "ping-timeout 5;",
        "timeout 60;",
        "ko-count 7;",
        "after-sb-0pri disconnect;",
        "after-sb-1pri disconnect;",
        "after-sb-2pri disconnect;",
        "fencing resource-only;",
        'fence-peer "drorch drbd fence-peer -c /etc/drorch/c1.yaml";',
        "on a1 {",
        "node-id 0;",
        "address ipv4 127.0.0.1:7789;",
        "on b1 {",
        "node-id 1;",
        "address ipv4 127.0.0.2:7789;",
        "meta-disk internal;",
        "hosts a1 b1;",
    ):
        assert line in text, line
    assert "quorum" not in text.split("net {")[0]
    assert "auto-promote no;" in text.split("net {")[0]


def test_peers_and_addresses() -> None:
    cluster = two_site_cluster(a1=Node("a1", "ops@[fd00::9]:2222"), b1=Node("b1", "db.b:22"))
    got = [(p.node, p.node_id, p.address, p.family) for p in peers(cluster, cluster.volumes[0])]
    assert got == [("a1", 0, "fd00::9", "ipv6"), ("b1", 1, "db.b", "ipv4")]


def test_host_names_are_refused_because_drbd_needs_ip_addresses() -> None:
    cluster = two_site_cluster(b1=Node("b1", "root@site-b:22"))
    with pytest.raises(RenderError) as err:
        render(cluster, cluster.volumes[0])
    assert err.value.problems == [
        "b1: DRBD needs an IP address, not the host name 'site-b'; set replication_address"
    ]


BAD = {
    "sync-pull-ahead": (
        S,
        DrbdOptions(on_congestion="pull-ahead"),
        "on_congestion pull-ahead needs mode async (DRBD protocol A)",
    ),
    "bad-after-sb": (
        S,
        DrbdOptions(after_sb_2pri="discard-secondary"),
        "after_sb_2pri 'discard-secondary' is not one of",
    ),
    "bad-quorum": (S, DrbdOptions(quorum="most"), "quorum 'most' is not one of"),
    "bad-on-no-quorum": (S, DrbdOptions(on_no_quorum="panic"), "on_no_quorum 'panic'"),
    "bad-device": (S, DrbdOptions(device="/dev/sdb"), "is not a /dev/drbdN device"),
    "bad-timeout": (S, DrbdOptions(timeout=120.0), "timeout 120.0s is outside"),
    "bad-alg": (S, DrbdOptions(verify_alg="sha256; evil"), "is not a kernel crypto"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_render_refuses_bad_options_with_reason(case: str) -> None:
    mode, opts, reason = BAD[case]
    cluster = two_site_cluster(mode=mode, drbd=opts)
    with pytest.raises(RenderError) as err:
        render(cluster, cluster.volumes[0])
    assert any(reason in p for p in err.value.problems), err.value.problems


def test_render_refuses_one_sided_and_mixed_family() -> None:
    cluster = two_site_cluster(paths={"a1": "/dev/vg0/r0"})
    with pytest.raises(RenderError, match="at least two nodes, has 1"):
        render(cluster, cluster.volumes[0])
    cluster = two_site_cluster(b1=Node("b1", replication_address="fd00::2"))
    with pytest.raises(RenderError, match="mix IPv4 and IPv6"):
        render(cluster, cluster.volumes[0])
    cluster = two_site_cluster(paths={"a1": "/dev/x", "b1": "rel/path", "zz": "/dev/y"})
    with pytest.raises(RenderError) as err:
        render(cluster, cluster.volumes[0])
    assert err.value.problems == [
        "paths names unknown node 'zz'",
        "backing disk 'rel/path' of b1 is not an absolute path",
    ]


def test_drbdadm_rejects_a_broken_file(tmp_path: Path) -> None:
    """The dump check can fail: a corrupted rendering is caught by real drbdadm."""
    cluster = two_site_cluster()
    text = render(cluster, cluster.volumes[0]).replace("resource-only", "resource-onlyy")
    res = tmp_path / "r0.res"
    res.write_text(text)
    dump = drbdadm(res, "a1", "dump", "r0")
    assert dump.returncode != 0
    assert "resource-onlyy" in dump.stderr


def test_pyrepl_volume_is_not_rendered() -> None:
    from drorch.model.types import Driver

    cluster = two_site_cluster()
    vol = replace(cluster.volumes[0], driver=Driver.PYREPL)
    with pytest.raises(RenderError, match="driver is pyrepl, not drbd"):
        render(cluster, vol)


def _every_supported_combination() -> list[tuple[ReplicationMode, DrbdOptions]]:
    from drorch.replication.drbd.render import AFTER_SB_0PRI, AFTER_SB_1PRI, AFTER_SB_2PRI

    transport = [(S, "block"), (A, "block"), (A, "pull-ahead"), (A, "disconnect")]
    quorum = [("off", "suspend-io")] + [
        (q, n) for q in ("majority", "all") for n in ("suspend-io", "io-error")
    ]
    out = []
    for mode, congestion in transport:
        for q, on_no_quorum in quorum:
            for sb0 in sorted(AFTER_SB_0PRI):
                for sb1 in sorted(AFTER_SB_1PRI):
                    for sb2 in sorted(AFTER_SB_2PRI):
                        opts = DrbdOptions(
                            device=f"/dev/drbd{len(out)}",
                            on_congestion=congestion,
                            quorum=q,
                            on_no_quorum=on_no_quorum,
                            after_sb_0pri=sb0,
                            after_sb_1pri=sb1,
                            after_sb_2pri=sb2,
                        )
                        out.append((mode, opts))
    return out


def test_every_option_combination_passes_drbdadm_dump(tmp_path: Path) -> None:
    """The full product of every supported mode/congestion/quorum/split-brain setting,
    one resource each, in one file that real drbdadm parses in one go."""
    combos = _every_supported_combination()
    assert len(combos) == 4 * 5 * 7 * 5 * 3
    texts = []
    for i, (mode, opts) in enumerate(combos):
        cluster = two_site_cluster(mode=mode, drbd=opts, port=10000 + i)
        vol = replace(cluster.volumes[0], name=f"r{i}")
        texts.append(render(cluster, vol))
    res = tmp_path / "all.res"
    res.write_text("".join(texts))
    dump = drbdadm(res, "a1", "dump", "all")
    assert dump.returncode == 0, dump.stderr[:2000]
    assert dump.stdout.count("\nresource r") == len(combos)
    # drbdadm read what was meant, not just something that parses
    protocols = re.findall(r"\n\s+protocol\s+([AC]);", dump.stdout)
    assert protocols == ["A" if mode is A else "C" for mode, _ in combos]
    fills = re.findall(r"\n\s+congestion-fill\s+64M;", dump.stdout)
    assert len(fills) == sum(1 for _, o in combos if o.on_congestion != "block")
    last_mode, last = combos[-1]
    tail = dump.stdout[dump.stdout.rindex(f"resource r{len(combos) - 1} ") :]
    for key, value in (
        ("protocol", "A" if last_mode is A else "C"),
        ("on-congestion", last.on_congestion),
        ("after-sb-0pri", last.after_sb_0pri),
        ("after-sb-1pri", last.after_sb_1pri),
        ("after-sb-2pri", last.after_sb_2pri),
        ("quorum", last.quorum),
        ("on-no-quorum", last.on_no_quorum),
    ):
        assert re.search(rf"\n\s+{key}\s+{re.escape(value)};", tail), (key, value)


# every drbdadm command line the driver issues -> what real drbdadm -d says it would run
DRIVER_COMMANDS = {
    ("up",): "drbdsetup new-resource r0 0",
    ("down",): "drbdsetup down r0",
    ("primary",): "drbdsetup primary r0",
    ("primary", "--force"): "drbdsetup primary r0 --force",
    ("secondary",): "drbdsetup secondary r0",
    ("connect",): "drbdsetup connect r0 1",
    ("connect", "--discard-my-data"): "drbdsetup connect r0 1 --discard-my-data",
    ("disconnect",): "drbdsetup disconnect r0 1",
    ("verify",): "drbdsetup verify r0 1 0",
    ("invalidate",): "drbdsetup invalidate 0",
    ("create-md",): "drbdmeta 0 v09 /dev/vg0/r0 internal create-md 1",
    ("create-md", "--force"): "drbdmeta 0 v09 /dev/vg0/r0 internal create-md 1 --force",
    ("adjust",): "drbdsetup new-resource r0 0",
    ("net-options", "--allow-two-primaries=yes"): "drbdsetup net-options r0 1",
    ("net-options", "--allow-two-primaries=no"): "drbdsetup net-options r0 1",
    ("net-options", "--protocol=A"): "drbdsetup net-options r0 1",
    ("net-options", "--protocol=C"): "drbdsetup net-options r0 1",
}


@pytest.mark.parametrize("args", sorted(DRIVER_COMMANDS))
def test_driver_command_lines_are_valid_drbdadm(args: tuple[str, ...], tmp_path: Path) -> None:
    """Real drbdadm (-d: print, do not run) accepts each command line the driver builds."""
    from drorch.replication.drbd.ops import Op, drbdadm_argv

    cluster = two_site_cluster()
    res = tmp_path / "r0.res"
    res.write_text(render(cluster, cluster.volumes[0]))
    argv = drbdadm_argv(Op(args[0]), "r0", *args[1:], config=str(res))
    assert argv[:3] == ["drbdadm", "-c", str(res)]
    plan = drbdadm(res, "a1", "-d", *argv[3:])
    assert plan.returncode == 0, plan.stderr
    lines = plan.stdout.splitlines()
    assert any(line.startswith(DRIVER_COMMANDS[args]) for line in lines), plan.stdout
    if args[0] == "net-options":  # the option reaches drbdsetup as given (last one wins)
        assert [ln for ln in lines if ln.startswith("drbdsetup net-options")][-1].endswith(
            args[1]
        ), plan.stdout


def test_fencing_dont_care_renders_no_handlers_and_passes_drbdadm(tmp_path: Path) -> None:
    from dataclasses import replace

    cluster = two_site_cluster()
    volume = replace(cluster.volumes[0], fencing="dont-care")
    text = render(cluster, volume)
    assert "fencing dont-care;" in text and "fence-peer" not in text
    res = tmp_path / "r0.res"
    res.write_text(text)
    dump = drbdadm(res, "a1", "dump", "r0")
    assert dump.returncode == 0, dump.stderr
    plan = drbdadm(res, "a1", "-d", "up", "r0")
    assert plan.returncode == 0 and "--fencing=resource-only" not in plan.stdout, plan.stdout
