"""Daemon config: every error as FILE:LINE:COL with exit code 2, before any state is touched."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from drorch.cli.quorumd_cmd import quorumd
from drorch.model.reports import ConfigError
from drorch.quorum.config import load_config, parse_listen
from tests.quorum.conftest import Pki

GOOD = """\
listen: 127.0.0.1:7405
cert: server.crt
key: server.key
state_file: quorumd.state
heartbeat_ms: 1000
lease_ms: 3000
switch_delay_ms: 2000
clusters:
  c1:
    sites:
      A: [c1-a.crt]          # public certificates copied from the site's nodes
      B: [c1-b.crt]
"""


@pytest.fixture
def folder(pki: Pki, tmp_path: Path) -> Path:
    for name in ("server", "c1-a", "c1-b", "c2-a"):
        shutil.copy(pki.cert(name), tmp_path)
    shutil.copy(pki.key("server"), tmp_path)
    return tmp_path


def write(folder: Path, text: str) -> Path:
    path = folder / "quorumd.yaml"
    path.write_text(text)
    return path


def test_the_issue_example_loads_with_paths_relative_to_the_config(folder: Path, pki: Pki) -> None:
    cfg = load_config(write(folder, GOOD))
    assert (cfg.host, cfg.port) == ("127.0.0.1", 7405)
    assert cfg.cert == folder / "server.crt"
    assert cfg.state_file == folder / "quorumd.state"
    assert (cfg.heartbeat_ms, cfg.lease_ms, cfg.switch_delay_ms) == (1000, 3000, 2000)
    assert cfg.idle_deadline_ms == 3000
    pins = cfg.pins_by_fingerprint()
    assert pins[pki.fingerprints["c1-a"]] == {("c1", "A")}
    assert pins[pki.fingerprints["c1-b"]] == {("c1", "B")}


def errors_of(folder: Path, text: str) -> list[str]:
    path = write(folder, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(r) for r in info.value.reports]


def test_missing_certificate_points_at_the_list_entry(folder: Path) -> None:
    text = GOOD.replace("B: [c1-b.crt]", "B: [c1-b.crt,\n          gone.crt]")
    (err,) = errors_of(folder, text)
    assert err.startswith(f"{folder / 'quorumd.yaml'}:13:11: ")
    assert "gone.crt does not exist" in err


def test_heartbeat_not_below_lease_is_an_error(folder: Path) -> None:
    (err,) = errors_of(folder, GOOD.replace("heartbeat_ms: 1000", "heartbeat_ms: 3000"))
    assert err.startswith(f"{folder / 'quorumd.yaml'}:5:15: ")
    assert "heartbeat_ms (3000) must be less than lease_ms (3000)" in err


@pytest.mark.parametrize(
    ("sites", "count"),
    [
        ("      A: [c1-a.crt]\n", 1),
        ("      A: [c1-a.crt]\n      B: [c1-b.crt]\n      C: [c2-a.crt]\n", 3),
    ],
)
def test_a_cluster_needs_exactly_two_sites(folder: Path, sites: str, count: int) -> None:
    text = GOOD.split("      A:")[0] + sites
    (err,) = errors_of(folder, text)
    assert err.startswith(f"{folder / 'quorumd.yaml'}:10:5: ")
    assert f"has {count} site(s)" in err


def test_unknown_keys_are_errors_where_they_are(folder: Path) -> None:
    text = GOOD.replace("lease_ms: 3000\n", "lease_ms: 3000\nleese_ms: 5\n")
    text = text.replace("    sites:\n", "    colour: red\n    sites:\n")
    errs = errors_of(folder, text)
    assert errs[0].startswith(f"{folder / 'quorumd.yaml'}:7:1: ") and "'leese_ms'" in errs[0]
    assert errs[1].startswith(f"{folder / 'quorumd.yaml'}:11:5: ") and "'colour'" in errs[1]


def test_every_problem_is_reported_at_once(folder: Path) -> None:
    text = (
        GOOD.replace("heartbeat_ms: 1000", "heartbeat_ms: 5000")
        .replace("[c1-a.crt]", "[nope.crt]")
        .replace("listen: 127.0.0.1:7405", "listen: 127.0.0.1:99999")
    )
    errs = errors_of(folder, text)
    assert len(errs) == 3
    assert [e.split(": ")[0].rsplit(":", 2)[1] for e in errs] == ["1", "5", "11"]


def test_one_certificate_for_both_sites_is_refused(folder: Path) -> None:
    (err,) = errors_of(folder, GOOD.replace("[c1-b.crt]", "[c1-a.crt]"))
    assert "pin the same certificate" in err


def test_a_file_that_is_not_a_certificate(folder: Path) -> None:
    (folder / "junk.crt").write_text("hello")
    (err,) = errors_of(folder, GOOD.replace("[c1-b.crt]", "[junk.crt]"))
    assert ":12:" in err and "is not a certificate" in err


def test_key_that_does_not_match_the_cert(folder: Path, pki: Pki) -> None:
    shutil.copy(pki.key("c1-a"), folder / "other.key")
    (err,) = errors_of(folder, GOOD.replace("key: server.key", "key: other.key"))
    assert ":3:6: " in err and "cannot use cert" in err


def test_yaml_syntax_error_has_a_position(folder: Path) -> None:
    (err,) = errors_of(folder, GOOD.replace("clusters:", "clusters: [oops"))
    assert err.startswith(f"{folder / 'quorumd.yaml'}:")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7405", ("127.0.0.1", 7405)),
        ("[::1]:9", ("::1", 9)),
        ("witness.example", ("witness.example", 7405)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["::1:80", "host:0", "host:x", ":80", "[::1"])
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


def test_cli_exits_2_with_positions_and_touches_no_state(folder: Path) -> None:
    path = write(folder, GOOD.replace("heartbeat_ms: 1000", "heartbeat_ms: 4000"))
    result = CliRunner().invoke(quorumd, ["--config", str(path), "--init"])
    assert result.exit_code == 2
    assert f"{path}:5:15: " in result.output
    assert not (folder / "quorumd.state").exists()


def test_a_single_certificate_may_be_written_without_a_list(folder: Path, pki: Pki) -> None:
    cfg = load_config(write(folder, GOOD.replace("A: [c1-a.crt]", "A: c1-a.crt")))
    assert cfg.clusters["c1"]["A"].fingerprints == {pki.fingerprints["c1-a"]}


def test_cli_missing_config_file_is_a_positioned_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    result = CliRunner().invoke(quorumd, ["--config", str(path)])
    assert result.exit_code == 2
    assert f"{path}:1:1: " in result.output and "cannot read" in result.output


def test_cli_init_into_a_missing_folder_exits_1(folder: Path) -> None:
    path = write(folder, GOOD.replace("state_file: quorumd.state", "state_file: no/such/q.state"))
    result = CliRunner().invoke(quorumd, ["--config", str(path), "--init"])
    assert result.exit_code == 1
    assert "cannot write the state file" in result.output
