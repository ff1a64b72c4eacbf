"""The fast block reader (drorch.model.block_reader) against libyaml's reading
(`parse_located_events`), differentially: whenever the block reader takes a text, libyaml
takes it too and gives the same tree (the same values of the same types, the same
line:col for every node and key, the same key order); whatever the text, `parse_located`
gives what libyaml's reading gives, tree or reports. The texts are generated YAML in
block and one-line flow style with scalars from the subset's edges (YAML 1.1 bools,
ints, floats, nulls, timestamps, colons, dashes, quotes, spaces), then often damaged a
little, so that they sit just inside and just outside the subset."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drorch.model.located import Located
from drorch.model.reports import ConfigError
from drorch.model.source import parse_located, parse_located_events, read_block_subset
from tests.bench.bench_config import big_config
from tests.model.conftest import config_text

ROOT = Path(__file__).resolve().parents[2]

EDGE_SCALARS = [
    # YAML 1.1 resolution: nulls, bools, ints, floats, timestamps, and near misses
    "", "~", "null", "Null", "NULL", "nULL", "true", "True", "TRUE", "tRUE", "yes", "Yes",
    "no", "NO", "on", "Off", "y", "n", "0", "00", "012", "08", "0o17", "0x1F", "0x_1F",
    "0b101", "1_000", "-5", "+3", "1:20", "190:20:30", "1_0:1", "1.5", ".5", "5.", "+.5",
    "1e3", "1.0e+3", "6.8523015e+5", ".inf", "-.Inf", "+.INF", ".NaN", "2002-12-14",
    "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5", "2020-1-2", "=", "<<",
    # plain-style edges: colons, dashes, dots, spaces, indicators
    "a", "vm1", "10s", "1GiB", "/srv/x.img", "root@10.0.0.1:22", "qemu:///system",
    "http://127.0.0.1:8080/", "a b", "a  b", "a - b", "a -b", "-a", "-1", "- a", "-",
    ".x", "...", "---", "--- a", "x~", "a:b", "a:", ":a", "a::b", "a:1", "a: b", "a,b",
    "a#b", "a #b", "#a", "it's", 'say "hi"', "a\\b", "?a", "a?", "!a", "&a", "*a", "|",
    ">", "%a", "@a", "`a", "(a)", "a=b", "$x", "^x", "a;b", "a!b", "a&b", "a*b", "a|b",
    "a>b", "a<b", " ", "a ", " a", "[a]", "{a}", "a]", "a}", "n\u00e9", "a\tb",
]  # fmt: skip
EDGE_KEYS = [
    "a", "b", "name", "k1", "x-y", "x.y", "x_y", "-k", ".k", "yes", "1", "null", "~", "",
    "a b", "a:b", "a#b", "true", "2020-01-02", "<<", "=", "k ", "'q'",
]  # fmt: skip

ORDINARY = ["a", "b1", "vm7", "10s", "64MiB", "7", "2.5", "true", "x-y", "/srv/a.img", "c d"]
ORDINARY_KEYS = ["name", "a", "b", "port", "x_y"]


def _pick(choices: list[str]) -> st.SearchStrategy[str]:
    """sampled_from, with a short repr (Hypothesis warns about strategies' long reprs)."""
    return st.integers(0, len(choices) - 1).map(choices.__getitem__)


# Resolution edges that are plain scalars the subset takes (the tame documents' values)
RESOLVED = [
    "~", "null", "NULL", "nULL", "true", "TRUE", "yes", "No", "on", "Off", "y", "n", "0",
    "012", "08", "0o17", "0x1F", "0x_1F", "0b101", "1_000", "-5", "+3", "1:20", "190:20:30",
    "1.5", ".5", "5.", "+.5", "1e3", "1.0e+3", ".inf", "-.Inf", ".NaN", "2002-12-14",
    "2001-12-14t21:59:43.10-05:00", "2020-1-2", "a b", "a - b", "a -b", "-a", "-1", ".x",
    "...", "x~", "a:b", "a:1", "root@10.0.0.1:22", "qemu:///system", "(a)", "a=b", "a&b",
]  # fmt: skip
tame_scalars = st.one_of(st.sampled_from(ORDINARY), _pick(RESOLVED))
tame_keys = st.sampled_from([*ORDINARY_KEYS, "x-y", "x.y", "-k", "a b", "a:b", "k~"])
tame_trees = st.recursive(
    tame_scalars,
    lambda inner: st.one_of(
        st.tuples(st.just("list"), st.lists(inner, max_size=4)),
        st.tuples(st.just("unique map"), st.lists(st.tuples(tame_keys, inner), max_size=4)),
    ),
    max_leaves=14,
)
# the wild ones: mostly ordinary values, with edges of every kind among them
scalars = st.one_of(
    st.sampled_from(ORDINARY),
    st.sampled_from(ORDINARY),
    _pick(EDGE_SCALARS),
    st.text(alphabet="ab1.-:# ',", max_size=5),
)
keys = st.one_of(
    st.sampled_from(ORDINARY_KEYS),
    st.sampled_from(ORDINARY_KEYS),
    _pick(EDGE_KEYS),
    st.text(alphabet="ab1-_. :", min_size=1, max_size=4),
)
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.tuples(st.just("list"), st.lists(inner, max_size=4)),
        st.tuples(st.just("map"), st.lists(st.tuples(keys, inner), max_size=4)),
        st.tuples(st.just("unique map"), st.lists(st.tuples(keys, inner), max_size=4)),
        st.tuples(st.just("unique map"), st.lists(st.tuples(keys, inner), max_size=4)),
    ),
    max_leaves=14,
)

