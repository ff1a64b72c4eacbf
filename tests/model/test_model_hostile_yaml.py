"""Config files cannot hang drorch: size, alias-expansion and nesting limits, clear
messages for tabs, binary files and non-string keys, and a fuzzer whose only allowed
outcomes are success or a `file:line:col` report, each within a time bound."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drorch.model.loader import load_cluster
from drorch.model.reports import ConfigError
from drorch.quorum.config import load_config as load_daemon_config

BOMB = "\n".join(
    [
        'a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]',
        *(
            f"{n}: &{n} [" + ", ".join([f"*{p}"] * 9) + "]"
            for p, n in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ]
)


def _codes(path: Path, loader: object = load_cluster) -> list[str]:
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as info:
        loader(path)  # type: ignore[operator]
    assert time.monotonic() - t0 < 10, "a hostile file took more than 10 s"
    return [
        f"{r.code}@{r.position.line}:{r.position.col}" for r in info.value.reports if r.position
    ]


def test_billion_laughs_is_refused_fast(tmp_path: Path) -> None:
    f = tmp_path / "bomb.yaml"
    f.write_text(BOMB + "\n")
    assert _codes(f)[0].startswith("alias-expansion@")


def test_billion_laughs_as_quorumd_config(tmp_path: Path) -> None:
    f = tmp_path / "bomb.yaml"
    f.write_text(BOMB + "\n")
    assert _codes(f, load_daemon_config)[0].startswith("alias-expansion@")


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "deep.yaml"
    f.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert _codes(f) == ["nesting-too-deep@1:68"]
    g = tmp_path / "deep_block.yaml"
    g.write_text("".join(" " * i + f"k{i}:\n" for i in range(70)) + " " * 70 + "v: 1\n")
    assert _codes(g)[0].startswith("nesting-too-deep@")


def test_file_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "big.yaml"
    f.write_text("cluster: x\n" + "# padding\n" * 1000)
    monkeypatch.setenv("DRORCH_CONFIG_MAX_BYTES", "4096")
    assert _codes(f) == ["file-too-large@1:1"]


def test_tab_binary_and_non_string_key_messages(tmp_path: Path) -> None:
    tab = tmp_path / "tab.yaml"
    tab.write_text("cluster: x\nsites:\n\tA: {}\n")
    with pytest.raises(ConfigError) as info:
        load_cluster(tab)
    assert str(info.value.reports[0]) == (
        f"{tab}:3:1: yaml: tabs are not allowed in indentation (use spaces)"
    )
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"cluster: x\nsites:\n  A: \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_cluster(binary)
    assert str(info.value.reports[0]).startswith(f"{binary}:3:6: file: not UTF-8 text (byte 0xff)")
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"cluster: x\0\n")
    assert _codes(nul) == ["file@1:11"]
    key = tmp_path / "key.yaml"
    key.write_text("cluster: x\n1: 2\n")
    assert "yaml-key@2:1" in _codes(key)


REPORT = re.compile(r"^.+:\d+:\d+: (warning: )?[a-z][a-z-]+: .+")

hostile_text = st.one_of(
    st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#\t\n \0\\%@`,?")), max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.builds(
        lambda depth, anchor: (
            ("x: &a [1, 2]\n" + "".join(f"y{i}: &a{i} [*a, *a]\n" for i in range(anchor)))
            + ("z: " + "[" * depth + "]" * depth)
        ),
        st.integers(0, 200),
        st.integers(0, 30),
    ),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=hostile_text)
def test_fuzz_only_reports_or_success(tmp_path: Path, text: str) -> None:
    f = tmp_path / "fuzz.yaml"
    f.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    t0 = time.monotonic()
    try:
        load_cluster(f)
    except ConfigError as exc:
        assert exc.reports
        for r in exc.reports:
            assert REPORT.match(str(r)), str(r)
    assert time.monotonic() - t0 < 5
