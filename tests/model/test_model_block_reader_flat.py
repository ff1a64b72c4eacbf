"""The block reader's flat flow collections (no brackets inside: made from the entries of
their text, stepped through once per distinct text) against libyaml, differentially: the
same few collection texts written many times over, at other columns and rows, as block
values, list items and inside other flow collections, with the edges of the subset in
them (empty ones, trailing and missing commas, quoted brackets and commas, repeated and
non-string keys, YAML 1.1 scalars)."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drorch.model import block_syntax
from drorch.model.source import read_block_subset
from tests.model.test_model_block_reader import RESOLVED, check_agrees

VALUES = [
    "a", "b1", "10s", "7", "-5", "2.5", "true", "no", "~", "null", "0x1F", "1:20", ".inf",
    "2002-12-14", "a b", "x-y", "/srv/a.img", "root@10.0.0.1:22", "'q'", "''", "'a, b'",
    "'x]'", "'}'", "'[y'", "'{z: 1}'", '"d"', '""', '"e, f"', '"]"', '"{"', "'it''s'",
    '"a\\tb"', "&a x", "*a", "!!str 1", "a: b", "?x", "#c", "<<", "=", "'}x'", "']x'",
    "'} x'", "'x,'", "2002-13-45",
]  # fmt: skip
KEYS = ["a", "b", "name", "x_y", "a b", "a:b", "1", "yes", "~", "'k'", '"k"', "k~"]


def _pick(choices: list[str]) -> st.SearchStrategy[str]:
    return st.integers(0, len(choices) - 1).map(choices.__getitem__)


def _flat(rnd: random.Random) -> str:
    """One flat collection text, at the subset's edges now and then."""
    n = rnd.choice((0, 1, 1, 2, 3, 5))
    comma = "," + " " * rnd.choice((0, 1, 1, 1, 2))
    pad = " " * rnd.choice((0, 0, 0, 1, 2))
    values = [rnd.choice([*VALUES, *RESOLVED]) for _ in range(n)]
    if rnd.random() < 0.5:
        body = comma.join(values)
        opening, closing = "[", "]"
    else:
        colon = ":" + " " * rnd.choice((1, 1, 1, 2, 0))
        keys = [rnd.choice(KEYS) for _ in range(n)]
        body = comma.join(f"{k}{colon}{v}" for k, v in zip(keys, values, strict=True))
        opening, closing = "{", "}"
    tail = rnd.choice(["", "", "", "", "", ",", " ,", ", "])
    text = f"{opening}{pad}{body}{tail}{pad}{closing}"
    if rnd.random() < 0.05:
        text = text.replace(",", "", 1)  # a missing comma
    return text


def _value(pool: list[str], rnd: random.Random) -> str:
    """A flow value made of the pool's texts: one alone, or some inside another."""
    r = rnd.random()
    if r < 0.5:
        return rnd.choice(pool)
    parts = [rnd.choice(pool) for _ in range(rnd.choice((1, 2, 3)))]
    if r < 0.75:
        return "[" + ", ".join(parts) + "]"
    return "{" + ", ".join(f"k{i}: {p}" for i, p in enumerate(parts)) + "}"


@st.composite
def documents(draw: st.DrawFn) -> str:
    """Lines that each hold texts from a small pool, so the same text comes again at
    other places."""
    rnd = draw(st.randoms(use_true_random=False))
    pool = [_flat(rnd) for _ in range(rnd.choice((1, 2, 3)))]
    lines: list[str] = []
    for i in range(rnd.choice((1, 2, 4, 6))):
        shape = rnd.random()
        if shape < 0.4:
            lines.append(f"k{i}:{' ' * rnd.choice((1, 1, 3))}{_value(pool, rnd)}")
        else:
            lines.append(f"k{i}:")
            for j in range(rnd.choice((1, 2, 3))):
                dash = "  -" + " " * rnd.choice((1, 1, 2))
                key = f"m{j}: " if rnd.random() < 0.4 else ""
                lines.append(dash + key + _value(pool, rnd) + rnd.choice(["", "", " # c"]))
    return "\n".join(lines) + "\n"


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_flat_collections_agree_with_libyaml(text: str) -> None:
    check_agrees(text)


