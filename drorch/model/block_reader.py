"""A fast reader for the plain subset of YAML that cluster files are written in, giving
the same `Located` tree as the libyaml reader (`drorch.model.source`) or nothing at all.

The subset: ASCII text; a block mapping at column 0 (or a block sequence); block
mappings (`key: value`, `key:` then a more indented block) and block sequences (`- value`,
`- key: value` continued by aligned keys); on any one line, flow mappings and sequences
(`{a: 1, b: [x, y]}`); plain scalars, 'single-quoted' scalars without '' and
"double-quoted" ones without escapes; comments. Plain scalars (keys too) are resolved by
the libyaml reader's own resolver, so `yes`, `0x10`, `1_000`, `.inf`, dates and nulls
come out as they do there.

`read(text, file, plain_value)` returns None the moment the text leaves the subset or
anything about it is unusual (tabs, anchors, aliases, tags, block or multi-line scalars,
flow spanning lines, directives, non-string or repeated keys, deep nesting, very many
values, syntax errors): libyaml then reads the file, and reports every problem with its
position, exactly as if this reader did not exist. This reader never reports anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drorch.model.block_syntax import (
    DASH,
    DOUBLE,
    KEY,
    LINE_END,
    LIST_FIRST,
    LIST_NEXT,
    MAP_FIRST,
    MAP_NEXT,
    PLAIN,
    SINGLE,
    USUAL,
)
from drorch.model.located import Located
from drorch.model.reports import Position

MAX_LEVELS = 24  # collections open at once (block and flow each); deeper files are left to libyaml
MAX_VALUES = 500_000  # values in one file; more are left to libyaml's alias-expansion count


class _Outside(Exception):
    """The text leaves the subset: let libyaml read it."""


def read(
    text: str,
    file: str,
    plain_value: Callable[[str], Any],
    cache: dict[str, Any],
    missing: object,
) -> Located | None:
    """The located tree of `text` when it is in the subset, else None. `plain_value(s)`
    is a plain scalar's value as the libyaml reader resolves it, or `missing` when this
    reader must not take it (a tag other than str, int, float, bool, null, timestamp);
    `cache` holds the values it has already given (looked up first)."""
    if not text.isascii() or text.encode("ascii").translate(None, USUAL):
        return None
    try:
        return _Reader(text, file, plain_value, cache, missing).run()
    except _Outside:
        return None


class _Reader:
    def __init__(
        self,
        text: str,
        file: str,
        plain_value: Callable[[str], Any],
        cache: dict[str, Any],
        missing: object,
    ) -> None:
        self.lines = text.split("\n")
        self.cache = cache
        self.file = file
        self.plain_value = plain_value
        self.missing = missing
        self.count = 0
        # the flat collections read so far, by text: their entries (key and value, each
        # with its column past the opening bracket), the values they count, their length
        self.flats: dict[str, tuple[list[tuple[Any, ...]], int, int]] = {}
        self.line = ""
        self.row = 0  # 1-based number of the line being read

    def at(self, col: int) -> Position:
        """The Position of 0-based column `col` on the current line."""
        return tuple.__new__(Position, (self.file, self.row, col + 1))

    def scalar(self, text: str) -> Any:
        value = self.plain_value(text)
        if value is self.missing:
            raise _Outside
        return value

    def key(self, text: str, keys: dict[str, Position]) -> str:
        value = self.scalar(text)
        if type(value) is not str or value in keys:  # yaml-key, duplicate-key: libyaml's
            raise _Outside
        return value

    def run(self) -> Located | None:
        # the open block collections, innermost last: (column, is a list, items, keys)
        stack: list[tuple[int, bool, Any, dict[str, Position]]] = []
        root: Located | None = None
        # a `key:` whose value is on the lines below: (column of its mapping, the
        # mapping's items and key, where its empty value would be)
        pending: tuple[int, dict[str, Located], str, Position] | None = None
        for row, line in enumerate(self.lines, 1):
            stripped = line.lstrip(" ")
            if not stripped or stripped[0] == "#":
                continue
            self.row, self.line = row, line
            col = len(line) - len(stripped)
            if pending is not None:
                map_col, items, key, empty_at = pending
                pending = None
                if col > map_col:  # the pending key's value: a block opening here
                    items[key] = self.open(stack, col)
                    pending = self.entry_or_item(stack, col)
                    continue
                self.count += 1
                items[key] = Located(None, empty_at, {})
            if root is None:
                if col != 0:
                    raise _Outside
                root = self.open(stack, 0)
                pending = self.entry_or_item(stack, 0)
                continue
            while stack and stack[-1][0] > col:
                stack.pop()
            if not stack or stack[-1][0] != col:
                raise _Outside
            pending = self.entry_or_item(stack, col)
        if pending is not None:
            map_col, items, key, empty_at = pending
            self.count += 1
            items[key] = Located(None, empty_at, {})
        if self.count > MAX_VALUES:
            raise _Outside
        return root

    def open(self, stack: list[tuple[int, bool, Any, dict[str, Position]]], col: int) -> Located:
        """A block collection starting at `col` of this line (a `- ` makes it a list)."""
        if len(stack) >= MAX_LEVELS:
            raise _Outside
        is_list = self.line.startswith("- ", col)
        items: Any = [] if is_list else {}
        keys: dict[str, Position] = {}
        stack.append((col, is_list, items, keys))
        self.count += 1
        return Located(items, self.at(col), keys)

    def entry_or_item(
        self, stack: list[tuple[int, bool, Any, dict[str, Position]]], col: int
    ) -> tuple[int, dict[str, Located], str, Position] | None:
        """Read the entry (`key: ...`) or item (`- ...`) at `col` into the innermost
        collection, which starts at `col`; return it as pending if its value is below."""
        _, is_list, items, keys = stack[-1]
        line = self.line
        if not is_list:
            return self.entry(line, col, items, keys)
        dash = DASH.match(line, col)
        if dash is None:
            raise _Outside
        start = dash.end()
        if line[start] not in "[{'\"" and KEY.match(line, start) is not None:
            # `- key: ...`: a mapping in the item (a key never starts with a bracket or quote)
            items.append(self.open(stack, start))
            _, _, inner, inner_keys = stack[-1]
            return self.entry(line, start, inner, inner_keys)
        items.append(self.value(line, start))
        return None

    def entry(
        self, line: str, col: int, items: dict[str, Located], keys: dict[str, Position]
    ) -> tuple[int, dict[str, Located], str, Position] | None:
        m = KEY.match(line, col)
        if m is None:
            raise _Outside
        key = self.key(m.group(1), keys)
        self.count += 1
        keys[key] = self.at(col)
        start = m.end()
        if start == len(line) or line[start] == "#":
            return col, items, key, self.at(m.end(1) + 1)
        items[key] = self.value(line, start)
        return None

    def value(self, line: str, start: int) -> Located:
        """The scalar or flow collection at `start`, which must then end the line (or
        a comment)."""
        ch = line[start : start + 1]
        if ch == "[" or ch == "{":
            node, end = self.flow(line, start, 1)
        else:
            self.count += 1
            if ch == "'":
                m = SINGLE.match(line, start)
            elif ch == '"':
                m = DOUBLE.match(line, start)
            else:
                m = PLAIN.match(line, start)
            if m is None:
                raise _Outside
            text = m.group() if m.lastindex is None else m.group(1)
            node = Located(self.scalar(text) if m.lastindex is None else text, self.at(start), {})
            end = m.end()
        if end != len(line) and LINE_END.match(line, end) is None:
            raise _Outside
        return node

    def flow(self, line: str, start: int, depth: int) -> tuple[Located, int]:
        """A flow mapping or sequence opening at `start`, all on this line, read a step
        (an entry, an item, the end) at a time with the open collections on a stack."""
        if depth > MAX_LEVELS:
            raise _Outside
        cache, plain_value, missing = self.cache, self.plain_value, self.missing
        new_tuple, position, file, row = tuple.__new__, Position, self.file, self.row
        map_first, map_next = MAP_FIRST.match, MAP_NEXT.match
        list_first, list_next = LIST_FIRST.match, LIST_NEXT.match
        flat = self.flat(line, start)
        if flat is not None:  # no brackets inside: all of it at once
            node, end, count = flat
            self.count += 1 + count
            return node, end
        count = 1
        # the open collection: its items and keys, whether a list, and the step pattern
        # for what may come next; `stack` holds the same for the enclosing ones
        is_list = line[start] == "["
        items: Any = [] if is_list else {}
        keys: dict[str, Position] = {}
        root = Located(items, new_tuple(position, (file, row, start + 1)), keys)
        step = list_first if is_list else map_first
        stack: list[tuple[Any, dict[str, Position], bool]] = []
        p = start + 1
        key: Any = None
        while True:
            m = step(line, p)
            if m is None:
                raise _Outside
            p = m.end()
            last: int = m.lastindex  # type: ignore[assignment]  # every alternative has a group
            if is_list:
                kind = last
                count += 1
                step = list_next
            else:  # an entry: its key first; its value's groups come one later
                kind = last - 1
                if kind != 5:
                    text = m.group(1)
                    key = cache.get(text, missing)
                    if key is missing:
                        key = plain_value(text)
                    if type(key) is not str or key in keys:
                        raise _Outside
                    keys[key] = new_tuple(position, (file, row, m.start(1) + 1))
                    count += 2
                    step = map_next
            if kind == 1:  # plain
                text = m.group(last)
                value = cache.get(text, missing)
                if value is missing:
                    value = plain_value(text)
                    if value is missing:
                        raise _Outside
                child = Located(value, new_tuple(position, (file, row, m.start(last) + 1)), {})
            elif kind == 5:  # the closing bracket
                if not stack:
                    self.count += count
                    return root, p
                items, keys, is_list = stack.pop()
                step = list_next if is_list else map_next
                continue
            elif kind == 4:  # an opening bracket
                if len(stack) + depth >= MAX_LEVELS:
                    raise _Outside
                opening = m.start(last)
                opens_list = line[opening] == "["
                flat = self.flat(line, opening)
                if flat is not None:  # no brackets inside: all of it at once
                    child, p, inner_count = flat
                    count += inner_count
                else:
                    inner: Any = [] if opens_list else {}
                    inner_keys: dict[str, Position] = {}
                    at = new_tuple(position, (file, row, opening + 1))
                    if is_list:
                        items.append(Located(inner, at, inner_keys))
                    else:
                        items[key] = Located(inner, at, inner_keys)
                    stack.append((items, keys, is_list))
                    items, keys, is_list = inner, inner_keys, opens_list
                    step = list_first if opens_list else map_first
                    continue
            else:  # quoted: at its opening quote
                child = Located(m.group(last), new_tuple(position, (file, row, m.start(last))), {})
            if is_list:
                items.append(child)
            else:
                items[key] = child

    def flat(self, line: str, start: int) -> tuple[Located, int, int] | None:
        """The flow collection opening at `start` when it is flat (no brackets inside),
        with where it ends and the values it counts past itself; else None (then `flow`
        steps through it). It is made from the entries of its text, stepped through once
        per distinct text: the steps look at nothing past the closing bracket, so the
        same text gives the same entries wherever it is."""
        closing = line.find("]" if line[start] == "[" else "}", start)
        if closing < 0:
            return None
        if line.find("[", start + 1, closing) >= 0 or line.find("{", start + 1, closing) >= 0:
            return None
        text = line[start : closing + 1]
        known = self.flats.get(text)
        if known is None:
            known = self.flat_entries(line, start)
            if known is None:
                return None
            self.flats[line[start : start + known[2]]] = known
        entries, count, length = known
        new_tuple, position, file, row = tuple.__new__, Position, self.file, self.row
        at = new_tuple(position, (file, row, start + 1))
        if line[start] == "[":
            items = [
                Located(value, new_tuple(position, (file, row, start + value_at)), {})
                for value, value_at in entries
            ]
            return Located(items, at, {}), start + length, count
        mapping: dict[str, Located] = {}
        keys: dict[str, Position] = {}
        for key, key_at, value, value_at in entries:
            keys[key] = new_tuple(position, (file, row, start + key_at))
            mapping[key] = Located(value, new_tuple(position, (file, row, start + value_at)), {})
        return Located(mapping, at, keys), start + length, count

    def flat_entries(self, line: str, start: int) -> tuple[list[tuple[Any, ...]], int, int] | None:
        """The entries of the flow collection at `start` as `flow` steps through them:
        (key, its column, value, its column) in a mapping, (value, its column) in a
        list, columns 1-based and counted from `start`; the values flow counts for them,
        and the collection's length. None if it holds a collection after all."""
        is_list = line[start] == "["
        step = LIST_FIRST.match if is_list else MAP_FIRST.match
        entries: list[tuple[Any, ...]] = []
        keys: set[str] = set()
        count = 0
        p = start + 1
        while True:
            m = step(line, p)
            if m is None:
                raise _Outside
            p = m.end()
            last: int = m.lastindex  # type: ignore[assignment]  # every alternative has a group
            if is_list:
                count += 1
                step = LIST_NEXT.match
                kind = last
            else:
                kind = last - 1
                step = MAP_NEXT.match
            if kind == 5:  # the closing bracket
                return entries, count, p - start
            if kind == 4:  # an opening bracket (in quotes, the text looked flat)
                return None
            if kind == 1:
                value_at = m.start(last) + 1 - start
                value = self.cache.get(m.group(last), self.missing)
                if value is self.missing:
                    value = self.scalar(m.group(last))
            else:  # quoted: at its opening quote
                value_at = m.start(last) - start
                value = m.group(last)
            if is_list:
                entries.append((value, value_at))
                continue
            text = m.group(1)
            key = self.cache.get(text, self.missing)
            if key is self.missing:
                key = self.plain_value(text)
            if type(key) is not str or key in keys:
                raise _Outside
            keys.add(key)
            count += 2
            entries.append((key, m.start(1) + 1 - start, value, value_at))
