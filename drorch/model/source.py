"""Load YAML while keeping the line and column of every node, for `FILE:LINE:COL` messages.

`load_located(path)` returns a tree of `Located` values: mappings, sequences and scalars
that each remember their `Position`. Schema code walks that tree and reports problems at
the exact node. Duplicate keys are reported (PyYAML silently keeps the last one).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drorch.model.reports import ConfigError, Position, ReportItem


@dataclass
class Located:
    """A YAML value with its position. `value` is a dict[str, Located], a list[Located],
    or a plain scalar (str, int, float, bool or None)."""

    value: Any
    position: Position
    key_positions: dict[str, Position] = field(default_factory=dict)

    def plain(self) -> Any:
        """The value with all positions stripped (plain dicts, lists and scalars)."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value


MAX_BYTES = 4 * 1024 * 1024  # a cluster file is kilobytes; $DRORCH_CONFIG_MAX_BYTES raises it
MAX_NODES = 1_000_000  # values after alias expansion (a billion laughs is 10^9)
MAX_DEPTH = 64  # nesting of mappings and sequences


def max_bytes() -> int:
    raw = os.environ.get("DRORCH_CONFIG_MAX_BYTES", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else MAX_BYTES


_FLOW_CHARS = re.compile(r"[\[\]{}\"'#\n]")


def _flow_depth(text: str) -> tuple[int, int]:
    """The deepest `[`/`{` nesting outside quotes and comments, and where it first got
    too deep (offset, else -1), before the YAML parser (which recurses) ever sees it.
    Visits only the characters that matter, so it costs little on a large file."""
    depth = deepest = 0
    quote = ""
    comment = False
    for m in _FLOW_CHARS.finditer(text):
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


def _offset_position(file: str, text: str, offset: int) -> Position:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return Position(file, line, col)


def _check_expansion(root: yaml.Node, file: str) -> None:
    """Refuse a document whose aliases expand past MAX_NODES values or whose nesting is
    deeper than MAX_DEPTH: sizes are computed once per node (linear in the file), never
    by expanding."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise ConfigError(
                [
                    ReportItem(
                        "nesting-too-deep",
                        f"values are nested more than {MAX_DEPTH} levels deep",
                        _pos(file, node.start_mark),
                    )
                ]
            )
        known = sizes.get(id(node))
        if known is not None:
            return known
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(v, depth + 1) for v in node.value)
        if total > MAX_NODES:
            raise ConfigError(
                [
                    ReportItem(
                        "alias-expansion",
                        f"aliases expand this value to more than {MAX_NODES:,} values"
                        " (a YAML bomb?); write the values out instead",
                        _pos(file, node.start_mark),
                    )
                ]
            )
        sizes[id(node)] = total
        return total

    size(root, 0)


def _pos(file: str, mark: yaml.Mark | None) -> Position:
    if mark is None:
        return Position(file, 1, 1)
    return Position(file, mark.line + 1, mark.column + 1)


# libyaml's parser when PyYAML was built with it (several times faster on big files);
# it reports the same marks and problems.
_COMPOSE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _ScalarConstructor(yaml.constructor.SafeConstructor):
    """Resolves plain scalars with YAML 1.1 safe rules; one per parse, reused per node."""


def _construct_scalar(node: yaml.ScalarNode, constructor: _ScalarConstructor | None = None) -> Any:
    return (constructor or _ScalarConstructor()).construct_object(node, deep=True)


def _convert(
    node: yaml.Node,
    file: str,
    reports: list[ReportItem],
    constructor: _ScalarConstructor | None = None,
) -> Located:
    constructor = constructor or _ScalarConstructor()
    pos = _pos(file, node.start_mark)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Located] = {}
        keys: dict[str, Position] = {}
        for key_node, value_node in node.value:
            kpos = _pos(file, key_node.start_mark)
            if not isinstance(key_node, yaml.ScalarNode):
                reports.append(ReportItem("yaml-key", "mapping keys must be plain strings", kpos))
                continue
            raw_key = _construct_scalar(key_node, constructor)
            if not isinstance(raw_key, str):
                reports.append(
                    ReportItem(
                        "yaml-key",
                        f"mapping keys must be plain strings, not {type(raw_key).__name__}"
                        f" {raw_key!r} (quote it)",
                        kpos,
                    )
                )
                continue
            key = raw_key
            if key in out:
                reports.append(
                    ReportItem(
                        "duplicate-key",
                        f"key {key!r} is repeated (first at line {keys[key].line})",
                        kpos,
                    )
                )
                continue
            keys[key] = kpos
            out[key] = _convert(value_node, file, reports, constructor)
        return Located(out, pos, keys)
    if isinstance(node, yaml.SequenceNode):
        return Located([_convert(n, file, reports, constructor) for n in node.value], pos)
    if isinstance(node, yaml.ScalarNode):
        return Located(_construct_scalar(node, constructor), pos)
    raise TypeError(f"unexpected YAML node {node!r}")  # pragma: no cover - yaml has 3 kinds


def parse_located(text: str, file: str) -> Located:
    """Parse YAML text; raise ConfigError(`yaml` code) with the position of a syntax error."""
    _deepest, where = _flow_depth(text)
    if where >= 0:
        raise ConfigError(
            [
                ReportItem(
                    "nesting-too-deep",
                    f"values are nested more than {MAX_DEPTH} levels deep",
                    _offset_position(file, text, where),
                )
            ]
        )
    try:
        node = yaml.compose(text, Loader=_COMPOSE_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or str(exc)
        if mark is not None and 0 <= mark.index < len(text) and text[mark.index] == "\t":
            problem = "tabs are not allowed in indentation (use spaces)"
        raise ConfigError([ReportItem("yaml", problem, _pos(file, mark))]) from exc
    except RecursionError as exc:
        raise ConfigError(
            [ReportItem("nesting-too-deep", "values are nested too deeply", Position(file, 1, 1))]
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([ReportItem("yaml", str(exc), Position(file, 1, 1))]) from exc
    if node is None:
        return Located({}, Position(file, 1, 1))
    _check_expansion(node, file)
    reports: list[ReportItem] = []
    try:
        located = _convert(node, file, reports)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError([ReportItem("yaml", exc.problem or str(exc), _pos(file, mark))]) from exc
    if reports:
        raise ConfigError(reports)
    return located


def load_located(path: str | Path) -> Located:
    """Read and parse a YAML file; unreadable files raise ConfigError(`file`)."""
    p = Path(path)
    limit = max_bytes()
    try:
        with open(p, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise ConfigError(
            [ReportItem("file", f"cannot read: {exc.strerror or exc}", Position(str(p), 1, 1))]
        ) from exc
    if len(data) > limit:
        raise ConfigError(
            [
                ReportItem(
                    "file-too-large",
                    f"larger than {limit:,} bytes; a cluster file is kilobytes"
                    " (raise $DRORCH_CONFIG_MAX_BYTES if this one really is that big)",
                    Position(str(p), 1, 1),
                )
            ]
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = data[: exc.start].decode("utf-8", errors="replace")
        raise ConfigError(
            [
                ReportItem(
                    "file",
                    f"not UTF-8 text (byte 0x{data[exc.start]:02x}): is this a binary file?",
                    _offset_position(str(p), good, len(good)),
                )
            ]
        ) from exc
    if "\0" in text:
        at = text.index("\0")
        raise ConfigError(
            [
                ReportItem(
                    "file",
                    "contains a NUL byte: not a text file",
                    _offset_position(str(p), text, at),
                )
            ]
        )
    return parse_located(text, str(p))