roots = st.one_of(
    st.tuples(st.just("list"), st.lists(trees, min_size=1, max_size=4)),
    st.tuples(st.just("unique map"), st.lists(st.tuples(keys, trees), min_size=1, max_size=5)),
)
tame_roots = st.tuples(
    st.just("unique map"), st.lists(st.tuples(tame_keys, tame_trees), min_size=1, max_size=5)
)


def _entries(node: Any) -> tuple[str, list[Any]]:
    """A collection's kind (list or map) and items; a "unique map" keeps each key's first
    entry (no unique_by: Hypothesis would print the whole recursive strategy)."""
    kind, items = node
    if kind == "unique map":
        seen: dict[str, Any] = {}
        for key, value in items:
            seen.setdefault(key, value)
        return "map", list(seen.items())
    return kind, items


def _scalar(text: str, rnd: random.Random) -> str:
    r = rnd.random()
    if r < 0.7:
        return text  # as a plain scalar, whether or not it can be one
    if r < 0.85:
        return "'" + text.replace("'", "''") + "'"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _flow(node: Any, rnd: random.Random, wild: bool) -> str:
    if isinstance(node, str):
        return _scalar(node, rnd)
    kind, items = _entries(node)
    pad = " " * rnd.choice((0, 0, 0, 1, 2))
    comma = "," + " " * rnd.choice((0, 1, 1, 1, 2))
    if kind == "list":
        body = comma.join(_flow(item, rnd, wild) for item in items)
        return f"[{pad}{body}{pad}]"
    colon = ":" + " " * rnd.choice((0, 1, 1, 1, 2) if wild else (1, 1, 2))
    key = (lambda k: _scalar(k, rnd)) if wild else (lambda k: k)
    body = comma.join(f"{key(k)}{colon}{_flow(v, rnd, wild)}" for k, v in items)
    return f"{{{pad}{body}{pad}}}"


def _tail(rnd: random.Random, wild: bool) -> str:
    tails = ["", "", "", "", " ", "  ", " # note", "  #: [x, {"]
    return rnd.choice([*tails, "# c"] if wild else tails)


