"""The flow-collection nesting check made before libyaml sees a file: `[`/`{` nested
more than MAX_DEPTH deep outside quotes and comments (libyaml reads flow collections
ahead, so the loader's own depth count would come too late).
"""

from __future__ import annotations

import re

MAX_DEPTH = 64  # nesting of mappings and sequences

_FLOW_CHARS = re.compile(r"[\[\]{}\"'#\n]")
_NOT_FLOW_CHARS = re.compile(r"[^\[\]{}\"'#\n]+")


def flow_depth(text: str) -> tuple[int, int]:
    """The deepest `[`/`{` nesting outside quotes and comments, and where it first got
    too deep (offset, else -1), before the YAML parser (which recurses) ever sees it.
    Walks only the characters that matter (the others are dropped at C speed first);
    only a file that does nest too deep is walked again, for the offset."""
    depth = deepest = 0
    quote = ""
    comment = False
    for ch in _NOT_FLOW_CHARS.sub("", text):
        if comment:
            comment = ch != "\n"
        elif quote:
            if ch == quote:
                quote = ""
        elif ch == "[" or ch == "{":
            depth += 1
            if depth > MAX_DEPTH:
                return depth, too_deep_at(text)
            if depth > deepest:
                deepest = depth
        elif ch == "]" or ch == "}":
            if depth:
                depth -= 1
        elif ch == "#":
            comment = True
        elif ch != "\n":  # a quote
            quote = ch
    return deepest, -1


def too_deep_at(text: str) -> int:
    """The offset of the `[`/`{` that first nests deeper than MAX_DEPTH (as flow_depth
    counts), else -1."""
    depth = 0
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
                return m.start()
        elif ch in "]}" and depth:
            depth -= 1
    return -1