def test_the_generated_flat_collections_reach_the_block_reader() -> None:
    """Many of the generated texts are taken (so their flat collections are read by the
    block reader) and many are left to libyaml."""
    taken: list[bool] = []

    @settings(max_examples=300, deadline=None, database=None)
    @given(documents())
    def sample(text: str) -> None:
        taken.append(read_block_subset(text, "f.yaml") is not None)

    sample()
    assert len(taken) // 5 <= sum(taken) <= len(taken) * 4 // 5, (sum(taken), len(taken))


@pytest.mark.parametrize(
    "text",
    [
        "a: {}\nb: []\nc: { }\nd: [ ]\ne: [{}, [], {}]\n",
        "a: [x, y]\nb: [x, y]\nc:  [x, y]\nd: {k: [x, y], l: [x, y]}\n- [x, y]\n",
        "a:\n  - [x, y]\n  - k: [x, y]\n    l: {m: [x, y]}\n",
        "a: {n: 1, t: tcp}\nb: [{n: 1, t: tcp}, {n: 1, t: tcp}]\nc: {n: 1, t: tcp}\n",
        "a: [x,]\nb: [x, y]\n",
        "a: {k: 1,}\n",
        "a: [x y]\nb: [x  y]\n",
        "a: ['x]', y]\nb: ['x]', y]\n",
        "a: {k: '}'}\nb: {k: '}'}\nc: {k: '}x'}\nd: {k: '}'}\n",
        "a: ['x]', y]\nb: ['x]', z]\nc: ['x]', y]\n",
        "a: [<<]\nb: {k: =}\n",
        "a: [2002-13-45]\n",  # a timestamp that cannot be constructed
        "a: {k: 2002-13-45}\n",
        "a: ['[', x]\nb: [\"{\", x]\n",
        "a: {k: 'a, b', l: \"c, d\"}\nb: {k: 'a, b', l: \"c, d\"}\n",
        "a: {k: 1, k: 2}\n",
        "a: {1: x}\nb: {yes: x}\n",
        "a: [1, 1.0, true, ~]\nb: [1, 1.0, true, ~]\nc: {k: 1}\nd: {k: 1.0}\ne: {k: true}\n",
        "a: [x] # c\nb: [x]# c\n",
        "a: [x]]\n",
        "a: [x] y\n",
        "a: {k: v} [x]\n",
        "a: [[x], [x]]\nb: [[[x]]]\n",
        # characters outside printable ASCII, in quotes (where the steps would take them)
        "a: ['x\x7fy']\n",
        "a: 'x\x7fy'\n",
        "a: ['x\ry']\n",
        "a: {k: 'x\ty'}\n",
        "a: ['n\u00e9']\n",
        "a: ['x\x00y']\n",
    ],
)
def test_flat_edges_agree(text: str) -> None:
    check_agrees(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: {k: '}', l: {m: 1}}\n",  # a closing bracket in quotes, then a collection
        "a: ['x]', [y]]\nb: ['x]', [y]]\n",
        "a: [x, 'y]', z]\nb: [x, 'y]', z]\n",
        "a: {}\nb: [{}, []]\nc: [x, {k: v}, [y]]\nd: [x, {k: v}, [y]]\n",
    ],
)
def test_flat_edges_are_taken(text: str) -> None:
    """In the subset, and read by the block reader (not left to libyaml)."""
    assert check_agrees(text)


def _backtracking(pattern: str) -> re.Pattern[str]:
    """The block syntax's pattern with its plain scalars' possessive repeats made
    ordinary (backtracking) ones."""
    return re.compile(pattern.replace("*+", "*"))


STEPS = ["KEY", "PLAIN", "MAP_FIRST", "MAP_NEXT", "LIST_FIRST", "LIST_NEXT"]


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab1-.:/_ ,'\"#[]{}@~()", max_size=16), _pick(STEPS))
def test_possessive_plain_scalars_match_as_backtracking_ones(text: str, step: str) -> None:
    """Nothing that may follow a plain scalar can follow a shorter match, so the
    possessive repeats find exactly what backtracking would."""
    fast: re.Pattern[str] = getattr(block_syntax, step)
    slow = _backtracking(fast.pattern)
    for start in range(len(text) + 1):
        a, b = fast.match(text, start), slow.match(text, start)
        assert (a and (a.span(), a.groups())) == (b and (b.span(), b.groups())), (text, start)