def _block(node: Any, indent: int, rnd: random.Random, out: list[str], wild: bool) -> None:
    kind, items = _entries(node)
    for item in items:
        if kind == "map":
            key, value = item
            head = " " * indent + (_scalar(key, rnd) if wild and rnd.random() < 0.1 else key) + ":"
        else:
            value = item
            head = " " * indent + "-" + " " * rnd.choice((1, 1, 1, 2, 3))
        nested = not isinstance(value, str) and value[1] and rnd.random() < 0.75
        if nested and kind == "list" and value[0] == "list" and rnd.random() < 0.7:
            nested = False  # `-` alone over a nested block is outside the subset: less often
        if not nested:
            sep = " " * rnd.choice((1, 1, 2)) if kind == "map" else ""
            out.append(head + sep + _flow(value, rnd, wild) + _tail(rnd, wild))
        elif kind == "list" and value[0] != "list" and rnd.random() < 0.7:
            lines: list[str] = []  # `- key: value`, the other keys aligned under it
            _block(value, len(head), rnd, lines, wild)
            out.append(head + lines[0][len(head) :])
            out.extend(lines[1:])
        else:
            out.append(head.rstrip() if kind == "list" else head + _tail(rnd, wild))
            step = rnd.choice((1, 2, 2, 2, 4)) if not wild or rnd.random() < 0.9 else 0
            _block(value, indent + step, rnd, out, wild)
        if rnd.random() < 0.08:
            out.append(rnd.choice(["", "   ", "# comment", " " * rnd.randrange(6) + "# c"]))


def _damage(text: str, rnd: random.Random) -> str:
    for _ in range(rnd.choice((1, 1, 2, 3))):
        at = rnd.randrange(len(text) + 1)
        what = rnd.random()
        if what < 0.2:  # a line moved in or out by a space or two
            lines = text.split("\n")
            row = rnd.randrange(len(lines))
            shift = rnd.choice((-2, -1, 1, 2))
            lines[row] = " " * shift + lines[row] if shift > 0 else lines[row][-shift:]
            text = "\n".join(lines)
        elif what < 0.55:
            text = text[:at] + rnd.choice(" \t:-#,[]{}'\"&*!|>%?@`~\n\r.0") + text[at:]
        elif what < 0.8:
            text = text[:at] + text[at + 1 :]
        else:
            text = (
                text[:at] + rnd.choice(["---\n", "...\n", "&a ", "*a", "!!str ", "? "]) + text[at:]
            )
    return text


@st.composite
def documents(draw: st.DrawFn) -> str:
    """Half tame (in the subset or near it: resolution edges, spacing, comments), half
    wild (edges of every kind, often damaged)."""
    rnd = draw(st.randoms(use_true_random=False))
    wild = draw(st.booleans())
    root = draw(roots if wild else tame_roots)
    lines: list[str] = []
    if rnd.random() < 0.1:
        lines.append(rnd.choice(["# head", "", "  # indented comment"]))
    _block(root, 0 if not wild or rnd.random() < 0.95 else 2, rnd, lines, wild)
    text = "\n".join(lines) + rnd.choice(["\n", "\n", "", "\n\n", "\n# end\n"])
    return _damage(text, rnd) if wild and rnd.random() < 0.5 else text


def assert_same_tree(fast: Located, slow: Located, path: str = "$") -> None:
    """Values of the same types (and equal: NaN matches NaN), positions, keys in order."""
    assert type(fast.value) is type(slow.value), (path, fast.value, slow.value)
    assert fast.position == slow.position, (path, fast.position, slow.position)
    assert list(fast.key_positions.items()) == list(slow.key_positions.items()), path
    if isinstance(fast.value, dict):
        assert list(fast.value) == list(slow.value), path
        for key in fast.value:
            assert_same_tree(fast.value[key], slow.value[key], f"{path}.{key}")
    elif isinstance(fast.value, list):
        assert len(fast.value) == len(slow.value), path
        for i, (a, b) in enumerate(zip(fast.value, slow.value, strict=True)):
            assert_same_tree(a, b, f"{path}[{i}]")
    elif isinstance(fast.value, float) and math.isnan(fast.value):
        assert math.isnan(slow.value), path
    else:
        assert fast.value == slow.value, (path, fast.value, slow.value)


def outcome(read: Any, text: str) -> Located | list[str]:
    try:
        return read(text, "f.yaml")  # type: ignore[no-any-return]
    except ConfigError as exc:
        return [str(r) for r in exc.reports]


