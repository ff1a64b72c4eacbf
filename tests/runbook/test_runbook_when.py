"""`when:` conditions: the grammar, evaluation against names, and hostile input."""

from __future__ import annotations

import contextlib
import re

import pytest

from drorch.runbook.when import MAX_DEPTH, WhenError, parse_condition

VALUES: dict[tuple[str, ...], object] = {
    ("params", "mode"): "async",
    ("params", "count"): 3,
    ("params", "ratio"): 0.5,
    ("params", "force"): False,
    ("params", "vms"): ("web", "db"),
    ("steps", "migrate-web", "status"): "failed",
    ("steps", "migrate-web", "changed"): False,
    ("facts", "missing"): None,
}


def resolve(name: tuple[str, ...]) -> object:
    return VALUES.get(name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("params.mode == 'async'", True),
        ('params.mode != "async"', False),
        ("params.count >= 3 and params.ratio < 1", True),
        ("params.count > 3 or params.ratio <= 0.5", True),
        ("not params.force", True),
        ("not not params.force", False),
        ("steps.migrate-web.status == 'failed' and not steps.migrate-web.changed", True),
        ("'web' in params.vms", True),
        ("'mail' not in params.vms", True),
        ("params.mode in ['sync', 'async']", True),
        ("params.mode in []", False),
        ("facts.missing", False),
        ("facts.missing == null", True),
        ("facts.nothing_recorded", False),
        ("'syn' in 'async'", True),
        ("(params.count == 1 or params.count == 3) and true", True),
        ("params.count == 3.0", True),
        ("true == 1", False),
        ("false", False),
        ("'a\\'b' == \"a'b\"", True),
    ],
)
def test_evaluates(text: str, expected: bool) -> None:
    assert parse_condition(text).evaluate(resolve) is expected


def test_names_are_listed_with_offsets() -> None:
    cond = parse_condition("params.mode == 'x' and steps.a-b.changed")
    assert cond.names == [(("params", "mode"), 0), (("steps", "a-b", "changed"), 23)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "non-empty"),
        ("params.mode ==", "expected a value"),
        ("params.mode = 'x'", "unexpected character '='"),
        ("a == b == c", "cannot be chained"),
        ("(a == b", "expected ')'"),
        ("a b", "after a complete condition"),
        ("'open", "unterminated string"),
        ("'\\x41'", "bad escape"),
        ("__import__('os').system('id')", "unexpected character"),
        ("a.__class__ or ().__class__", "unexpected character '.'"),
        ("lambda: 1", "unexpected character ':'"),
        ("[[1]]", "nested"),
        ("[1, 2", "expected ',' or ']'"),
        ("a; b", "unexpected character ';'"),
        ("a + 1", "unexpected character '+'"),
        ("x" * 1001, "longer than"),
        ("a and " * 130 + "a", "more than 256 tokens"),
        ("not " * (MAX_DEPTH + 1) + "a", "nested deeper"),
        ("(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1), "nested deeper"),
        ("[" + ",".join(["1"] * 65) + "]", "at most 64"),
        ("a\x00", "unexpected character"),
    ],
)
def test_refuses(text: str, message: str) -> None:
    with pytest.raises(WhenError, match=re.escape(message)):
        parse_condition(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("params.mode < 3", "cannot compare a string < a number"),
        ("params.count", "gave a number"),
        ("params.mode and true", "'and' needs true or false, got a string"),
        ("'a' in params.count", "needs a list"),
        ("params.force < true", "cannot compare a boolean"),
    ],
)
def test_type_errors_at_evaluation(text: str, message: str) -> None:
    with pytest.raises(WhenError, match=re.escape(message)):
        parse_condition(text).evaluate(resolve)


def test_error_offsets_point_into_the_text() -> None:
    with pytest.raises(WhenError) as info:
        parse_condition("params.mode == 'x' or ?")
    assert info.value.offset == 22


def test_fuzz_never_escapes_when_error() -> None:
    import random

    rng = random.Random(11)
    alphabet = [*"ab.()[],'\"=!<> -_019\\", "and ", "or ", "not ", "in ", "null "]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        with contextlib.suppress(WhenError):
            parse_condition(text).evaluate(resolve)
