"""The located tree against PyYAML's own composer (an independent reference): for any
document of mappings, sequences and scalars, in block or flow style, `parse_located`
gives the values `yaml.safe_load` gives, and every node and key sits at the mark PyYAML's
composer gives it. The flow-nesting pre-scan agrees with a plain reference walk."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from drorch.model.flow_nesting import MAX_DEPTH, flow_depth, too_deep_at
from drorch.model.reports import ConfigError
from drorch.model.source import Located, parse_located

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["yes", "off", "~", "0x1F", "0o17", "1_000", "2020-01-02", "10s", "1GiB"]),
    st.text(alphabet="ab: -#'\"x1.,[]{}", max_size=8),
)
keys = st.text(alphabet="abk_-1 ", min_size=1, max_size=6)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=25,
)


def same_marks(loc: Located, node: yaml.Node) -> None:
    assert loc.position[1:] == (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        assert list(loc.value) == [k.value for k, _ in node.value]
        for key, value in node.value:
            at = loc.key_positions[key.value]
            assert at[1:] == (key.start_mark.line + 1, key.start_mark.column + 1)
            same_marks(loc.value[key.value], value)
    elif isinstance(node, yaml.SequenceNode):
        assert len(loc.value) == len(node.value)
        for item, child in zip(loc.value, node.value, strict=True):
            same_marks(item, child)


@settings(max_examples=300, deadline=None)
@given(doc=documents, flow=st.sampled_from([True, False, None]), width=st.sampled_from([20, 80]))
def test_values_and_marks_match_pyyaml(doc: Any, flow: bool | None, width: int) -> None:
    text = yaml.safe_dump(doc, default_flow_style=flow, width=width, sort_keys=False)
    root = parse_located(text, "f.yaml")
    assert root.plain() == yaml.safe_load(text)
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if node is not None:
        same_marks(root, node)


def reference_depth(text: str) -> tuple[int, int]:
    """The pre-scan as first written: one regex match per character that matters."""
    depth = deepest = 0
    quote = ""
    comment = False
    for m in re.finditer(r"[\[\]{}\"'#\n]", text):
        ch = m.group()
        if comment:
            comment = ch != "\n"
        elif quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            comment = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return depth, m.start()
            deepest = max(deepest, depth)
        elif ch in "]}" and depth:
            depth -= 1
    return deepest, -1


nesting_text = st.one_of(
    st.text(alphabet="[]{}'\"#\n a", max_size=200),
    st.builds(
        lambda depth, junk: junk + "[" * depth + junk + "]" * depth,
        st.integers(MAX_DEPTH - 2, MAX_DEPTH + 3),
        st.sampled_from(["", "'", "#", "'[['", "# [[\n", '"{"', "]"]),
    ),
)


@settings(max_examples=400, deadline=None)
@given(text=nesting_text)
def test_flow_depth_matches_the_reference_walk(text: str) -> None:
    assert flow_depth(text) == reference_depth(text)
    assert too_deep_at(text) == reference_depth(text)[1]


def test_too_deep_flow_is_reported_where_it_got_too_deep() -> None:
    text = "a: '[[[['\nb: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n"
    with pytest.raises(ConfigError) as info:
        parse_located(text, "f.yaml")
    assert [str(r) for r in info.value.reports] == [
        f"f.yaml:2:{4 + MAX_DEPTH}: nesting-too-deep: values are nested more than"
        f" {MAX_DEPTH} levels deep"
    ]


def test_an_empty_tagged_int_is_a_yaml_report() -> None:
    with pytest.raises(ConfigError) as info:
        parse_located("a: !!int ''\n", "f.yaml")
    assert [r.code for r in info.value.reports] == ["yaml"]
    assert str(info.value.reports[0]).startswith("f.yaml:1:4: yaml: '' is not a valid")