def check_agrees(text: str) -> bool:
    """The block reader's tree, when it takes the text, is libyaml's; and parse_located
    gives what libyaml's reading gives. True when the block reader took it."""
    fast = read_block_subset(text, "f.yaml")
    slow = outcome(parse_located_events, text)
    if fast is not None:
        assert isinstance(slow, Located), f"libyaml refuses what the block reader took: {slow}"
        assert_same_tree(fast, slow)
    whole = outcome(parse_located, text)
    if isinstance(slow, Located):
        assert isinstance(whole, Located), whole
        assert_same_tree(whole, slow)
    else:
        assert whole == slow
    return fast is not None


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_the_block_reader_agrees_with_libyaml(text: str) -> None:
    check_agrees(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab1 :-#,[]{}'\"\n.~", max_size=40))
def test_agrees_on_arbitrary_text(text: str) -> None:
    check_agrees(text)


def test_the_generated_documents_reach_the_block_reader() -> None:
    """The differential tests mean something only if the block reader takes many of
    the generated texts (and leaves many to libyaml)."""
    taken: list[bool] = []

    @settings(max_examples=300, deadline=None, database=None)
    @given(documents())
    def sample(text: str) -> None:
        taken.append(read_block_subset(text, "f.yaml") is not None)

    sample()
    assert len(taken) // 5 <= sum(taken) <= len(taken) * 4 // 5, (sum(taken), len(taken))


REAL_FILES = [
    *sorted((ROOT / "lab").glob("*.yaml")),
]


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.name)
def test_real_cluster_files_take_the_fast_path(path: Path) -> None:
    assert check_agrees(path.read_text())


def test_the_bench_and_test_clusters_take_the_fast_path() -> None:
    assert check_agrees(big_config())
    assert check_agrees(big_config(extra_services=50))
    assert check_agrees(config_text())


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\nb: [x, 'y', 2.5, true, null, 0x10]\nc: {d: 2020-01-02}\n",
        "a:\nb:   # empty\n  \nc:\n  - x\n  -   {k: v}\n  - k: 1\n    l: [1, [2, [3]]]\n"
        "d: {}\ne: []\n",
        "a: yes\nb: No\nc: ~\nd: 1_000\ne: .inf\nf: -.Inf\ng: .NaN\nh: 0o17\ni: 012\nj: 1:20\n",
        "a: 'it''s'\nb: \"x\\ty\"\n",  # escapes: left to libyaml
        "k: a b  c\nl: a - b\nm: root@h:22\nn: http://x:80/p?q\n",
        "a: &x 1\nb: *x\n",
        "a: !!str 1\n",
        "a: |\n  text\n",
        "a: b\n  c\n",  # a multi-line plain scalar
        "a:\n    b: 1\n  c: 2\n",  # a key between two indentations
        "a:\n  b: 1\n    c: 2\n",  # a key more indented than its siblings
        "a:\n  - x\n b: 1\n",
        "- a: 1\n   b: 2\n",
        "- a: 1\n  b: 2\n- c\n",
        "a:\n  b:\n  c: 1\nd:\n",
        "a:\n- x\n- y\n",  # an indentless sequence
        "- - x\n",
        "a: [x,\n  y]\n",  # flow over two lines
        "a: 1\n---\nb: 2\n",
        "%YAML 1.1\n---\na: 1\n",
        "a: 1\na: 2\n",
        "1: x\n",
        "a:\tb\n",
        "a: b\r\n",
        "a: n\u00e9\n",
        "  a: 1\n  b: 2\n",
        "{a: 1}\n",
        "a: [x,]\n",
        "a: {b}\n",
        "a: {b: 1, b: 2}\n",
        "a: {1: x}\n",
        "a: [a: b]\n",
        "a: x # c\nb: 'y' #c\nc: [z] # c\n",
        "a: x#c\n",
        "a:b\n",
        "<<: {a: 1}\n",
        "a: =\n",
        "",
        "# only a comment\n",
        "a: " + "[" * 30 + "]" * 30 + "\n",
        "a: " + "[" * 70 + "]" * 70 + "\n",
    ],
)
def test_edges_agree(text: str) -> None:
    check_agrees(text)
