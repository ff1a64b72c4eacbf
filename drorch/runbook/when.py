"""`when:` conditions: a small, safe expression language (tokenizer + recursive descent).

    when: params.mode == 'async' and not steps.migrate-web.changed
    when: observed.replica.appdata.B.disk in ['UpToDate', 'Consistent']

Grammar (no arithmetic, no calls, no attribute access beyond dotted names, never eval):

    expr    := or
    or      := and ('or' and)*
    and     := not ('and' not)*
    not     := 'not' not | compare
    compare := atom (('=='|'!='|'<'|'<='|'>'|'>='|'in'|'not' 'in') atom)?
    atom    := STRING | NUMBER | 'true' | 'false' | 'null' | NAME | '(' expr ')'
             | '[' (atom (',' atom)*)? ']'
    NAME    := segment ('.' segment)*     segment := [A-Za-z0-9_][A-Za-z0-9_-]*

Names are resolved by the caller (`params.*`, `facts.*`, `steps.ID.*`, `observed.*`).
Inputs are bounded (length, tokens, nesting, list size) so hostile text fails fast with
a `WhenError`, never a RecursionError or a hang.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

MAX_LENGTH = 1000
MAX_TOKENS = 256
MAX_DEPTH = 32
MAX_LIST = 64


class WhenError(ValueError):
    """A condition that cannot be parsed or evaluated; `offset` is 0-based in the text."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(frozen=True)
class Token:
    kind: str  # str num name op kw ( ) [ ] , end
    text: str
    value: object
    offset: int


KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}
_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<num>-?\d{1,18}(?:\.\d{1,18})?(?![A-Za-z0-9_]))
      | (?P<name>[A-Za-z0-9_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_][A-Za-z0-9_-]*)*)
      | (?P<op>==|!=|<=|>=|<|>)
      | (?P<punct>[()\[\],])
      | (?P<quote>['"])""",
    re.VERBOSE,
)
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}


