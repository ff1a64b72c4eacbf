"""Load YAML while keeping the line and column of every node, for `FILE:LINE:COL` messages.

`load_located(path)` returns a tree of `Located` values: mappings, sequences and scalars
that each remember their `Position`. Schema code walks that tree and reports problems at
the exact node. Duplicate keys are reported (PyYAML silently keeps the last one).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from drorch.model import block_reader
from drorch.model.config_file import offset_position, read_config_text
from drorch.model.flow_nesting import MAX_DEPTH, flow_depth
from drorch.model.located import Located as Located  # re-exported: the readers' result type
from drorch.model.reports import ConfigError, Position, ReportItem

MAX_NODES = 1_000_000  # values after alias expansion (a billion laughs is 10^9)


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a config tree is built and checked: the trees
    hold no cycles, and the collector would rescan the growing tree again and again
    (which makes loading superlinear in the file's size)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _pos(file: str, mark: yaml.Mark | None) -> Position:
    if mark is None:
        return Position(file, 1, 1)
    return Position(file, mark.line + 1, mark.column + 1)


# libyaml's parser when PyYAML was built with it (several times faster on big files);
# it reports the same marks and problems.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR = "tag:yaml.org,2002:str"
# the tags of plain scalars the block reader may take (the others are left to libyaml)
_SIMPLE_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("int", "float", "bool", "null", "timestamp")
)
_MISSING = object()


class _ScalarConstructor(yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """Resolves and constructs scalars with YAML 1.1 safe rules (ints, floats, bools,
    nulls, timestamps; explicit tags); one per parse."""


# The first characters for which the resolver has implicit rules: any other plain scalar
# resolves to a string (as `resolve` itself decides, from the same table), unless the
# resolver has rules for every first character or path rules (then: no shortcut).
_RESOLVER_TABLE: dict[Any, Any] = _ScalarConstructor.yaml_implicit_resolvers
_RESOLVED_FIRST: frozenset[str] | None = (
    None
    if None in _RESOLVER_TABLE or _ScalarConstructor.yaml_path_resolvers
    else frozenset(k for k in _RESOLVER_TABLE if k)
)


class _Builder:
    """Builds the Located tree straight from the parser's events, in one pass and
    without recursion: positions from the event marks, plain scalars resolved once per
    distinct text, aliases shared (never expanded), and the limits counted on the way:
    nesting depth, and the number of values the tree stands for once aliases are
    expanded (each value's count is known when it ends, so a "billion laughs" costs
    what its text costs)."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.reports: list[ReportItem] = []
        self.constructor = _ScalarConstructor()
        self.resolve: Any = self.constructor.resolve
        self.plain: dict[str, Any] = {}
        self.anchors: dict[str, tuple[Located, int]] = {}

    def error(self, code: str, message: str, mark: yaml.Mark | None) -> ConfigError:
        return ConfigError([ReportItem(code, message, _pos(self.file, mark))])

    def scalar(self, ev: Any) -> Any:
        tag = ev.tag
        if tag is None and ev.implicit[0]:  # plain, untagged: resolve (cached)
            value = self.plain.get(ev.value, _MISSING)
            if value is _MISSING:
                resolved = self.resolve(yaml.ScalarNode, ev.value, (True, False))
                value = ev.value if resolved == _STR else self._construct(resolved, ev)
                self.plain[ev.value] = value
            return value
        if tag is None or tag == "!" or tag == _STR:
            return ev.value  # quoted, or explicitly a string
        return self._construct(tag, ev)

    def plain_value(self, text: str) -> Any:
        """A plain untagged scalar's value exactly as `scalar` makes it for such an event
        (the same resolver, constructor and cache), for the block reader; or _MISSING
        when its tag is not a simple one or it cannot be constructed (left to libyaml,
        which reports it with its position)."""
        value = self.plain.get(text, _MISSING)
        if value is _MISSING:
            if _RESOLVED_FIRST is not None and text and text[0] not in _RESOLVED_FIRST:
                self.plain[text] = text  # no implicit rule for its first character
                return text
            resolved = self.resolve(yaml.ScalarNode, text, (True, False))
            if resolved == _STR:
                value = text
            elif resolved in _SIMPLE_TAGS:
                node = yaml.ScalarNode(resolved, text, None, None, None)
                try:
                    value = self.constructor.construct_object(node, deep=True)
                except Exception:  # whatever it is, libyaml's reading reports it
                    return _MISSING
            else:
                return _MISSING
            self.plain[text] = value
        return value

    def _construct(self, tag: str, ev: Any) -> Any:
        node = yaml.ScalarNode(tag, ev.value, ev.start_mark, ev.end_mark, ev.style)
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise self.error("yaml", exc.problem or str(exc), ev.start_mark) from None
        except (ValueError, TypeError, OverflowError, IndexError) as exc:  # `!!int x`, `!!int ''`
            raise self.error(
                "yaml", f"{ev.value!r} is not a valid {tag}: {exc}", ev.start_mark
            ) from None

    def build(self, loader: Any) -> Located | None:
        """One loop over the events. The open collection's state lives in locals (the
        outer ones wait on `stack`), and positions are made with `tuple.__new__`: this
        loop runs once per event, so each attribute look-up and call in it counts."""
        file = self.file
        get = loader.get_event
        plain = self.plain
        anchors = self.anchors
        new_tuple, position = tuple.__new__, Position
        scalar_event, alias_event = yaml.ScalarEvent, yaml.AliasEvent
        mapping_start, sequence_start = yaml.MappingStartEvent, yaml.SequenceStartEvent
        collection_end = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
        missing = _MISSING
        # the open collection: its Located, its list or dict and key positions, whether a
        # list, the pending key and its position (mappings), the values it stands for,
        # its anchor and start mark; `stack` holds the same for each enclosing one
        here: Located | None = None
        items: Any = None
        keys: dict[str, Position] = {}
        is_list = False
        key: Any = missing
        key_pos: Position | None = None
        count = 0
        anchor: str | None = None
        start: Any = None
        stack: list[tuple[Any, ...]] = []
        depth = 0  # len(stack): the collections open
        root: Located | None = None
        documents = 0
        while True:
            ev = get()
            kind = type(ev)
            if kind is scalar_event:
                mark = ev.start_mark
                if depth > MAX_DEPTH:
                    raise self._too_deep(mark)
                value = missing
                if ev.tag is None and ev.implicit[0]:  # plain: the cached resolution
                    value = plain.get(ev.value, missing)
                if value is missing:
                    value = self.scalar(ev)
                at = new_tuple(position, (file, mark.line + 1, mark.column + 1))
                if (
                    key is missing and not is_list and here is not None and type(value) is str
                    and ev.anchor is None and value not in keys
                ):  # fmt: skip
                    count += 1  # a new key, as below, without making its node
                    if count > MAX_NODES:
                        raise self._too_many(start)
                    key, key_pos = value, at
                    continue
                child = Located(value, at, {})
                size = 1
                if ev.anchor is not None:
                    anchors[ev.anchor] = (child, 1)
            elif kind is mapping_start or kind is sequence_start:
                mark = ev.start_mark
                if depth > MAX_DEPTH:
                    raise self._too_deep(mark)
                stack.append((here, items, keys, is_list, key, key_pos, count, anchor, start))
                depth += 1
                is_list = kind is sequence_start
                items = [] if is_list else {}
                keys = {}
                here = Located(
                    items, new_tuple(position, (file, mark.line + 1, mark.column + 1)), keys
                )
                key, key_pos, count, anchor, start = missing, None, 1, ev.anchor, mark
                continue
            elif kind in collection_end:
                child, size = here, count  # type: ignore[assignment]
                if anchor is not None:
                    anchors[anchor] = (child, size)
                here, items, keys, is_list, key, key_pos, count, anchor, start = stack.pop()
                depth -= 1
            elif kind is alias_event:
                known = anchors.get(ev.anchor)
                if known is None:
                    raise self.error("yaml", f"found undefined alias {ev.anchor!r}", ev.start_mark)
                child, size = known
            elif kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise self.error(
                        "yaml", "expected a single document in the stream, but found another",
                        ev.start_mark,
                    )  # fmt: skip
                continue
            elif kind is yaml.StreamEndEvent:
                return root
            else:  # stream start, document end
                continue
            if here is None:
                root = child
                continue
            count += size
            if count > MAX_NODES:
                raise self._too_many(start)
            if is_list:
                items.append(child)
            elif key is missing:  # a key: a new plain string (the common case) or _key
                key = child.value
                if type(key) is str and key not in keys:
                    key_pos = child.position
                else:
                    key, key_pos = self._key(child, items, keys)
            else:
                if key is not None:
                    items[key] = child
                    keys[key] = key_pos  # type: ignore[assignment]
                key = missing

    def _key(
        self, key: Located, mapping: dict[str, Located], seen: dict[str, Position]
    ) -> tuple[str | None, Position]:
        """The key's text, or None (reported) when it is not a usable string key."""
        pos = key.position
        if isinstance(key.value, dict | list):
            self.reports.append(ReportItem("yaml-key", "mapping keys must be plain strings", pos))
            return None, pos
        if not isinstance(key.value, str):
            self.reports.append(
                ReportItem(
                    "yaml-key",
                    f"mapping keys must be plain strings, not {type(key.value).__name__}"
                    f" {key.value!r} (quote it)",
                    pos,
                )
            )
            return None, pos
        if key.value in mapping or key.value in seen:
            self.reports.append(
                ReportItem(
                    "duplicate-key",
                    f"key {key.value!r} is repeated (first at line {seen[key.value].line})",
                    pos,
                )
            )
            return None, pos
        return key.value, pos

    def _too_many(self, mark: yaml.Mark) -> ConfigError:
        return self.error(
            "alias-expansion",
            f"aliases expand this value to more than {MAX_NODES:,} values"
            " (a YAML bomb?); write the values out instead",
            mark,
        )

    def _too_deep(self, mark: yaml.Mark) -> ConfigError:
        return self.error(
            "nesting-too-deep", f"values are nested more than {MAX_DEPTH} levels deep", mark
        )


