"""Load YAML while keeping the line and column of every node, for `FILE:LINE:COL` messages.

`load_located(path)` returns a tree of `Located` values: mappings, sequences and scalars
that each remember their `Position`. Schema code walks that tree and reports problems at
the exact node. Duplicate keys are reported (PyYAML silently keeps the last one).
"""

from __future__ import annotations

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
            key = str(_construct_scalar(key_node, constructor))
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
    try:
        node = yaml.compose(text, Loader=_COMPOSE_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or str(exc)
        raise ConfigError([ReportItem("yaml", problem, _pos(file, mark))]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([ReportItem("yaml", str(exc), Position(file, 1, 1))]) from exc
    if node is None:
        return Located({}, Position(file, 1, 1))
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
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            [ReportItem("file", f"cannot read: {exc}", Position(str(p), 1, 1))]
        ) from exc
    return parse_located(text, str(p))