def _string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\\":
            if i + 1 >= len(text) or text[i + 1] not in _ESCAPES:
                raise WhenError("bad escape in string (use \\\\, \\', \\\", \\n, \\t)", i)
            out.append(_ESCAPES[text[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    raise WhenError("unterminated string", start)


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_LENGTH:
        raise WhenError(f"condition longer than {MAX_LENGTH} characters", MAX_LENGTH)
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise WhenError(f"unexpected character {text[pos]!r}", pos)
        kind = m.lastgroup or ""
        if kind == "ws":
            pos = m.end()
            continue
        if kind == "quote":
            value, end = _string(text, pos)
            tokens.append(Token("str", text[pos:end], value, pos))
            pos = end
        elif kind == "num":
            raw = m.group()
            tokens.append(Token("num", raw, float(raw) if "." in raw else int(raw), pos))
            pos = m.end()
        elif kind == "name":
            raw = m.group()
            tokens.append(Token("kw" if raw in KEYWORDS else "name", raw, raw, pos))
            pos = m.end()
        else:
            raw = m.group()
            tokens.append(Token("op" if kind == "op" else raw, raw, raw, pos))
            pos = m.end()
        if len(tokens) > MAX_TOKENS:
            raise WhenError(f"condition has more than {MAX_TOKENS} tokens", pos)
    tokens.append(Token("end", "", None, len(text)))
    return tokens


# The tree: tuples tagged by their first element, cheap and immutable.
#   ("lit", value) ("name", (segments...), offset) ("list", (nodes...))
#   ("not", node) ("and", (nodes...)) ("or", (nodes...)) ("cmp", op, left, right, offset)
Node = tuple[object, ...]


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, kind: str, what: str) -> Token:
        tok = self.peek()
        if tok.kind != kind:
            raise WhenError(f"expected {what}, found {_shown(tok)}", tok.offset)
        return self.take()

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise WhenError(f"condition nested deeper than {MAX_DEPTH}", self.peek().offset)

    def parse(self) -> Node:
        node = self.or_()
        tok = self.peek()
        if tok.kind != "end":
            raise WhenError(f"unexpected {_shown(tok)} after a complete condition", tok.offset)
        return node

    def or_(self) -> Node:
        items = [self.and_()]
        while self.peek().text == "or" and self.peek().kind == "kw":
            self.take()
            items.append(self.and_())
        return items[0] if len(items) == 1 else ("or", tuple(items))

    def and_(self) -> Node:
        items = [self.not_()]
        while self.peek().text == "and" and self.peek().kind == "kw":
            self.take()
            items.append(self.not_())
        return items[0] if len(items) == 1 else ("and", tuple(items))

    def not_(self) -> Node:
        tok = self.peek()
        if tok.kind == "kw" and tok.text == "not":
            self.take()
            self.nest()
            inner = self.not_()
            self.depth -= 1
            return ("not", inner)
        return self.compare()

    def compare(self) -> Node:
        left = self.atom()
        tok = self.peek()
        op: str | None = None
        if tok.kind == "op":
            op = tok.text
        elif tok.kind == "kw" and tok.text == "in":
            op = "in"
        elif tok.kind == "kw" and tok.text == "not" and self.tokens[self.i + 1].text == "in":
            self.take()
            op = "not in"
        if op is None:
            return left
        self.take()
        right = self.atom()
        after = self.peek()
        if after.kind == "op" or (after.kind == "kw" and after.text == "in"):
            raise WhenError("comparisons cannot be chained; use 'and'", after.offset)
        return ("cmp", op, left, right, tok.offset)

    def atom(self) -> Node:
        tok = self.take()
        if tok.kind in ("str", "num"):
            return ("lit", tok.value)
        if tok.kind == "kw" and tok.text in ("true", "false", "null"):
            return ("lit", {"true": True, "false": False, "null": None}[tok.text])
        if tok.kind == "name":
            return ("name", tuple(tok.text.split(".")), tok.offset)
        if tok.kind == "(":
            self.nest()
            inner = self.or_()
            self.depth -= 1
            self.expect(")", "')'")
            return inner
        if tok.kind == "[":
            return self.list_(tok)
        raise WhenError(f"expected a value or a name, found {_shown(tok)}", tok.offset)

    def list_(self, opening: Token) -> Node:
        items: list[Node] = []
        if self.peek().kind == "]":
            self.take()
            return ("list", ())
        while True:
            item = self.atom()
            if item[0] == "list":
                raise WhenError("lists cannot be nested", opening.offset)
            items.append(item)
            if len(items) > MAX_LIST:
                raise WhenError(f"a list may hold at most {MAX_LIST} items", opening.offset)
            tok = self.take()
            if tok.kind == "]":
                return ("list", tuple(items))
            if tok.kind != ",":
                raise WhenError(f"expected ',' or ']', found {_shown(tok)}", tok.offset)


def _shown(tok: Token) -> str:
    return "the end" if tok.kind == "end" else repr(tok.text)


@dataclass(frozen=True)
class Condition:
    """A parsed `when:`; `names` lists every dotted name (for validation)."""

    text: str
    tree: Node

    @property
    def names(self) -> list[tuple[tuple[str, ...], int]]:
        return list(_names(self.tree))

    def evaluate(self, resolve: Callable[[tuple[str, ...]], object]) -> bool:
        """True/False; `resolve(segments)` gives a name's value (None when unknown).
        WhenError if the types do not fit (e.g. `'a' < 3`) or the result is no boolean."""
        value = _eval(self.tree, resolve)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise WhenError(f"the condition gave {_kind(value)}, not true or false")
        return value


def parse_condition(text: str) -> Condition:
    if not isinstance(text, str) or not text.strip():
        raise WhenError("a condition must be a non-empty string")
    return Condition(text, _Parser(tokenize(text)).parse())


def _names(node: Node) -> Iterator[tuple[tuple[str, ...], int]]:
    tag = node[0]
    if tag == "name":
        yield node[1], node[2]  # type: ignore[misc]
    elif tag in ("list", "and", "or"):
        for child in node[1]:  # type: ignore[attr-defined]
            yield from _names(child)
    elif tag == "not":
        yield from _names(node[1])  # type: ignore[arg-type]
    elif tag == "cmp":
        yield from _names(node[2])  # type: ignore[arg-type]
        yield from _names(node[3])  # type: ignore[arg-type]


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    return "a " + type(value).__name__


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _eval(node: Node, resolve: Callable[[tuple[str, ...]], object]) -> object:
    tag = node[0]
    if tag == "lit":
        return node[1]
    if tag == "name":
        return resolve(node[1])  # type: ignore[arg-type]
    if tag == "list":
        return [_eval(n, resolve) for n in node[1]]  # type: ignore[attr-defined]
    if tag == "not":
        return not _truth(_eval(node[1], resolve), "'not'")  # type: ignore[arg-type]
    if tag == "and":
        return all(_truth(_eval(n, resolve), "'and'") for n in node[1])  # type: ignore[attr-defined]
    if tag == "or":
        return any(_truth(_eval(n, resolve), "'or'") for n in node[1])  # type: ignore[attr-defined]
    _, op, left_node, right_node, offset = node
    left = _eval(left_node, resolve)  # type: ignore[arg-type]
    right = _eval(right_node, resolve)  # type: ignore[arg-type]
    return _compare(str(op), left, right, int(offset))  # type: ignore[call-overload]


def _truth(value: object, where: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    raise WhenError(f"{where} needs true or false, got {_kind(value)}")


def _compare(op: str, left: object, right: object, offset: int) -> bool:
    if isinstance(left, tuple):
        left = list(left)
    if isinstance(right, tuple):
        right = list(right)
    if op == "==":
        return _same(left, right)
    if op == "!=":
        return not _same(left, right)
    if op in ("in", "not in"):
        if isinstance(right, list):
            found = any(_same(left, item) for item in right)
        elif isinstance(right, str) and isinstance(left, str):
            found = left in right
        elif right is None:
            found = False
        else:
            raise WhenError(f"'{op}' needs a list on the right, got {_kind(right)}", offset)
        return found if op == "in" else not found
    if _number(left) and _number(right):
        a: float | str = float(left)  # type: ignore[arg-type]
        b: float | str = float(right)  # type: ignore[arg-type]
    elif isinstance(left, str) and isinstance(right, str):
        a, b = left, right
    else:
        raise WhenError(f"cannot compare {_kind(left)} {op} {_kind(right)}", offset)
    table: dict[str, Callable[[Any, Any], bool]] = {
        "<": operator.lt,
        "<=": operator.le,
        ">": operator.gt,
        ">=": operator.ge,
    }
    return table[op](a, b)


def _same(left: object, right: object) -> bool:
    if isinstance(left, bool) != isinstance(right, bool):
        return False  # true is not 1
    return left == right
