"""The one-pass loader (parse_located) on the cases a Python-level node walk handled:
duplicate and non-string keys, aliases (shared, counted), tags, several documents."""

from __future__ import annotations

import datetime

import pytest

from drorch.model.reports import ConfigError
from drorch.model.source import MAX_NODES, parse_located


def codes(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_located(text, "f.yaml")
    return [str(r) for r in info.value.reports]


def test_values_and_positions() -> None:
    root = parse_located(
        "a: 1\nb: [x, 'y', 2.5, true, null, 0x10]\nc: {d: 2020-01-02}\ne: !!str 5\n", "f.yaml"
    )
    assert root.plain() == {
        "a": 1, "b": ["x", "y", 2.5, True, None, 16], "c": {"d": datetime.date(2020, 1, 2)},
        "e": "5",
    }  # fmt: skip
    assert root.key_positions["b"] == ("f.yaml", 2, 1)
    assert root.value["b"].value[1].position == ("f.yaml", 2, 8)
    assert parse_located("", "f.yaml").value == {}


def test_key_problems_are_all_reported() -> None:
    assert codes("a: 1\nb: 2\na: 3\n1: x\n[k]: y\n") == [
        "f.yaml:3:1: duplicate-key: key 'a' is repeated (first at line 1)",
        "f.yaml:4:1: yaml-key: mapping keys must be plain strings, not int 1 (quote it)",
        "f.yaml:5:1: yaml-key: mapping keys must be plain strings",
    ]


def test_aliases_are_shared_and_counted() -> None:
    root = parse_located("a: &x {k: [1, 2]}\nb: *x\n", "f.yaml")
    assert root.value["a"] is root.value["b"]
    assert codes("a: *nope\n") == ["f.yaml:1:4: yaml: found undefined alias 'nope'"]
    wide = "a: &a [" + ", ".join(["x"] * 1000) + "]\nb: &b [" + ", ".join(["*a"] * 1001) + "]\n"
    assert MAX_NODES < 1000 * 1001
    assert codes(wide)[0].startswith("f.yaml:2:4: alias-expansion: aliases expand this value")


def test_one_document_only_and_syntax_errors() -> None:
    assert codes("a: 1\n---\nb: 2\n") == [
        "f.yaml:2:1: yaml: expected a single document in the stream, but found another"
    ]
    assert codes("a: [1, 2\n")[0].startswith("f.yaml:2:1: yaml: ")
    assert codes("a: !!int x\n")[0].startswith("f.yaml:1:4: yaml: ")