def read_block_subset(text: str, file: str) -> Located | None:
    """The block reader's tree (drorch.model.block_reader), or None for a file outside
    its subset; its plain scalars resolved as `_Builder` resolves them."""
    builder = _Builder(file)
    with gc_paused():
        return block_reader.read(text, file, builder.plain_value, builder.plain, _MISSING)


def parse_located(text: str, file: str) -> Located:
    """Parse YAML text; raise ConfigError(`yaml` code) with the position of a syntax error.

    A file in the plain subset is read by the fast block reader, which gives the tree
    libyaml's events give; any other file, and so every file with a problem, is read
    from libyaml's events (`parse_located_events`), which report the problems."""
    fast = read_block_subset(text, file)
    return fast if fast is not None else parse_located_events(text, file)


def parse_located_events(text: str, file: str) -> Located:
    """`parse_located` from libyaml's events alone, whatever the file."""
    _deepest, where = flow_depth(text)  # libyaml reads flow collections ahead
    if where >= 0:
        raise ConfigError(
            [
                ReportItem(
                    "nesting-too-deep",
                    f"values are nested more than {MAX_DEPTH} levels deep",
                    offset_position(file, text, where),
                )
            ]
        )
    builder = _Builder(file)
    loader = _LOADER(text)
    try:
        with gc_paused():
            root = builder.build(loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or str(exc)
        if mark is not None and 0 <= mark.index < len(text) and text[mark.index] == "\t":
            problem = "tabs are not allowed in indentation (use spaces)"
        raise ConfigError([ReportItem("yaml", problem, _pos(file, mark))]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([ReportItem("yaml", str(exc), Position(file, 1, 1))]) from exc
    finally:
        loader.dispose()
    if builder.reports:
        raise ConfigError(builder.reports)
    return root if root is not None else Located({}, Position(file, 1, 1))


def load_located(path: str | Path, what: str = "a cluster file") -> Located:
    """Read (drorch.model.config_file: a bounded regular file of UTF-8 text) and parse
    a YAML file; ConfigError (`file`, `file-too-large`, then the YAML's reports)."""
    return parse_located(read_config_text(path, what), str(path))
