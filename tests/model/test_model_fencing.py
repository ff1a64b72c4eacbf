"""`fencing:` per volume: resource-only (the sync default) | dont-care (the async
default); resource-only on an async volume is refused at its position."""

from __future__ import annotations

from pathlib import Path

import pytest

from drorch.model.loader import load_cluster
from drorch.model.reports import ConfigError

BASE = """\
cluster: c1
primary_site: A
sites:
  A:
    nodes:
      - {name: a1, address: local}
  B:
    nodes:
      - {name: b1, address: local}
volumes:
  - name: vol
    driver: pyrepl
    size: 4MiB
    port: 7789
    paths: {a1: a.img, b1: b.img}
"""


def _load(tmp_path: Path, extra: str) -> object:
    path = tmp_path / "c.yaml"
    path.write_text(BASE + extra)
    return load_cluster(path)


@pytest.mark.parametrize(
    ("extra", "fencing"),
    [
        ("", "resource-only"),
        ("    mode: sync\n", "resource-only"),
        ("    mode: async\n", "dont-care"),
        ("    fencing: dont-care\n", "dont-care"),
        ("    mode: async\n    fencing: dont-care\n", "dont-care"),
    ],
)
def test_defaults_and_choices(tmp_path: Path, extra: str, fencing: str) -> None:
    cluster = _load(tmp_path, extra)
    assert cluster.volumes[0].fencing == fencing  # type: ignore[attr-defined]


def test_resource_only_on_async_is_refused_at_its_position(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, "    mode: async\n    fencing: resource-only\n")
    text = "\n".join(str(r) for r in info.value.reports)
    assert "c.yaml:17:14: " in text and "fencing resource-only needs mode sync" in text


def test_an_unknown_policy_is_refused_at_its_position(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, "    fencing: stonith\n")
    text = "\n".join(str(r) for r in info.value.reports)
    assert "c.yaml:16:14: " in text and "resource-only" in text, text
